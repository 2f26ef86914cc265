package forward

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/registry"
)

// maxIdleQueueCap is the largest backing array an empty queue keeps.
const maxIdleQueueCap = 4096

// shard is one of an upstream's parallel senders: a bounded FIFO of items
// and the goroutine that cuts it into batches and sends them one after the
// other, each once the earlier items of its series in other shards are
// sent (see order.go), so a series arrives in order. Capacity counts points
// (see item.count) from their reservation until their batch is sent or
// dropped, so it bounds the batch in flight too.
type shard struct {
	f   *forwarder
	idx int

	mu   sync.Mutex
	fifo fifo
	// points are reserved, queued or in flight, against the capacity; the
	// disk queue's reader waits on it for room.
	points *budget
	notify chan struct{} // signalled when items are appended
	// urgent is the number of the last item another shard's batch waits
	// for (see order): up to it, batches are sent without waiting to fill.
	urgent atomic.Uint64

	batch []item // owned by the shard's goroutine
}

// fifo is a queue of items with its points and estimated bytes.
type fifo struct {
	items         []item
	head, n, size int
	wholes        int // whole items (see whole.go): each a batch, ready to send
}

// appendItems queues items, whose n points have been reserved, numbering
// those not numbered yet (see order.queue).
func (s *shard) appendItems(items []item, n int) {
	o := s.f.order
	o.mu.Lock()
	defer o.mu.Unlock()
	s.mu.Lock()
	q := &s.fifo
	for _, it := range items {
		if it.seq == 0 {
			o.queue(&it, s.idx)
		}
		q.items = append(q.items, it)
		q.size += it.size
		if it.whole != nil {
			q.wholes++
		}
	}
	q.n += n
	s.mu.Unlock()
	s.wake()
}

// state reports whether a batch is ready (full, whole, or waited for by
// another shard), and whether anything waits.
func (s *shard) state() (ready, any bool) {
	maxN, maxB := s.f.batchLimits()
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.fifo
	urgent := q.head < len(q.items) && q.items[q.head].seq <= s.urgent.Load()
	return q.n >= maxN || q.size >= maxB || q.wholes > 0 || urgent, q.n > 0
}

// urge has the shard send its items up to seq without waiting to fill a
// batch: another shard waits for them.
func (s *shard) urge(seq uint64) {
	for cur := s.urgent.Load(); seq > cur; cur = s.urgent.Load() {
		if s.urgent.CompareAndSwap(cur, seq) {
			s.wake()
			return
		}
	}
}

// wake makes the shard's goroutine look at its queue again.
func (s *shard) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// take removes the next batch, within the batch limits, splitting an item
// that alone exceeds them. It returns the batch (valid until the next
// take), its points, the bytes it took off the queue, and the number of the
// last item it completes (see order).
func (s *shard) take() ([]item, int, int, uint64) {
	maxN, maxB := s.f.batchLimits()
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.fifo
	size := q.size
	b, n := q.take(s.batch[:0], maxN, maxB, s.f.order)
	s.batch = b
	var done uint64
	if len(b) > 0 {
		if done = b[len(b)-1].seq; q.head < len(q.items) && q.items[q.head].seq == done {
			done-- // the rest of its last item is still queued
		}
	}
	return b, n, size - q.size, done
}

// take appends the next batch of q to b. A whole item is a batch of its
// own, and an item that waits for others (see order) is the first of its
// batch, so that a batch waits only for what its first item waits for.
func (q *fifo) take(b []item, maxN, maxB int, o *order) ([]item, int) {
	n, size := 0, 0
	for q.head < len(q.items) {
		it := &q.items[q.head]
		if len(b) > 0 && (it.tenant != b[0].tenant || it.whole != nil || b[0].whole != nil || !o.ready(it.gate)) {
			break // one tenant per batch, and only its first item waits
		}
		c := it.count()
		fits := n+c <= maxN && size+it.size <= maxB
		if !fits && len(b) > 0 {
			break
		}
		// Cut or not, a whole item leaves the queue as one.
		if it.whole != nil {
			q.wholes--
		}
		if !fits {
			// The first item alone is too large: send the part that fits.
			k := maxN
			if it.size > maxB {
				k = min(k, max(maxB/max(it.size/c, 1), 1))
			}
			if k < c {
				if head, tail, err := it.split(k); err == nil {
					b = append(b, head)
					n = head.count()
					q.n -= n
					q.size += tail.size - it.size
					*it = tail
					if tail.count() == 0 {
						*it = item{}
						q.head++
					}
					break
				}
				// Not a chunk that can be cut: sent whole, for the
				// upstream to take or refuse.
			}
		}
		b = append(b, *it)
		n += c
		size += it.size
		q.n -= c
		q.size -= it.size
		*it = item{}
		q.head++
		if !fits {
			break
		}
	}
	if q.head == len(q.items) || (q.head > 1024 && q.head > len(q.items)/2) {
		q.items, q.head = slices.Delete(q.items, 0, q.head), 0
		if len(q.items) == 0 && cap(q.items) > maxIdleQueueCap {
			q.items = nil // let a burst's backing array go
		}
	}
	return b, n
}

// run is the shard's goroutine: it sends a batch when one is full or when
// the oldest queued item has waited batch_send_deadline, and on quit
// flushes the queue until ctx is done (the rest is abandoned).
func (s *shard) run() {
	f := s.f
	ctx := f.ctx
	if f.ready != nil {
		select {
		case <-f.ready:
		case <-ctx.Done():
		}
	}
	deadline := time.Duration(f.cfg.QueueConfig.BatchSendDeadline)
	timer := time.NewTimer(deadline)
	timer.Stop()
	armed := false
	for {
		full, pending := s.state()
		if full {
			s.sendNext(ctx)
			continue
		}
		if pending && !armed {
			timer.Reset(deadline)
			armed = true
		}
		select {
		case <-s.notify:
		case <-timer.C:
			armed = false
			s.sendNext(ctx)
		case <-f.quit:
			timer.Stop()
			for _, pending := s.state(); pending; _, pending = s.state() {
				s.sendNext(ctx)
			}
			return
		}
	}
}

// sendNext takes one batch, sends it and gives its room back. In disk mode
// a batch abandoned at shutdown is not done for its records, so it is read
// again after a restart.
func (s *shard) sendNext(ctx context.Context) {
	b, n, bytes, done := s.take()
	if n == 0 {
		return
	}
	if gate := b[0].gate; gate != nil {
		for _, m := range gate {
			s.f.shards[m.shard].urge(m.seq)
		}
		s.f.order.wait(ctx, gate) // if ctx ends, send abandons the batch
	}
	start := time.Now()
	if s.send(ctx, b) {
		s.f.completeItems(b)
	}
	s.f.rates.busy.add(int64(time.Since(start)))
	clear(b)
	s.f.mem.give(bytes)
	s.points.give(n)
	s.f.order.done(s.idx, done)
	s.f.m.QueueLength.Sub(float64(n))
}

// send delivers one batch: it retries with backoff until success or ctx is
// done, splits it on 413, and drops (and counts) it on other 4xx. It reports
// false if it gave up on some of it because ctx ended (see abandon).
func (s *shard) send(ctx context.Context, items []item) bool {
	f := s.f
	q := &f.cfg.QueueConfig
	if ctx.Err() != nil {
		f.abandon(countPoints(items))
		return false
	}
	items = s.dropTooOld(items)
	if len(items) == 0 {
		return true
	}
	proto := f.proto()
	resentV1 := false
	// The encoder and the request body it returns are this send's until it
	// returns (retries included); then they go back to the pool, so only
	// the batches being sent hold encoding buffers, not every shard.
	enc := f.encoders.get()
	defer f.encoders.put(enc)
	var (
		data []byte // nil: items are to be encoded (again) in proto
		st   batchStats
	)
	backoff := time.Duration(q.MinBackoff)
	for retry := 0; ; retry++ {
		if ctx.Err() != nil {
			f.abandon(countPoints(items))
			return false
		}
		if data == nil {
			var err error
			if data, st, err = enc.encode(proto, items, f.cfg.MetadataConfig.Send); err != nil {
				f.drop(registry.DropEncode, countPoints(items))
				f.logger.Error("encode batch, dropped it", "err", err)
				return true
			}
		}
		res := f.post(ctx, data, proto, items[0].tenant, retry, st.points())
		switch res.outcome {
		case outcomeOK:
			f.settled(st.points())
			f.m.SentSamples.Add(float64(st.samples))
			f.m.SentHistograms.Add(float64(st.histograms))
			f.m.SentExemplars.Add(float64(st.exemplars))
			f.m.SentMetadata.Add(float64(st.metadata))
			f.m.SentBatches.Inc()
			f.m.SentBytes.Add(float64(len(data)))
			f.m.LastSuccess.SetToCurrentTime()
			f.lastSend.Store(time.Now().UnixNano())
			f.backoffHint.Store(0)
			if proto == prw.ProtoV2 && st.points() > 0 && f.fellBack.Swap(0) != 0 {
				f.logger.Info("upstream accepts remote write 2.0 again: sending 2.0")
			}
			f.accepted(items)
			return true

		case outcomeFallback:
			f.m.Failed.Add(float64(st.points()))
			f.fallBack(res.err)
			proto, resentV1, data = prw.ProtoV1, true, nil

		case outcomeTooLarge:
			f.refusedLarge.Store(true)
			head, tail, ok := splitBatch(items)
			if !ok {
				f.drop(registry.DropTooLarge, st.points())
				if f.warnLog.allow() {
					f.logger.Warn("upstream refused a single point as too large, dropped it", "err", res.err, "body", string(res.body))
				}
				return true
			}
			sentHead := s.send(ctx, head)
			sentTail := s.send(ctx, tail)
			return sentHead && sentTail

		case outcomeDrop:
			reason := registry.DropHTTPStatus
			if resentV1 {
				reason = registry.DropOldReceiver
			}
			f.drop(reason, st.points())
			if f.warnLog.allow() {
				f.logger.Warn("upstream refused a batch, dropped it", "err", res.err, "body", string(res.body), "samples", st.points())
			}
			return true

		case outcomeRetry:
			if ctx.Err() != nil {
				continue // abandoned above, not failed
			}
			f.m.Failed.Add(float64(st.points()))
			if f.retryLog.allow() {
				f.logger.Warn("send batch, retrying", "err", res.err, "retry", retry+1)
			}
			sleep := jitter(backoff, time.Duration(q.MaxBackoff))
			if res.retryAfter > 0 {
				sleep = res.retryAfter
			}
			backoff = min(backoff*2, time.Duration(q.MaxBackoff))
			f.backoffHint.Store(int64(sleep))
			if !sleepCtx(ctx, sleep) {
				continue
			}
			kept := s.dropTooOld(items)
			if len(kept) == 0 {
				return true
			}
			if len(kept) != len(items) || countPoints(kept) != countPoints(items) {
				items, data = kept, nil
			}
			f.m.Retried.Add(float64(countPoints(items)))
		}
	}
}

// splitBatch cuts a batch refused as too large into two halves: between
// items if there are several, else between a chunk's series, else within a
// series (its head is sent first, so its points stay in order). ok is false
// for a batch of one point.
func splitBatch(items []item) (head, tail []item, ok bool) {
	if len(items) > 1 {
		mid := len(items) / 2
		return items[:mid:mid], items[mid:], true
	}
	it := &items[0]
	n := it.count()
	if it.family != nil || n <= 1 {
		return nil, nil, false
	}
	h, t, err := it.split(n / 2)
	if err != nil {
		return nil, nil, false
	}
	return []item{h}, []item{t}, true
}

// jitter returns a delay in [d, 1.25d], at most ceiling: as d doubles per
// retry, it spreads many shards' retries without ever shortening a wait.
func jitter(d, ceiling time.Duration) time.Duration {
	if d >= ceiling {
		return ceiling
	}
	return min(d+rand.N(d/4+1), ceiling)
}

// sleepCtx waits for d; it reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dropTooOld removes points older than sample_age_limit, counting them. It
// returns items itself if nothing is too old, else a new slice: queued items
// are shared and never modified.
func (s *shard) dropTooOld(items []item) []item {
	limit := time.Duration(s.f.cfg.QueueConfig.SampleAgeLimit)
	if limit <= 0 {
		return items
	}
	cutoff := time.Now().Add(-limit).UnixMilli()
	recent := func(_ int, t int64, _ int) bool { return t >= cutoff }
	var out []item
	dropped := 0
	for i := range items {
		it := &items[i]
		kept, d, err := it.keepPoints(recent) // a family item, without points, is kept
		if err != nil {
			kept = item{} // malformed: nothing of it can be sent
			s.f.drop(registry.DropEncode, it.points())
		}
		if out == nil && (err != nil || d > 0) {
			out = append(make([]item, 0, len(items)), items[:i]...)
		}
		dropped += d
		if out != nil && kept.count() > 0 {
			out = append(out, kept)
		}
	}
	s.f.drop(registry.DropSampleAge, dropped)
	if out == nil {
		return items
	}
	return out
}
