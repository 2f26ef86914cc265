package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Open opens the queue in opts.Dir, creating the directory if needed, and
// takes its lock (see Lock).
//
// Open reads every unacknowledged byte once to count the records and check
// them. It never fails because of what the files contain: it truncates torn
// tails, skips corrupt records, moves unreadable segment files to the
// quarantine directory, deletes empty and already acknowledged segments,
// falls back to the oldest segment when the read position is unreadable,
// and leaves unknown files alone. Each is logged once, as a warning saying
// what was done, and counted in gateway_queue_corrupt_bytes_total. Open fails
// on invalid options, when the directory is locked, or on I/O errors it
// cannot work around, such as a directory it cannot create or list.
func Open(opts Options) (*Queue, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create queue directory: %w", err)
	}
	release, err := Lock(opts.Dir)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		opts:    opts,
		logger:  opts.Logger,
		m:       forUpstream(opts.Metrics, opts.Upstream),
		release: release,
		done:    make(chan struct{}),
		notify:  make(chan struct{}),
	}
	if err := q.load(); err != nil {
		_ = release()
		return nil, err
	}
	q.opened = Position{seq: q.nextSeq}
	q.updateGaugesLocked()
	if opts.Fsync == FsyncInterval {
		q.wg.Go(q.syncLoop)
	}
	return q, nil
}

// load restores the queue's state from its directory.
func (q *Queue) load() error {
	dir := q.opts.Dir
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list queue directory: %w", err)
	}
	var (
		seqs    []uint64
		unknown []string
	)
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == lockFileName || name == positionFileName:
		case name == positionTmpName:
			// Left by a crash during Ack: the rename never happened.
			_ = os.Remove(filepath.Join(dir, name))
		case filepath.Join(dir, name) == filepath.Clean(q.opts.QuarantineDir):
		default:
			if seq, ok := parseSegmentName(name); ok && e.Type().IsRegular() {
				seqs = append(seqs, seq)
			} else {
				unknown = append(unknown, name)
			}
		}
	}
	if len(unknown) > 0 {
		q.logger.Warn("leaving unknown files in the queue directory alone", "dir", dir, "files", unknown)
	}
	slices.Sort(seqs)

	posSeq, posOff, havePos := q.loadPosition()
	q.nextSeq = posSeq + 1
	if n := len(seqs); n > 0 {
		q.nextSeq = max(q.nextSeq, seqs[n-1]+1)
	}
	for _, seq := range seqs {
		path := filepath.Join(dir, segmentName(seq))
		if havePos && seq < posSeq {
			// Acknowledged; Ack was interrupted before deleting it.
			if err := os.Remove(path); err != nil {
				q.logger.Error("remove acknowledged segment", "segment", segmentName(seq), "err", err)
			}
			continue
		}
		start := int64(-1) // the header's end
		if havePos && seq == posSeq {
			start = posOff
		}
		s, err := q.loadSegment(seq, path, start)
		if err != nil {
			return err
		}
		if s == nil {
			continue
		}
		q.segs = append(q.segs, s)
		q.bytes += s.size
		q.records += s.records
	}

	switch {
	case len(q.segs) > 0:
		q.ackSeq, q.ackOff = q.segs[0].seq, q.segs[0].start
	case havePos:
		q.ackSeq, q.ackOff = posSeq, posOff
	}
	q.deliveredSeq, q.deliveredOff = q.ackSeq, q.ackOff
	return nil
}

// loadPosition reads the position file. A missing one means a new queue; an
// unreadable one is logged and counted, and reading starts from the oldest
// segment: records may be delivered twice, none is lost.
func (q *Queue) loadPosition() (seq uint64, off int64, ok bool) {
	path := filepath.Join(q.opts.Dir, positionFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, false
	}
	if err == nil {
		seq, off, err = decodePosition(b)
		if err == nil {
			return seq, off, true
		}
	}
	q.m.corruptPosition.Add(float64(len(b)))
	q.logger.Warn("unreadable read position: reading from the oldest segment, records may be delivered again",
		"file", path, "err", err)
	return 0, 0, false
}

// loadSegment checks a segment found on disk and counts its records from
// start (-1: from the header's end). It returns nil for a segment left out of
// the queue: empty, quarantined, or without records to read. It fails only on
// I/O errors it cannot work around.
func (q *Queue) loadSegment(seq uint64, path string, start int64) (*segment, error) {
	name := filepath.Base(path)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		q.quarantine(path, 0, fmt.Errorf("open: %w", err))
		return nil, nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat segment %s: %w", name, err)
	}
	size := st.Size()
	if size == 0 {
		// Created by a crash before its header was written: holds nothing.
		q.logger.Warn("removed an empty segment file", "segment", name)
		q.remove(path)
		return nil, nil
	}

	hdr := make([]byte, min(size, segmentHeaderSize))
	if _, err := f.ReadAt(hdr, 0); err != nil {
		q.quarantine(path, size, fmt.Errorf("read header: %w", err))
		return nil, nil
	}
	version, err := parseSegmentHeader(hdr)
	if err != nil {
		q.quarantine(path, size, err)
		return nil, nil
	}

	if start < 0 {
		start = segmentHeaderSize
	}
	switch {
	case start < segmentHeaderSize:
		q.logger.Warn("read position inside the segment header: reading the segment from its start, records may be delivered again",
			"segment", name, "offset", start)
		start = segmentHeaderSize
	case start > size:
		// The position reached disk but the end of the segment did not
		// (a machine crash under FsyncInterval): what is left was read.
		q.logger.Warn("read position past the end of its segment: resuming after it",
			"segment", name, "offset", start, "size", size)
		start = size
	}
	s := &segment{
		seq:        seq,
		path:       path,
		version:    version,
		start:      start,
		ackedOff:   start,
		prescanned: true,
	}

	sum, err := scanSegment(&segmentReader{ra: f, version: version}, start, size)
	if err != nil {
		q.quarantine(path, size, err)
		return nil, nil
	}
	off, corrupt, torn := sum.end, sum.corrupt, sum.torn
	s.records = sum.records
	if corrupt > 0 || torn > 0 {
		var actions []string
		if corrupt > 0 {
			actions = append(actions, "skipped corrupt records")
		}
		if off < size {
			// Nothing valid follows off: cut it so the file ends on a frame.
			if err := f.Truncate(off); err != nil {
				q.logger.Error("truncate segment", "segment", name, "err", err)
			}
			actions = append(actions, "truncated the file after the last valid record")
		}
		action := strings.Join(actions, "; ")
		q.m.corruptRecord.Add(float64(corrupt))
		q.m.tornTail.Add(float64(torn))
		q.logger.Warn("repaired a corrupt segment", "segment", name, "action", action,
			"corrupt_record_bytes", corrupt, "torn_tail_bytes", torn, "records", s.records)
	}
	s.size = off
	if s.records == 0 {
		// Nothing left to read in it, and it will never be appended to.
		q.remove(path)
		return nil, nil
	}
	return s, nil
}

func (q *Queue) remove(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.logger.Error("remove segment", "segment", filepath.Base(path), "err", err)
	}
}

// quarantine moves an unreadable segment file to the quarantine directory,
// under its name with the time appended. If that fails the file stays where
// it is, out of the queue, and the next Open tries again.
func (q *Queue) quarantine(path string, size int64, reason error) {
	name := filepath.Base(path)
	dst := filepath.Join(q.opts.QuarantineDir, name+"."+time.Now().UTC().Format("20060102T150405.000000000Z"))
	err := os.MkdirAll(q.opts.QuarantineDir, 0o755)
	if err == nil {
		err = os.Rename(path, dst)
	}
	if err != nil {
		q.logger.Error("move unreadable segment to quarantine: leaving it in place, out of the queue",
			"segment", name, "reason", reason, "err", err)
		return
	}
	_ = syncDir(q.opts.QuarantineDir)
	_ = syncDir(q.opts.Dir)
	q.m.quarantinedBytes.Add(float64(size))
	q.m.quarantinedFiles.Inc()
	q.logger.Warn("moved unreadable segment to quarantine", "segment", name, "reason", reason,
		"to", dst, "bytes", size)
}

// scanSummary is what scanSegment found.
type scanSummary struct {
	records int64
	// end is where the last valid record ends; nothing valid follows it.
	end int64
	// corrupt and torn add up the scanResults: corrupt bytes skipped, and
	// the torn tail after end (which may also contain corrupt frames,
	// counted in corrupt).
	corrupt, torn int64
}

// scanSegment reads the records of a segment in [start, size).
func scanSegment(sr *segmentReader, start, size int64) (scanSummary, error) {
	sum := scanSummary{end: start}
	for sum.end < size {
		res, err := sr.next(sum.end, size)
		if err != nil {
			return sum, err
		}
		sum.corrupt += res.corrupt
		if !res.found {
			sum.torn = res.torn
			break
		}
		sum.records++
		sum.end = res.next
	}
	return sum, nil
}
