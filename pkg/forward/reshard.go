package forward

import (
	"math"
	"sync/atomic"
	"time"
)

// Dynamic resharding, after Prometheus: every shardUpdateInterval the
// number of shards, between min_shards and max_shards, follows the time a
// point takes to send (encoding and latency included) times the rate points
// come in, plus a share of what is pending. A fast upstream at a low rate
// is sent by one shard: a small request leaves as one, and memory holds one
// shard's queue.
//
// Unlike Prometheus, which reads its WAL at its own pace, the gateway takes
// writes as they come, so it looks every second, not every 10, and adds
// shards as soon as those in use cannot keep up, but removes them only
// below the current number less shardTolerance, so as not to swing.
//
// An item goes to a shard in use as it is queued (see order.route), so
// nothing queued moves on a change. A series that goes to another shard
// waits there for its earlier items in the old one (see order.go):
// per-series order holds, and neither enqueueing nor resharding ever
// waits.

const (
	shardUpdateInterval  = time.Second
	backlogCheckInterval = 250 * time.Millisecond // see checkBacklog
	backlogHold          = 10 * time.Second       // no shard is removed this long after a backlog
	shardTolerance       = 0.3                    // the headroom kept when shards are removed
	// backlogGrowth multiplies the shards while they fall further behind
	// (see checkBacklog): one step from 1 to 8 shards, where doubling
	// took three, a second and a half in which a closed loop's backlog
	// outgrew the handoff and was decoded from disk again.
	backlogGrowth = 8
	// integralGain is the share of pending points, per second, the desired
	// number of shards also sends: a backlog is caught up in about 5 s
	// (Prometheus: 0.1 per 10 s, as its WAL is its backlog).
	integralGain = 0.2
	ewmaWeight   = 0.2
)

// ewmaRate is an exponentially weighted moving average of a rate per second.
type ewmaRate struct {
	events atomic.Int64
	rate   float64
	init   bool
}

func (r *ewmaRate) add(n int64) { r.events.Add(n) }

func (r *ewmaRate) tick(interval time.Duration) float64 {
	instant := float64(r.events.Swap(0)) / interval.Seconds()
	if r.init {
		r.rate += ewmaWeight * (instant - r.rate)
	} else {
		r.rate, r.init = instant, true
	}
	return r.rate
}

// shardRates are what the desired number of shards is computed from.
type shardRates struct {
	in, out, busy ewmaRate // points handed, points settled, nanoseconds spent sending
}

// desiredShards returns the number of shards f should send with, given the
// rates of the last intervals and pending points, or cur to keep it.
func desiredShards(cur, lo, hi int, inRate, outRate, busyRate float64, pending int64) int {
	if outRate <= 0 {
		return cur
	}
	timePerPoint := busyRate / float64(time.Second) / outRate
	want := timePerPoint * (inRate + integralGain*float64(pending))
	n := cur
	switch {
	case want > float64(cur): // the shards in use cannot keep up
		n = int(math.Ceil(want))
	case want*(1+shardTolerance) < float64(cur):
		n = int(math.Ceil(want * (1 + shardTolerance)))
	}
	return min(max(n, lo), hi)
}

// reshardLoop adjusts the number of shards until the forwarder stops.
func (f *forwarder) reshardLoop() {
	q := &f.cfg.QueueConfig
	if q.MinShards >= q.MaxShards {
		return
	}
	t := time.NewTicker(backlogCheckInterval)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-f.quit:
			return
		case <-t.C:
			if i%int(shardUpdateInterval/backlogCheckInterval) == 0 {
				f.updateShards(shardUpdateInterval)
			} else {
				f.checkBacklog()
			}
		}
	}
}

// checkBacklog multiplies the shards by backlogGrowth, at most every
// 500 ms, while they fall further behind (a full memory queue, or a reader behind half the handoff,
// and more pending than at the last check): waiting for the rates would let
// a disk backlog outgrow the handoff, and decoding it costs sending CPU.
func (f *forwarder) checkBacklog() {
	if !f.refused.Swap(false) && (f.handoff == nil || !f.handoff.behind()) {
		return // no backlog
	}
	f.backlogAt.Store(time.Now().UnixNano())
	q := &f.cfg.QueueConfig
	cur := f.activeShards()
	if cur >= q.MaxShards {
		return
	}
	if last := f.lastSend.Load(); last == 0 || time.Since(time.Unix(0, last)) > time.Second {
		return // the upstream is not taking data: more shards would not help
	}
	pending, was := f.pending.Load(), f.pendingAt
	f.pendingAt = pending
	if time.Since(time.Unix(0, f.reshardAt.Load())) < 500*time.Millisecond || pending <= was {
		return // the last reshard has yet to show, or the shards catch up
	}
	f.setShards(cur, min(backlogGrowth*cur, q.MaxShards))
}

// updateShards sets the shards to the desired number for the last interval.
func (f *forwarder) updateShards(interval time.Duration) {
	q := &f.cfg.QueueConfig
	in, out, busy := f.rates.in.tick(interval), f.rates.out.tick(interval), f.rates.busy.tick(interval)
	cur := f.activeShards()
	// As Prometheus: no resharding while the upstream takes nothing.
	if last := f.lastSend.Load(); last == 0 || time.Since(time.Unix(0, last)) > 2*time.Duration(q.BatchSendDeadline)+interval {
		return
	}
	n := desiredShards(cur, q.MinShards, q.MaxShards, in, out, busy, f.pending.Load())
	if n < cur && time.Since(time.Unix(0, f.backlogAt.Load())) < backlogHold {
		n = cur // not fewer shards soon after they fell behind
	}
	f.m.DesiredShards.Set(float64(n))
	if n != cur {
		f.setShards(cur, n)
	}
}

// activeShards is the number of shards in use.
func (f *forwarder) activeShards() int { return int(f.active.Load()) }

// setShards changes the number of shards in use from cur to n.
func (f *forwarder) setShards(cur, n int) {
	f.active.Store(int32(n))
	f.reshardAt.Store(time.Now().UnixNano())
	f.logger.Info("resharding", "from", cur, "to", n)
	f.m.Shards.Set(float64(n))
	f.m.QueueCapacity.Set(float64(n * f.cfg.QueueConfig.Capacity))
}
