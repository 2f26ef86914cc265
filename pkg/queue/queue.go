package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Sentinel errors. Errors returned by the queue wrap them; test with
// errors.Is.
var (
	// ErrFull: the record was not appended because the queue reached
	// MaxBytes under the Block policy, or the disk is full (ENOSPC, EDQUOT).
	// Nothing was written; retry later.
	ErrFull = errors.New("queue is full")
	// ErrTooLarge: a record is over MaxRecordBytes, or an Append is bigger
	// than MaxBytes could ever hold.
	ErrTooLarge = errors.New("record too large for the queue")
	// ErrClosed: the queue was closed.
	ErrClosed = errors.New("queue is closed")
	// ErrInvalidPosition: Ack got a position that Next has not returned.
	ErrInvalidPosition = errors.New("position was not returned by Next")
)

// FullPolicy says what Append does when the queue would exceed MaxBytes.
type FullPolicy int

const (
	// Block refuses the Append with ErrFull; nothing queued is lost. The
	// default.
	Block FullPolicy = iota
	// DropOldest deletes the oldest segments, read or not, until the Append
	// fits, and counts what was dropped.
	DropOldest
)

// FsyncPolicy says when appended records and the read position reach stable
// storage.
//
// Under either policy a record is handed to the kernel (write(2)) before
// Append returns, so a crash of the process loses nothing that was appended.
type FsyncPolicy int

const (
	// FsyncInterval fsyncs the segment being written every
	// Options.SyncInterval, in the background, and each segment when it is
	// finished; and persists the read position at the same interval. A
	// crash of the machine (power loss, kernel panic) can lose the records
	// appended in the last interval (Open cuts them off as a torn tail). A
	// crash of the process or the machine can redeliver the records
	// acknowledged in the last interval. The default.
	FsyncInterval FsyncPolicy = iota
	// FsyncAlways fsyncs before Append and Ack return: no crash loses a
	// record Append accepted or redelivers one Ack accepted, at the cost of
	// a disk flush per call.
	FsyncAlways
)

// Defaults of the zero Options fields.
const (
	// DefaultMaxBytes bounds the segment files of one queue: 1 GiB.
	DefaultMaxBytes = 1 << 30
	// DefaultSegmentBytes is the size past which a new segment is started:
	// 64 MiB, so a full default queue has 16 files and a delivered segment
	// frees a sixteenth of it.
	DefaultSegmentBytes = 64 << 20
	// DefaultSyncInterval is how often FsyncInterval fsyncs: at most one
	// second of data is exposed to a machine crash.
	DefaultSyncInterval = time.Second
)

// Options configure a queue. The zero value of each field means its
// documented default; Dir is required.
type Options struct {
	// Dir holds the queue's segments, read position and lock, e.g.
	// <storage.path>/queues/<upstream>. It is created if missing.
	Dir string
	// QuarantineDir receives segment files that cannot be read (foreign
	// content, a newer format, a broken header), e.g.
	// <storage.path>/quarantine/<upstream>. It is created when first needed.
	// Default: Dir/quarantine.
	QuarantineDir string
	// Upstream is the value of the upstream label of the queue's series.
	Upstream string
	// MaxBytes bounds the segment files on disk. Default DefaultMaxBytes.
	MaxBytes int64
	// SegmentBytes is the size past which Append starts a new segment; a
	// segment exceeds it only when a single Append is bigger. It is capped
	// at MaxBytes/2 so that DropOldest can free space without dropping the
	// segment being written. Default DefaultSegmentBytes.
	SegmentBytes int64
	// FullPolicy is what Append does at MaxBytes. Default Block.
	FullPolicy FullPolicy
	// Fsync is when data reaches stable storage. Default FsyncInterval.
	Fsync FsyncPolicy
	// SyncInterval is the period of FsyncInterval. Default
	// DefaultSyncInterval.
	SyncInterval time.Duration
	// Logger receives the queue's warnings (repairs, quarantines, drops).
	// Default: discard.
	Logger *slog.Logger
	// Metrics are updated by the queue: one NewMetrics shared by every
	// queue of the process. Default: unregistered collectors.
	Metrics *Metrics

	// segmentBytes is SegmentBytes as configured, before the cap.
	segmentBytes int64
	// wrapFile lets tests substitute the writes to segment files.
	wrapFile func(*os.File) segmentFile
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("queue options: dir is empty")
	}
	if o.MaxBytes < 0 || o.SegmentBytes < 0 || o.SyncInterval < 0 {
		return o, errors.New("queue options: max_bytes, segment_bytes and sync_interval must not be negative")
	}
	if o.QuarantineDir == "" {
		o.QuarantineDir = filepath.Join(o.Dir, "quarantine")
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	o.segmentBytes = o.SegmentBytes
	o.SegmentBytes = min(o.SegmentBytes, o.MaxBytes/2)
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.wrapFile == nil {
		o.wrapFile = func(f *os.File) segmentFile { return f }
	}
	return o, nil
}

// segmentFile is what the writer does to the segment it appends to; *os.File
// implements it, tests wrap it to inject errors such as ENOSPC.
type segmentFile interface {
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// segment is the in-memory state of one segment file.
type segment struct {
	seq     uint64
	path    string
	version uint16
	// start is where reading begins: after the header, or at the read
	// position restored by Open.
	start int64
	// size is the number of committed bytes: the file size, except while
	// an Append is writing beyond it. Readers never read past it.
	size int64
	// records counts the valid records in [start, size); acked counts those
	// acknowledged, and ackedOff is where they end.
	records, acked int64
	ackedOff       int64
	// prescanned is set for segments Open found on disk: Open already
	// counted their corruption, so the reader does not count it again.
	prescanned bool
	// removed is set once the segment is deleted from the queue.
	removed bool
}

// Queue is a durable FIFO of opaque records on disk: see the package
// documentation.
//
// Append, Ack, Len and Close are safe for concurrent use. Next is meant for a
// single consumer: concurrent calls are serialised, and the record it returns
// is only valid until its next call.
type Queue struct {
	opts    Options
	logger  *slog.Logger
	m       *queueMetrics
	release func() error
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup

	// writeMu serialises appends. It guards w and needRoll, and is taken
	// before mu.
	writeMu  sync.Mutex
	w        segmentFile
	wbuf     []byte
	needRoll bool

	// readMu serialises Next and guards rd. It is taken before mu.
	readMu sync.Mutex
	rd     cursor

	// ackMu serialises writes of the position file. It is taken before mu.
	ackMu sync.Mutex

	// mu guards the fields below.
	mu      sync.Mutex
	closed  bool
	segs    []*segment // by sequence number
	active  *segment   // the segment appended to; nil until the first Append
	nextSeq uint64
	// opened is where the records appended since Open begin.
	opened  Position
	bytes   int64
	records int64
	// ackSeq and ackOff are the read position: everything before it was
	// acknowledged. deliveredSeq and deliveredOff are the end of the last
	// record Next returned.
	ackSeq, deliveredSeq uint64
	ackOff, deliveredOff int64
	// notify is closed and replaced when records are appended while
	// waiting is set: a Next is waiting on it.
	notify  chan struct{}
	waiting bool
	// dataDirty, dirDirty and posDirty say what the interval syncer has to
	// fsync.
	dataDirty, dirDirty, posDirty bool
	// appended are the frames of the records this process appended last,
	// in order, that the reader has not passed (see NextUnless).
	appended []frameSpan
}

// frameSpan is where a record's frame lies: in segment seq, from start to
// end.
type frameSpan struct {
	seq        uint64
	start, end int64
}

// maxAppended bounds Queue.appended: past it, the oldest are forgotten
// (and read from disk, as those appended before Open are), as when the
// reader is far behind.
const maxAppended = 1024

// Append writes recs to the end of the queue, in order, as one write(2), and
// fsyncs it under FsyncAlways. The records are not retained.
//
// Append is all or nothing: on error none of recs is queued. (A crash in the
// middle of an Append can leave a prefix of recs queued, whole records only:
// the rest is a torn tail.) It returns an
// error wrapping ErrFull when the queue is at MaxBytes under Block, or when
// the disk is full (the partial write is truncated, so no torn record is
// left); ErrTooLarge for a record over MaxRecordBytes; ErrClosed after Close.
func (q *Queue) Append(recs ...[]byte) error {
	_, err := q.AppendAt(recs...)
	return err
}

// AppendAt is Append that also returns the position of the last of recs:
// the Position that Next returns with that record (compare them with
// Position.Equal). It is the zero Position when recs is empty.
func (q *Queue) AppendAt(recs ...[]byte) (Position, error) {
	if len(recs) == 0 {
		return Position{}, nil
	}
	var size int64
	for _, r := range recs {
		if len(r) > MaxRecordBytes {
			return Position{}, fmt.Errorf("%w: record of %d bytes, the limit is %d", ErrTooLarge, len(r), MaxRecordBytes)
		}
		size += frameSize(len(r))
	}

	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	if size+segmentHeaderSize > q.opts.MaxBytes {
		return Position{}, fmt.Errorf("%w: %d bytes, max_bytes is %d", ErrTooLarge, size, q.opts.MaxBytes)
	}
	if err := q.makeRoom(size); err != nil {
		return Position{}, err
	}
	if q.needsRoll(size) {
		if err := q.roll(); err != nil {
			return Position{}, err
		}
	}

	buf := q.wbuf[:0]
	for _, r := range recs {
		buf = appendFrame(buf, r)
	}
	if cap(buf) <= 4*readAhead {
		q.wbuf = buf
	}
	a := q.active
	if _, err := q.w.WriteAt(buf, a.size); err != nil {
		q.undoWrite(a)
		// Out of space, keep the segment: a new one needs space too.
		// Otherwise continue in a new segment, away from whatever failed.
		q.needRoll = !isNoSpace(err)
		return Position{}, q.writeError("write segment", a, err)
	}
	if q.opts.Fsync == FsyncAlways {
		if err := q.w.Sync(); err != nil {
			// After a failed fsync the page cache state of the file is
			// unknown: drop what this Append wrote and continue in a new
			// segment.
			q.undoWrite(a)
			q.needRoll = true
			return Position{}, q.writeError("fsync segment", a, err)
		}
	}

	q.mu.Lock()
	for off, r := a.size, 0; r < len(recs); r++ {
		if len(q.appended) == maxAppended { // the older half is forgotten
			q.appended = append(q.appended[:0], q.appended[maxAppended/2:]...)
		}
		end := off + frameSize(len(recs[r]))
		q.appended = append(q.appended, frameSpan{seq: a.seq, start: off, end: end})
		off = end
	}
	a.size += size
	a.records += int64(len(recs))
	pos := Position{seq: a.seq, off: a.size, n: a.records}
	q.bytes += size
	q.records += int64(len(recs))
	q.dataDirty = true
	q.wakeLocked()
	q.updateGaugesLocked()
	q.mu.Unlock()
	q.m.written.Add(float64(size))
	return pos, nil
}

// undoWrite truncates what a failed Append wrote past the committed size.
// If that fails too, the bytes stay beyond the committed size, where the
// next Append overwrites them and Open truncates them as a torn tail.
func (q *Queue) undoWrite(a *segment) {
	if err := q.w.Truncate(a.size); err != nil {
		q.logger.Error("truncate segment after a failed write", "segment", filepath.Base(a.path), "err", err)
	}
}

// writeError wraps a write error, reporting a full disk as ErrFull.
func (q *Queue) writeError(action string, a *segment, err error) error {
	if isNoSpace(err) {
		q.m.fullNoSpace.Inc()
		return fmt.Errorf("%w: %s %s: %w", ErrFull, action, filepath.Base(a.path), err)
	}
	return fmt.Errorf("%s %s: %w", action, filepath.Base(a.path), err)
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// needsRoll reports whether appending size bytes starts a new segment.
// writeMu is held.
func (q *Queue) needsRoll(size int64) bool {
	a := q.active
	return a == nil || q.needRoll || (a.size > segmentHeaderSize && a.size+size > q.opts.SegmentBytes)
}

// makeRoom makes sure size more bytes, and the header of a new segment if
// they need one, fit under MaxBytes, applying the full policy. writeMu is
// held.
func (q *Queue) makeRoom(size int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	need := func() int64 {
		if q.needsRoll(size) {
			return size + segmentHeaderSize
		}
		return size
	}
	if q.bytes+need() <= q.opts.MaxBytes {
		return nil
	}
	// A segment being written is only deleted by Ack once it is finished:
	// if everything in it was acknowledged, finish it now.
	if a := q.active; a != nil && a.acked == a.records {
		q.retireActiveLocked()
		q.removeLocked(a)
		q.updateGaugesLocked()
		if q.bytes+need() <= q.opts.MaxBytes {
			return nil
		}
	}
	if q.opts.FullPolicy == Block {
		q.m.fullMaxBytes.Inc()
		return fmt.Errorf("%w: %d bytes queued, max_bytes is %d", ErrFull, q.bytes, q.opts.MaxBytes)
	}
	var droppedBytes, droppedRecs int64
	for q.bytes+need() > q.opts.MaxBytes && len(q.segs) > 0 {
		victim := q.segs[0]
		if victim == q.active {
			q.retireActiveLocked()
		}
		droppedBytes += victim.size - victim.ackedOff
		droppedRecs += victim.records - victim.acked
		q.removeLocked(victim)
	}
	q.updateGaugesLocked()
	q.m.droppedBytes.Add(float64(droppedBytes))
	q.m.droppedRecs.Add(float64(droppedRecs))
	q.logger.Warn("queue full: dropped the oldest records",
		"dropped_records", droppedRecs, "dropped_bytes", droppedBytes, "max_bytes", q.opts.MaxBytes)
	return nil
}

// retireActiveLocked closes the segment being written; the next Append
// starts a new one. writeMu and mu are held.
func (q *Queue) retireActiveLocked() {
	if q.w != nil {
		if err := q.w.Close(); err != nil {
			q.logger.Error("close segment", "segment", filepath.Base(q.active.path), "err", err)
		}
		q.w = nil
	}
	q.active = nil
}

// removeLocked deletes a finished segment from the queue and from disk. mu
// is held.
func (q *Queue) removeLocked(s *segment) {
	q.forgetLocked(s)
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.logger.Error("remove segment", "segment", filepath.Base(s.path), "err", err)
	}
}

// forgetLocked drops s from the in-memory state only. mu is held.
func (q *Queue) forgetLocked(s *segment) {
	for i, x := range q.segs {
		if x == s {
			q.segs = append(q.segs[:i], q.segs[i+1:]...)
			break
		}
	}
	s.removed = true
	q.bytes -= s.size
	q.records -= s.records - s.acked
	q.dirDirty = true
}

// roll finishes the active segment and starts a new one. writeMu is held.
func (q *Queue) roll() error {
	if q.w != nil {
		// Finished segments are not synced by the interval syncer: do it now.
		if err := q.w.Sync(); err != nil {
			q.logger.Error("fsync finished segment", "segment", filepath.Base(q.active.path), "err", err)
		}
		q.mu.Lock()
		a := q.active
		q.retireActiveLocked()
		if a.acked == a.records && a.ackedOff >= a.size {
			q.removeLocked(a) // read and acknowledged to its end
		}
		q.wakeLocked() // a reader waiting at its end can move on
		q.mu.Unlock()
	}
	q.needRoll = false

	q.mu.Lock()
	seq := q.nextSeq
	q.nextSeq++
	q.mu.Unlock()
	s := &segment{
		seq:      seq,
		path:     filepath.Join(q.opts.Dir, segmentName(seq)),
		version:  latestFormat,
		start:    segmentHeaderSize,
		size:     segmentHeaderSize,
		ackedOff: segmentHeaderSize,
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return q.writeError("create segment", s, err)
	}
	w := q.opts.wrapFile(f)
	_, err = w.WriteAt(encodeSegmentHeader(latestFormat), 0)
	if err == nil && q.opts.Fsync == FsyncAlways {
		err = w.Sync()
		if err == nil {
			err = syncDir(q.opts.Dir)
		}
	}
	if err != nil {
		_ = w.Close()
		_ = os.Remove(s.path)
		return q.writeError("write segment header", s, err)
	}

	q.w = w
	q.mu.Lock()
	q.segs = append(q.segs, s)
	q.active = s
	q.bytes += s.size
	q.dirDirty = true
	q.updateGaugesLocked()
	q.mu.Unlock()
	q.m.written.Add(segmentHeaderSize)
	return nil
}

// wakeLocked wakes a Next waiting for records. mu is held.
func (q *Queue) wakeLocked() {
	if q.waiting {
		close(q.notify)
		q.notify = make(chan struct{})
		q.waiting = false
	}
}

// waitLocked returns the channel a Next waits on. mu is held.
func (q *Queue) waitLocked() <-chan struct{} {
	q.waiting = true
	return q.notify
}

func (q *Queue) updateGaugesLocked() {
	q.m.bytes.Set(float64(q.bytes))
	q.m.segments.Set(float64(len(q.segs)))
	q.m.records.Set(float64(q.records))
}

// HasRoom reports whether an Append of records whose payloads add up to
// payloadBytes, in n records, would fit now: always under DropOldest, and
// under Block when max_bytes leaves room (counting the header of a new
// segment, so it may refuse an Append that would just fit). It is a hint
// for callers that append to several queues and want all or none: an
// Append can still fail afterwards, when another one takes the room first
// or the disk fills up.
func (q *Queue) HasRoom(n int, payloadBytes int64) bool {
	size := appendBound(n, payloadBytes)
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return false
	case q.opts.FullPolicy == DropOldest:
		return size <= q.opts.MaxBytes
	case q.bytes+size <= q.opts.MaxBytes:
		return true
	}
	// makeRoom finishes an active segment whose records are all
	// acknowledged, which deletes it.
	a := q.active
	return a != nil && a.acked == a.records && q.bytes-a.size+size <= q.opts.MaxBytes
}

// appendBound is what an Append of n records with payloadBytes in all may
// need on disk: their frames, and a new segment's header.
func appendBound(n int, payloadBytes int64) int64 {
	return int64(n)*frameHeaderSizeV1 + payloadBytes + segmentHeaderSize
}

// Fits reports whether an Append of n records with payloadBytes in all is
// within MaxBytes, so that it could be queued once there is room: one that
// is not is refused with ErrTooLarge whatever the queue holds.
func (q *Queue) Fits(n int, payloadBytes int64) bool {
	size := appendBound(n, payloadBytes)
	q.mu.Lock()
	defer q.mu.Unlock()
	return size <= q.opts.MaxBytes
}

// SetLimits changes MaxBytes and FullPolicy of the open queue, for a
// configuration reload; the segment size is capped at maxBytes/2 as in
// Open. A queue above the new maxBytes refuses appends (Block) or drops its
// oldest records at the next Append (DropOldest). maxBytes ≤ 0 means
// DefaultMaxBytes.
func (q *Queue) SetLimits(maxBytes int64, policy FullPolicy) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.opts.MaxBytes = maxBytes
	q.opts.FullPolicy = policy
	q.opts.SegmentBytes = min(q.opts.segmentBytes, maxBytes/2)
}

// Opened returns the position where the records appended since Open
// begin: a record read at a position before it was written before, by an
// earlier Open (a backlog).
func (q *Queue) Opened() Position { return q.opened }

// Len returns the number of records appended and not yet acknowledged, and
// the size of the segment files on disk (what MaxBytes bounds).
func (q *Queue) Len() (records int64, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.records, q.bytes
}

// Close stops the queue: it waits for a running Append, wakes a waiting Next
// (which returns ErrClosed), fsyncs the segment being written, persists and
// fsyncs the read position, and releases the directory lock. Calling Close
// again returns nil.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.done)
	q.mu.Unlock()
	q.wg.Wait()

	var errs []error
	q.writeMu.Lock()
	if q.w != nil {
		if err := q.w.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync segment: %w", err))
		}
		if err := q.w.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close segment: %w", err))
		}
		q.w = nil
	}
	q.writeMu.Unlock()

	q.ackMu.Lock()
	q.mu.Lock()
	seq, off := q.ackSeq, q.ackOff
	q.mu.Unlock()
	if seq != 0 {
		if err := writePosition(q.opts.Dir, seq, off, true); err != nil {
			errs = append(errs, fmt.Errorf("persist read position: %w", err))
		}
	} else if err := syncDir(q.opts.Dir); err != nil {
		errs = append(errs, fmt.Errorf("fsync queue directory: %w", err))
	}
	q.ackMu.Unlock()

	q.readMu.Lock()
	q.rd.closeFile()
	q.readMu.Unlock()

	if err := q.release(); err != nil {
		errs = append(errs, fmt.Errorf("release lock: %w", err))
	}
	return errors.Join(errs...)
}

// syncLoop fsyncs under FsyncInterval.
func (q *Queue) syncLoop() {
	t := time.NewTicker(q.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-q.done:
			return
		case <-t.C:
			q.syncOnce()
		}
	}
}

// syncOnce fsyncs what changed since the last call.
func (q *Queue) syncOnce() {
	q.mu.Lock()
	data, dir, pos := q.dataDirty, q.dirDirty, q.posDirty
	q.dataDirty, q.dirDirty, q.posDirty = false, false, false
	q.mu.Unlock()

	if data {
		q.writeMu.Lock()
		w := q.w
		q.writeMu.Unlock()
		// Without writeMu: an Append may run meanwhile (fsync covers what
		// it wrote or not, either is fine), or roll may close w (it synced
		// it first).
		if w != nil {
			if err := w.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
				q.logger.Error("fsync segment", "err", err)
			}
		}
	}
	if pos {
		q.ackMu.Lock()
		q.mu.Lock()
		seq, off := q.ackSeq, q.ackOff
		q.mu.Unlock()
		if err := writePosition(q.opts.Dir, seq, off, true); err != nil {
			q.logger.Error("persist read position", "err", err)
		}
		q.ackMu.Unlock()
	} else if dir {
		if err := syncDir(q.opts.Dir); err != nil {
			q.logger.Error("fsync queue directory", "err", err)
		}
	}
}
