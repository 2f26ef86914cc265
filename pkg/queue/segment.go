package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
)

// Segment files. See FORMAT.md for the layout; every constant here is part of
// the on-disk format and must not change without a new format version.
const (
	// segmentMagic opens every segment file.
	segmentMagic = "RWGQSEG\x00"
	// segmentHeaderSize is the size of the header of every format version so
	// far: magic (8), version (2), flags (2), CRC32C of the first 12 bytes (4).
	segmentHeaderSize = 16
	// segmentSuffix and segmentDigits make the file name of a segment: its
	// sequence number zero-padded to 20 digits (the width of the largest
	// uint64), so that names sort like sequence numbers.
	segmentSuffix = ".seg"
	segmentDigits = 20

	// formatV1 is the first format: frames of length, payload CRC and header
	// CRC, see nextV1.
	formatV1 uint16 = 1
	// latestFormat is the version new segments are written in. Readers for
	// every version ever shipped stay in segmentReader.next.
	latestFormat = formatV1

	// frameHeaderSizeV1 is the size of a version 1 frame header: payload
	// length (4), CRC32C of the payload (4), CRC32C of those 8 bytes (4).
	frameHeaderSizeV1 = 12

	// MaxRecordBytes caps the payload of one record. A reader never trusts a
	// length above it, so a corrupt length cannot cause a huge allocation.
	MaxRecordBytes = 64 << 20
)

// castagnoli is the CRC32C table; hash/crc32 uses the SSE4.2/ARMv8 CRC
// instructions for it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func segmentName(seq uint64) string {
	return fmt.Sprintf("%0*d%s", segmentDigits, seq, segmentSuffix)
}

// parseSegmentName returns the sequence number of a segment file name, or
// false if name is not one.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != segmentDigits {
		return 0, false
	}
	for i := range len(digits) {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}

// encodeSegmentHeader returns the header of a new segment in version v.
func encodeSegmentHeader(v uint16) []byte {
	b := make([]byte, segmentHeaderSize)
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint16(b[8:], v)
	binary.LittleEndian.PutUint16(b[10:], 0) // flags: none defined
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], castagnoli))
	return b
}

// Reasons a segment header is refused; the file is then quarantined.
var (
	errShortHeader   = errors.New("file shorter than a segment header")
	errForeignMagic  = errors.New("foreign file: segment magic does not match")
	errHeaderCRC     = errors.New("segment header checksum mismatch")
	errUnknownFlags  = errors.New("segment header has unknown flags")
	errNewerVersion  = errors.New("segment written by a newer format version")
	errUnknownFormat = errors.New("unknown segment format version")
)

// parseSegmentHeader checks the header at the start of a segment file and
// returns its format version.
func parseSegmentHeader(b []byte) (uint16, error) {
	if len(b) < segmentHeaderSize {
		return 0, errShortHeader
	}
	if string(b[:len(segmentMagic)]) != segmentMagic {
		return 0, errForeignMagic
	}
	v := binary.LittleEndian.Uint16(b[8:])
	switch {
	case v == formatV1:
		if crc32.Checksum(b[:12], castagnoli) != binary.LittleEndian.Uint32(b[12:]) {
			return 0, errHeaderCRC
		}
		if binary.LittleEndian.Uint16(b[10:]) != 0 {
			return 0, errUnknownFlags
		}
		return v, nil
	case v > latestFormat:
		// The layout after the version may differ: do not check the CRC.
		return 0, fmt.Errorf("%w (%d, this build reads up to %d)", errNewerVersion, v, latestFormat)
	default:
		return 0, fmt.Errorf("%w %d", errUnknownFormat, v)
	}
}

// frameSize is the on-disk size of a record with a payload of n bytes in the
// latest format.
func frameSize(n int) int64 { return frameHeaderSizeV1 + int64(n) }

// appendFrame appends payload framed in the latest format to dst.
func appendFrame(dst, payload []byte) []byte {
	// The header is built in dst: a local array would escape through the
	// CRC function and cost an allocation per record.
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
	h := dst[len(dst)-8:]
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(h, castagnoli))
	return append(dst, payload...)
}

// checkFrameHeaderV1 returns the payload length of a version 1 frame header,
// or false if h is not one.
func checkFrameHeaderV1(h []byte) (int64, bool) {
	if crc32.Checksum(h[:8], castagnoli) != binary.LittleEndian.Uint32(h[8:12]) {
		return 0, false
	}
	n := binary.LittleEndian.Uint32(h[0:4])
	if n > MaxRecordBytes {
		return 0, false
	}
	return int64(n), true
}

// readAhead is how much a segmentReader reads at once when records are small.
const readAhead = 256 << 10

// segmentReader reads the frames of one segment file through a read-ahead
// window. It only reads bytes it is told are committed (below end), which
// never change, so the window never goes stale.
//
// A segmentReader is not safe for concurrent use. The payloads it returns
// point into its window and are valid until its next call.
type segmentReader struct {
	ra      io.ReaderAt
	version uint16
	buf     []byte
	bufOff  int64
}

// bytesAt returns the file's bytes [off, off+n), reading ahead up to end.
// The caller guarantees off+n <= end.
func (r *segmentReader) bytesAt(off int64, n int, end int64) ([]byte, error) {
	if off >= r.bufOff && off+int64(n) <= r.bufOff+int64(len(r.buf)) {
		i := off - r.bufOff
		return r.buf[i : i+int64(n)], nil
	}
	want := int64(max(n, readAhead))
	want = min(want, end-off)
	if int64(cap(r.buf)) < want || (cap(r.buf) > 16*readAhead && want <= readAhead) {
		// Grow for a big record; give a big window back once records are
		// small again.
		r.buf = make([]byte, want)
	}
	buf := r.buf[:want]
	k, err := r.ra.ReadAt(buf, off)
	if k < n {
		r.buf = r.buf[:0]
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read segment at offset %d: %w", off, err)
	}
	r.buf, r.bufOff = buf[:k], off
	return r.buf[:n], nil
}

// scanResult is the outcome of looking for the next valid frame.
type scanResult struct {
	found   bool
	payload []byte // valid until the reader's next call
	off     int64  // where the frame starts
	next    int64  // where the frame ends
	// corrupt counts bytes skipped before the frame, or before the torn tail
	// if none was found: frames whose payload CRC failed, and bytes the
	// reader resynchronised past.
	corrupt int64
	// torn counts bytes at the end of the segment after which no valid frame
	// follows: a partially written last record, or trailing garbage. Only set
	// when found is false.
	torn int64
}

// next finds the first valid frame at or after off and before end.
func (r *segmentReader) next(off, end int64) (scanResult, error) {
	switch r.version {
	case formatV1:
		return r.nextV1(off, end)
	default:
		// parseSegmentHeader refuses every other version.
		return scanResult{}, fmt.Errorf("%w %d", errUnknownFormat, r.version)
	}
}

// nextV1 reads version 1 frames. A frame is valid when its header CRC
// matches, its length is at most MaxRecordBytes, it ends before end, and its
// payload CRC matches.
//
// A frame with a valid header but a bad payload is skipped whole: its length
// is trustworthy. Otherwise the reader resynchronises byte by byte: the header
// CRC makes a false match on garbage a 2^-32 event per offset and is cheap
// to check, so the payload CRC is only computed for plausible frames. A valid
// header whose frame runs past end is a record torn by a crash.
func (r *segmentReader) nextV1(off, end int64) (scanResult, error) {
	pos, tailStart := off, off
	for end-pos >= frameHeaderSizeV1 {
		h, err := r.bytesAt(pos, frameHeaderSizeV1, end)
		if err != nil {
			return scanResult{}, err
		}
		n, ok := checkFrameHeaderV1(h)
		if !ok {
			pos++
			continue
		}
		if end-pos-frameHeaderSizeV1 < n {
			// A torn last record: everything from here on is the tail.
			return scanResult{corrupt: pos - off, torn: end - pos}, nil
		}
		fr, err := r.bytesAt(pos, frameHeaderSizeV1+int(n), end)
		if err != nil {
			return scanResult{}, err
		}
		payload := fr[frameHeaderSizeV1:]
		if crc32.Checksum(payload, castagnoli) == binary.LittleEndian.Uint32(fr[4:8]) {
			return scanResult{
				found:   true,
				payload: payload,
				off:     pos,
				next:    pos + frameHeaderSizeV1 + n,
				corrupt: pos - off,
			}, nil
		}
		pos += frameHeaderSizeV1 + n
		tailStart = pos
	}
	return scanResult{corrupt: tailStart - off, torn: end - tailStart}, nil
}
