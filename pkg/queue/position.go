package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The read position file. See FORMAT.md; every constant is part of the
// on-disk format.
const (
	positionFileName = "position"
	positionTmpName  = positionFileName + ".tmp"
	positionMagic    = "RWGQPOS\x00"
	positionV1       = uint16(1)
	// positionSize is magic (8), version (2), flags (2), segment sequence
	// number (8), offset (8), CRC32C of the first 28 bytes (4).
	positionSize = 32
)

// Position identifies a record returned by Next. Pass it to Ack once the
// record, and every record returned before it, has been delivered. The zero
// Position is before every record.
type Position struct {
	seq uint64 // segment sequence number
	off int64  // offset just after the record's frame
	n   int64  // ordinal of the record among those read from the segment
}

// String returns the position as segment:offset.
func (p Position) String() string { return fmt.Sprintf("%d:%d", p.seq, p.off) }

// Equal reports whether p and o are the position of the same record.
func (p Position) Equal(o Position) bool { return p.seq == o.seq && p.off == o.off }

// Before reports whether p is the position of a record that comes before
// o's in the queue.
func (p Position) Before(o Position) bool { return o.after(p.seq, p.off) }

// after reports whether p is past the point (seq, off).
func (p Position) after(seq uint64, off int64) bool {
	return p.seq > seq || (p.seq == seq && p.off > off)
}

var (
	errPositionSize    = errors.New("wrong size")
	errPositionMagic   = errors.New("foreign magic")
	errPositionCRC     = errors.New("checksum mismatch")
	errPositionVersion = errors.New("unknown format version")
)

func encodePosition(seq uint64, off int64) []byte {
	b := make([]byte, positionSize)
	copy(b, positionMagic)
	binary.LittleEndian.PutUint16(b[8:], positionV1)
	binary.LittleEndian.PutUint16(b[10:], 0)
	binary.LittleEndian.PutUint64(b[12:], seq)
	binary.LittleEndian.PutUint64(b[20:], uint64(off))
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	return b
}

func decodePosition(b []byte) (seq uint64, off int64, err error) {
	if len(b) < 10 {
		return 0, 0, errPositionSize
	}
	if string(b[:8]) != positionMagic {
		return 0, 0, errPositionMagic
	}
	switch v := binary.LittleEndian.Uint16(b[8:]); v {
	case positionV1:
		if len(b) != positionSize {
			return 0, 0, errPositionSize
		}
		if crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
			return 0, 0, errPositionCRC
		}
		seq = binary.LittleEndian.Uint64(b[12:])
		off = int64(binary.LittleEndian.Uint64(b[20:]))
		if seq == 0 || off < 0 {
			return 0, 0, errPositionCRC
		}
		return seq, off, nil
	default:
		return 0, 0, fmt.Errorf("%w %d", errPositionVersion, v)
	}
}

// writePosition replaces the position file atomically: write a temporary
// file, rename it over the old one. With sync, the temporary file is fsynced
// before the rename and the directory after it, so the new position survives
// a power loss; without, it survives a process crash.
func writePosition(dir string, seq uint64, off int64, sync bool) error {
	tmp := filepath.Join(dir, positionTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(encodePosition(seq, off))
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, positionFileName)); err != nil {
		return err
	}
	if sync {
		return syncDir(dir)
	}
	return nil
}

// syncDir fsyncs a directory, making renames, creations and removals in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
