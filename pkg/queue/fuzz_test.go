package queue

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// validSegment returns a version 1 segment holding recs.
func validSegment(recs ...[]byte) []byte {
	b := encodeSegmentHeader(formatV1)
	for _, r := range recs {
		b = appendFrame(b, r)
	}
	return b
}

// addSeeds seeds a segment fuzz target with valid segments and corruptions.
func addSeeds(f *testing.F) {
	good := validSegment([]byte("one"), []byte(""), []byte("three"), make([]byte, 300))
	f.Add(good)
	f.Add(good[:len(good)-7])                   // torn tail
	f.Add(good[:segmentHeaderSize])             // header only
	f.Add(good[:segmentHeaderSize-3])           // short header
	f.Add(append(append([]byte{}, good...), 0)) // trailing byte
	flipped := append([]byte{}, good...)
	flipped[segmentHeaderSize+frameHeaderSizeV1+1] ^= 1
	f.Add(flipped) // corrupt first payload
	flipped = append([]byte{}, good...)
	flipped[segmentHeaderSize] ^= 1
	f.Add(flipped) // corrupt first length
	newer := append([]byte{}, good...)
	binary.LittleEndian.PutUint16(newer[8:], 99)
	f.Add(newer)
	f.Add([]byte{})
	f.Add(make([]byte, 4096))
	// A frame header claiming the largest allowed payload, with a valid header
	// check, in a small file.
	huge := encodeSegmentHeader(formatV1)
	var h [frameHeaderSizeV1]byte
	binary.LittleEndian.PutUint32(h[0:], MaxRecordBytes)
	binary.LittleEndian.PutUint32(h[8:], crc32.Checksum(h[:8], castagnoli))
	f.Add(append(huge, h[:]...))

}

// FuzzSegmentReader reads arbitrary bytes as a segment with the code Open and
// Next use, in memory: no panic, termination, no allocation beyond the
// input's size (the length cap), every byte accounted for, and a second pass
// over the repaired segment agreeing with the first. It is fast enough for
// long runs; FuzzOpen covers the same through the file system.
func FuzzSegmentReader(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		version, err := parseSegmentHeader(data)
		if err != nil {
			return // quarantined by Open
		}
		size := int64(len(data))
		sr := &segmentReader{ra: bytes.NewReader(data), version: version}
		sum, err := scanSegment(sr, segmentHeaderSize, size)
		require.NoError(t, err)
		require.LessOrEqual(t, sum.end, size)
		require.LessOrEqual(t, sum.end+sum.torn, size)
		require.LessOrEqual(t, cap(sr.buf), len(data))

		// Read the segment as Next does after Open truncated it.
		sr = &segmentReader{ra: bytes.NewReader(data[:sum.end]), version: version}
		var records, frameBytes, corrupt int64
		for off := int64(segmentHeaderSize); off < sum.end; {
			res, err := sr.next(off, sum.end)
			require.NoError(t, err)
			require.True(t, res.found, "a repaired segment ends on a record")
			require.Equal(t, off+res.corrupt, res.off)
			records++
			frameBytes += res.next - res.off
			corrupt += res.corrupt
			off = res.next
		}
		require.Equal(t, sum.records, records)
		require.Equal(t, sum.end-segmentHeaderSize, frameBytes+corrupt)
		require.LessOrEqual(t, corrupt, sum.corrupt)
		require.Equal(t, size-segmentHeaderSize, frameBytes+sum.corrupt+sum.torn, "every byte is a record, corrupt or torn")
	})
}

// FuzzOpen writes arbitrary bytes as the only segment of a queue, opens it
// and reads everything: Open succeeds, Len agrees with what is read, and the
// queue works on. It goes through the file system, so it is slow; its seeds
// run with the unit tests.
func FuzzOpen(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := Options{Dir: t.TempDir(), MaxBytes: 1 << 20}
		path := filepath.Join(opts.Dir, segmentName(1))
		require.NoError(t, os.WriteFile(path, data, 0o644))

		q, err := Open(opts)
		require.NoError(t, err)
		defer func() { require.NoError(t, q.Close()) }()
		records, bytes := q.Len()
		require.LessOrEqual(t, bytes, int64(len(data)))
		got, last := drain(t, q)
		require.Len(t, got, int(records))
		require.LessOrEqual(t, cap(q.rd.sr.buf), max(len(data), readAhead))
		if last != (Position{}) {
			require.NoError(t, q.Ack(last))
		}
		// The queue works on after whatever it found.
		require.NoError(t, q.Append([]byte("after")))
		got, _ = drain(t, q)
		require.Equal(t, []string{"after"}, got)
	})
}
