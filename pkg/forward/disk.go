package forward

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/queue"
)

// Storage layout under Options.StoragePath.
const (
	queuesDir     = "queues"
	quarantineDir = "quarantine"
	// lagInterval is how often gateway_upstream_queue_lag_seconds is
	// updated.
	lagInterval = time.Second
	// readRetryInterval is the pause after a read error other than a
	// shutdown.
	readRetryInterval = time.Second
	// corruptUndecodable is the kind label of gateway_queue_corrupt_bytes_total
	// for records that passed the queue's checksums but could not be decoded.
	corruptUndecodable = "undecodable"
)

// diskQueue is what a forwarder uses of pkg/queue. Tests wrap the real
// queue to inject errors such as a full disk.
type diskQueue interface {
	AppendAt(recs ...[]byte) (queue.Position, error)
	HasRoom(n int, payloadBytes int64) bool
	Fits(n int, payloadBytes int64) bool
	Next(ctx context.Context) ([]byte, queue.Position, error)
	Ack(pos queue.Position) error
	Rewind() error
	Len() (records, bytes int64)
	SetLimits(maxBytes int64, policy queue.FullPolicy)
	Close() error
}

// queueDir and quarantinePath are where upstream name's queue lives.
func queueDir(storage, name string) string { return filepath.Join(storage, queuesDir, name) }
func quarantinePath(storage, name string) string {
	return filepath.Join(storage, quarantineDir, name)
}

func fullPolicy(q *config.QueueConfig) queue.FullPolicy {
	if q.FullPolicy == config.FullPolicyDropOldest {
		return queue.DropOldest
	}
	return queue.Block
}

// openQueue opens the disk queue of upstream u.
func (m *Manager) openQueue(u *config.UpstreamConfig) (diskQueue, error) {
	q, err := queue.Open(queue.Options{
		Dir:           queueDir(m.opts.StoragePath, u.Name),
		QuarantineDir: quarantinePath(m.opts.StoragePath, u.Name),
		Upstream:      u.Name,
		MaxBytes:      u.QueueConfig.MaxBytes,
		FullPolicy:    fullPolicy(&u.QueueConfig),
		Fsync:         m.opts.Fsync,
		SyncInterval:  m.opts.SyncInterval,
		Logger:        m.logger.With("upstream", u.Name, "component", "queue"),
		Metrics:       m.queueMetrics,
	})
	if err != nil {
		return nil, fmt.Errorf("open disk queue: %w", err)
	}
	if m.opts.wrapQueue != nil {
		return m.opts.wrapQueue(q), nil
	}
	return q, nil
}

// pendingRecord is a record read from the disk queue whose points are in
// the shards. Its position is acknowledged once every point of it and of
// every earlier record is sent or dropped.
type pendingRecord struct {
	pos      queue.Position
	appended time.Time
	left     int // points not yet done; guarded by acker.mu
}

// acker tracks the records a forwarder read and acknowledges the longest
// fully delivered prefix: the contiguous watermark. Its methods are safe
// for concurrent use: shards complete points, the reader adds records.
type acker struct {
	f *forwarder

	mu      sync.Mutex
	pending []*pendingRecord // in read order, from head
	head    int
}

func (a *acker) add(r *pendingRecord) {
	a.mu.Lock()
	a.pending = append(a.pending, r)
	a.mu.Unlock()
}

// complete marks n points of r done and acknowledges what became
// contiguous.
func (a *acker) complete(r *pendingRecord, n int) {
	a.mu.Lock()
	r.left -= n
	if r.left > 0 {
		a.mu.Unlock()
		return
	}
	var last *pendingRecord
	for a.head < len(a.pending) && a.pending[a.head].left <= 0 {
		last = a.pending[a.head]
		a.pending[a.head] = nil
		a.head++
	}
	if a.head == len(a.pending) {
		a.pending, a.head = a.pending[:0], 0
	} else if a.head > 1024 && a.head > len(a.pending)/2 {
		k := copy(a.pending, a.pending[a.head:])
		clear(a.pending[k:])
		a.pending, a.head = a.pending[:k], 0
	}
	a.mu.Unlock()
	if last == nil {
		return
	}
	// Outside the lock: Ack may fsync. Concurrent Acks may arrive out of
	// order; the queue ignores a position at or before the acknowledged one.
	if err := a.f.dq.Ack(last.pos); err != nil && a.f.warnLog.allow() {
		a.f.logger.Warn("acknowledge queue records; they may be sent again after a restart", "err", err)
	}
}

// oldest returns when the oldest unacknowledged record read was appended.
func (a *acker) oldest() (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.head == len(a.pending) {
		return time.Time{}, false
	}
	return a.pending[a.head].appended, true
}

// completeItems marks the points of a finished batch done, a run of items
// of the same record at a time.
func (f *forwarder) completeItems(items []item) {
	if f.acker == nil {
		return
	}
	var (
		cur *pendingRecord
		n   int
	)
	for i := range items {
		r := items[i].rec
		if r != cur {
			if cur != nil {
				f.acker.complete(cur, n)
			}
			cur, n = r, 0
		}
		n += items[i].count()
	}
	if cur != nil {
		f.acker.complete(cur, n)
	}
}

// readLoop is the disk-mode forwarder's reader: it takes records from the
// queue in order, decodes them and feeds the shards, waiting for room in
// them (backpressure on the queue, never on clients).
func (f *forwarder) readLoop() {
	ctx := f.readCtx
	if f.ready != nil {
		select {
		case <-f.ready:
		case <-ctx.Done():
			return
		}
	}
	// Records the forwarder of the previous configuration read and did not
	// get acknowledged are read again.
	if err := f.dq.Rewind(); err != nil {
		f.logger.Error("rewind disk queue; not reading it", "err", err)
		return
	}
	q := &f.cfg.QueueConfig
	dec := newRecordDecoder(len(f.shards), q.MaxSamplesPerSend, q.MaxBytesPerSend)
	for {
		rec, pos, err := f.dq.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, queue.ErrClosed) {
				return
			}
			f.logger.Error("read disk queue, retrying", "err", err)
			if !sleepCtx(ctx, readRetryInterval) {
				return
			}
			continue
		}
		items, appended, ok := f.handoff.take(pos)
		if !ok {
			var skipped int
			items, appended, skipped, err = dec.decode(rec)
			if err != nil {
				skipped, items = len(rec), nil
			}
			if skipped > 0 {
				f.undecodable.Add(float64(skipped))
				if f.warnLog.allow() {
					f.logger.Error("queue record holds what the upstream would refuse; skipped that part", "err", err, "bytes", skipped, "record_bytes", len(rec))
				}
			}
		}
		pr := &pendingRecord{pos: pos, appended: appended}
		for i := range items {
			items[i].rec = pr
			pr.left += items[i].count()
		}
		f.acker.add(pr)
		if len(items) == 0 {
			f.acker.complete(pr, 0)
			continue
		}
		sorted, ranges, _ := groupByShard(items, shardsOf(items, len(f.shards)), len(f.shards))
		for _, r := range ranges {
			s := f.shards[r.shard]
			if !s.reserveWait(ctx, r.count) {
				return // stopping: the record stays unacknowledged on disk
			}
			f.m.queueLength.Add(float64(r.count))
			s.appendItems(sorted[r.lo:r.hi], r.count)
		}
	}
}

// shardsOf returns the shard of every item: a chunk's own, 0 for family
// metadata.
func shardsOf(items []item, n int) []int {
	out := make([]int, len(items))
	for i := range items {
		if items[i].family == nil {
			out[i] = items[i].shard % n
		}
	}
	return out
}

// lagLoop updates the lag gauge until the forwarder stops.
func (f *forwarder) lagLoop() {
	t := time.NewTicker(lagInterval)
	defer t.Stop()
	for {
		select {
		case <-f.quit:
			return
		case <-t.C:
			f.updateLag(time.Now())
		}
	}
}

func (f *forwarder) updateLag(now time.Time) {
	if oldest, ok := f.acker.oldest(); ok {
		f.lag.Set(max(now.Sub(oldest).Seconds(), 0))
		return
	}
	if records, _ := f.dq.Len(); records == 0 {
		f.lag.Set(0)
	}
	// Otherwise records wait on disk and the reader is about to take
	// them: keep the last value.
}

// scanOrphans finds the queue directories of upstreams that are not
// configured with a disk queue, exports their number and size, and logs
// them once.
func (m *Manager) scanOrphans(diskNames map[string]bool) {
	dir := filepath.Join(m.opts.StoragePath, queuesDir)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.logger.Warn("list queue directories; orphaned queues are not reported", "dir", dir, "err", err)
		return
	}
	var (
		names []string
		bytes int64
	)
	for _, e := range entries {
		if !e.IsDir() || diskNames[e.Name()] {
			continue
		}
		names = append(names, e.Name())
		_ = filepath.WalkDir(filepath.Join(dir, e.Name()), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					bytes += fi.Size()
				}
			}
			return nil
		})
	}
	slices.Sort(names)
	m.metrics.OrphanedDirectories.Set(float64(len(names)))
	m.metrics.OrphanedBytes.Set(float64(bytes))
	if len(names) > 0 {
		m.logger.Warn("queue directories without a configured disk-queued upstream: left in place, not sent; "+
			"re-add the upstream to send them, or stop the gateway and delete them",
			"dir", dir, "upstreams", names, "bytes", bytes)
	}
}
