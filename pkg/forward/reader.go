package forward

import (
	"errors"
	"time"

	"github.com/rwgateway/gateway/pkg/queue"
)

const (
	lagInterval       = time.Second // how often the queue lag gauge is updated
	readRetryInterval = time.Second // the pause after a read error
	// corruptUndecodable is the kind label of gateway_queue_corrupt_bytes_total
	// for records that passed the queue's checksums but could not be decoded.
	corruptUndecodable = "undecodable"
)

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
	// What the previous configuration's forwarder read and did not get
	// acknowledged is read again.
	if f.prev != nil {
		f.m.Pending.Set(float64(f.pending.Add(f.prev.pending.Swap(0))))
		f.prev = nil
	}
	if err := f.dq.Rewind(); err != nil {
		f.logger.Error("rewind disk queue; not reading it", "err", err)
		return
	}
	q := &f.cfg.QueueConfig
	dec := newRecordDecoder(q.MaxSamplesPerSend, q.MaxBytesPerSend)
	// A record whose items the handoff holds is not read back: rec is nil,
	// and items are what the last call of have took. have is made once:
	// passed through the diskQueue interface it escapes, and a closure
	// made per record would allocate itself and what it sets each time.
	var (
		items    []item
		appended time.Time
		asked    queue.Position // where have last looked in the handoff
		didAsk   bool
	)
	have := func(pos queue.Position) bool {
		var ok bool
		items, appended, ok = f.handoff.take(pos)
		asked, didAsk = pos, true
		return ok
	}
	for {
		items, appended, didAsk = nil, time.Time{}, false
		rec, pos, err := f.dq.NextUnless(ctx, have)
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
		ok := rec == nil
		if !ok && !(didAsk && asked.Equal(pos)) { // taken once: a miss is one
			items, appended, ok = f.handoff.take(pos)
		}
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
		var s, h, e int
		tenant := ""
		for i := range items {
			it := &items[i]
			it.rec = pr
			pr.left += it.count()
			s, h, e = s+int(it.samples), h+int(it.histograms), e+int(it.exemplars)
			tenant = it.tenant // a record holds one tenant's data
		}
		if !ok && pos.Before(f.dq.Opened()) {
			f.handed(tenant, s, h, e) // a backlog written before this process
		}
		f.acker.add(pr)
		if len(items) == 0 {
			f.acker.complete(pr, 0)
			continue
		}
		if !f.mem.wait(ctx, itemsSize(items)) {
			return // stopping: the record stays unacknowledged on disk
		}
		active := f.activeShards()
		for i := range items {
			// Numbered as it is placed, and appended before anything
			// else is numbered (see order.place).
			it := &items[i]
			s, n := f.shards[f.order.place(it, active, f.load)], it.count()
			if !s.points.wait(ctx, n) {
				f.mem.give(itemsSize(items[i:]))
				return
			}
			f.m.QueueLength.Add(float64(n))
			s.appendItems(items[i:i+1], n)
		}
	}
}

// lagLoop updates the lag gauge until the forwarder stops. When records
// wait on disk and none read is unacknowledged, it keeps its last value.
func (f *forwarder) lagLoop() {
	t := time.NewTicker(lagInterval)
	defer t.Stop()
	for {
		select {
		case <-f.quit:
			return
		case <-t.C:
			if oldest, ok := f.acker.oldest(); ok {
				f.lag.Set(max(time.Since(oldest).Seconds(), 0))
			} else if records, _ := f.dq.Len(); records == 0 {
				f.lag.Set(0)
			}
		}
	}
}
