package queue

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// cursor is the reader's place in the queue.
type cursor struct {
	seg *segment // nil before the first record
	seq uint64
	off int64
	n   int64
	f   *os.File
	sr  segmentReader
}

// Next returns the next record in append order, waiting until one is
// appended, ctx is done (ctx.Err()) or the queue is closed (ErrClosed).
//
// The record is not copied: it is valid until the next call of Next, and the
// caller must not modify it. Pass pos to Ack once it is delivered. Records
// returned but not acknowledged are returned again after the queue is
// reopened or after Rewind, never otherwise.
func (q *Queue) Next(ctx context.Context) (rec []byte, pos Position, err error) {
	return q.NextUnless(ctx, nil)
}

// NextUnless is Next, except that a record this process appended is not
// read if have, called with its position, reports that the caller holds
// what it holds (the records appended last, up to maxAppended, are known
// by their position without reading them): rec is then nil. A record is
// read, as by Next, if have is nil or false.
func (q *Queue) NextUnless(ctx context.Context, have func(Position) bool) (rec []byte, pos Position, err error) {
	q.readMu.Lock()
	defer q.readMu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return nil, Position{}, err
		}
		rec, pos, wait, err := q.tryNext(have)
		if err != nil || wait == nil {
			return rec, pos, err
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, Position{}, ctx.Err()
		case <-q.done:
			return nil, Position{}, ErrClosed
		}
	}
}

// tryNext returns the next record, or a channel that is closed when there
// may be one; see NextUnless for have. readMu is held.
func (q *Queue) tryNext(have func(Position) bool) (rec []byte, pos Position, wait <-chan struct{}, err error) {
	c := &q.rd
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, Position{}, nil, ErrClosed
		}
		if c.seg == nil || c.seg.removed {
			// Start, or the segment was deleted (dropped, or acknowledged
			// to its end): continue with the first one after it.
			next := q.firstFromLocked(c.seq)
			if next == nil {
				wait := q.waitLocked()
				q.mu.Unlock()
				return nil, Position{}, wait, nil
			}
			c.moveTo(next)
		}
		seg := c.seg
		end, finished := seg.size, seg != q.active
		if c.off >= end {
			next := q.firstFromLocked(seg.seq + 1)
			if !finished || next == nil {
				wait := q.waitLocked()
				q.mu.Unlock()
				return nil, Position{}, wait, nil
			}
			c.moveTo(next)
			q.mu.Unlock()
			continue
		}
		known := q.appendedAtLocked(c.seq, c.off)
		q.mu.Unlock()

		if known > 0 && have != nil {
			if pos := (Position{seq: c.seq, off: known, n: c.n + 1}); have(pos) {
				q.mu.Lock()
				if seg.removed {
					q.mu.Unlock()
					continue // dropped meanwhile: it was counted as dropped
				}
				read := known - c.off
				c.off, c.n = pos.off, pos.n
				q.deliveredSeq, q.deliveredOff = c.seq, c.off
				q.appendedAtLocked(c.seq, c.off) // forgets this one
				q.mu.Unlock()
				q.m.read.Add(float64(read))
				return nil, pos, nil, nil
			}
		}

		if c.f == nil {
			f, err := os.Open(seg.path)
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted meanwhile: removed is set
			}
			if err != nil {
				return nil, Position{}, nil, fmt.Errorf("open segment for reading: %w", err)
			}
			c.f = f
			c.sr.ra, c.sr.version, c.sr.buf = f, seg.version, c.sr.buf[:0]
		}
		res, err := c.sr.next(c.off, end)
		if err != nil {
			return nil, Position{}, nil, fmt.Errorf("read segment %s: %w", filepath.Base(seg.path), err)
		}
		if bad := res.corrupt + res.torn; bad > 0 && !seg.prescanned {
			// Data this process wrote and read back changed on disk.
			q.m.corruptRecord.Add(float64(bad))
			q.logger.Warn("skipped corrupt bytes in a segment",
				"segment", filepath.Base(seg.path), "offset", c.off, "bytes", bad)
		}
		if !res.found {
			c.off = end
			continue
		}
		c.off, c.n = res.next, c.n+1

		q.mu.Lock()
		if seg.removed {
			q.mu.Unlock()
			continue // dropped while being read: it was counted as dropped
		}
		q.deliveredSeq, q.deliveredOff = c.seq, c.off
		q.appendedAtLocked(c.seq, c.off)
		q.mu.Unlock()
		q.m.read.Add(float64(res.next - res.off))
		return res.payload, Position{seq: c.seq, off: c.off, n: c.n}, nil, nil
	}
}

// appendedAtLocked forgets the frames this process appended before off in
// segment seq, the reader's place, and returns the end of the one at off,
// or 0 if it knows none there. mu is held.
func (q *Queue) appendedAtLocked(seq uint64, off int64) int64 {
	i := 0
	for i < len(q.appended) && (q.appended[i].seq < seq || (q.appended[i].seq == seq && q.appended[i].start < off)) {
		i++
	}
	q.appended = q.appended[i:]
	if len(q.appended) > 0 && q.appended[0].seq == seq && q.appended[0].start == off {
		return q.appended[0].end
	}
	return 0
}

// Rewind moves the reader back to the read position: the records Next
// returned and Ack did not acknowledge are returned again, in order. It is
// for a consumer that gave up on records it had read (the gateway hands an
// upstream's queue from the forwarder of the old configuration to the one of
// the new after a reload). Rewind waits for a running Next.
func (q *Queue) Rewind() error {
	q.readMu.Lock()
	defer q.readMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	c := &q.rd
	c.closeFile()
	*c = cursor{seq: q.ackSeq, sr: segmentReader{buf: c.sr.buf[:0]}}
	if s := q.firstFromLocked(q.ackSeq); s != nil && s.seq == q.ackSeq {
		// Resume inside the segment, after its acknowledged records.
		c.seg, c.off, c.n = s, max(s.ackedOff, s.start), s.acked
	}
	q.deliveredSeq, q.deliveredOff = q.ackSeq, q.ackOff
	return nil
}

// firstFromLocked returns the first segment whose sequence number is at
// least seq. mu is held.
func (q *Queue) firstFromLocked(seq uint64) *segment {
	for _, s := range q.segs {
		if s.seq >= seq {
			return s
		}
	}
	return nil
}

func (c *cursor) moveTo(s *segment) {
	c.closeFile()
	c.seg, c.seq, c.off, c.n = s, s.seq, s.start, 0
}

func (c *cursor) closeFile() {
	if c.f != nil {
		_ = c.f.Close()
		c.f, c.sr.ra = nil, nil
	}
}

// Ack records that the record at pos, and every record before it, was
// delivered, and deletes the segments read to their end. Acknowledging a
// position at or before the current read position does nothing.
//
// The read position is persisted (written to a temporary file, fsynced,
// renamed into place, directory fsynced) before Ack returns under
// FsyncAlways, and within Options.SyncInterval under FsyncInterval, where a
// rename per Ack would cost more than the delivery it records (about 0.5 ms
// against a few µs on ext4). Acknowledged records not yet persisted are
// delivered again after a crash: at-least-once, never loss.
//
// The acknowledgement takes effect in memory even when persisting it fails;
// the error then means those records may be delivered again after a restart.
func (q *Queue) Ack(pos Position) error {
	q.ackMu.Lock()
	defer q.ackMu.Unlock()

	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	if !pos.after(q.ackSeq, q.ackOff) {
		q.mu.Unlock()
		return nil
	}
	if pos.after(q.deliveredSeq, q.deliveredOff) {
		q.mu.Unlock()
		return fmt.Errorf("ack %s: %w", pos, ErrInvalidPosition)
	}
	var done []*segment
	for len(q.segs) > 0 && q.segs[0].seq <= pos.seq && q.segs[0] != q.active {
		s := q.segs[0]
		if s.seq == pos.seq {
			q.ackInLocked(s, pos)
			if s.ackedOff < s.size {
				break
			}
		}
		done = append(done, s)
		q.forgetLocked(s)
	}
	if a := q.active; a != nil && a.seq == pos.seq {
		q.ackInLocked(a, pos)
	}
	q.ackSeq, q.ackOff = pos.seq, pos.off
	q.updateGaugesLocked()
	q.mu.Unlock()

	// Under FsyncAlways, persist first, then delete: a crash in between
	// leaves segments the next Open deletes as already acknowledged. Under
	// FsyncInterval the syncer persists the position; a crash before it does
	// redelivers from the previous one, which is never past a deleted
	// segment's records.
	var err error
	if q.opts.Fsync == FsyncAlways {
		err = writePosition(q.opts.Dir, pos.seq, pos.off, true)
	} else {
		q.mu.Lock()
		q.posDirty = true
		q.mu.Unlock()
	}
	for _, s := range done {
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			q.logger.Error("remove acknowledged segment", "segment", filepath.Base(s.path), "err", rerr)
		}
	}
	if err != nil {
		return fmt.Errorf("persist read position: %w", err)
	}
	return nil
}

// ackInLocked acknowledges the records of s up to pos. mu is held.
func (q *Queue) ackInLocked(s *segment, pos Position) {
	if pos.n > s.acked {
		q.records -= pos.n - s.acked
		s.acked = pos.n
	}
	s.ackedOff = max(s.ackedOff, pos.off)
}
