package forward

import (
	"context"
	"sync"
	"sync/atomic"
)

// Per-series order. A shard sends its items one batch after the other, so
// two items of a series in one shard arrive in the order they were queued.
// Items of a series in two shards could overtake each other, so an item
// waits, before it is sent, for the earlier items in other shards that hold
// one of its series and are not sent yet: its gate. That is the order a
// sender keeps itself (it sends a series' next samples once the previous
// ones were answered). It lets the number of shards change at any time
// (reshard.go) and a sender's request go whole to any shard (whole.go).
//
// Items are numbered as they are queued, and a shard's items are queued in
// the order of their numbers and sent or dropped in that order, so what a
// shard has done is one number, sent[shard]: its every item up to that one.

// order tracks, for one upstream, the last queued item of every series not
// known to be sent, and how far each shard has sent. Its methods are safe
// for concurrent use.
type order struct {
	mu   sync.Mutex
	last map[uint64]mark // series hash -> the last item queued with it
	seq  uint64          // the number of the last item queued
	kept int             // len(last) after the last sweep

	sent []atomic.Uint64 // by shard

	wmu  sync.Mutex
	wake chan struct{} // closed when a shard has sent, if something waits
}

// mark is where an item was queued: its number and shard.
type mark struct {
	seq   uint64
	shard int32
}

// minSweep is the least number of series tracked before a sweep forgets
// those whose last item was sent.
const minSweep = 1 << 16

func newOrder(shards int) *order {
	return &order{last: map[uint64]mark{}, sent: make([]atomic.Uint64, shards)}
}

// pending reports whether the item m is neither sent nor dropped.
func (o *order) pending(m mark) bool { return m.seq > o.sent[m.shard].Load() }

// queue numbers it, about to be appended to shard, sets its gate, and
// records it as the last item of its series. The caller holds o.mu, and
// appends the items it numbers to each shard in the order of their numbers.
func (o *order) queue(it *item, shard int) {
	o.seq++
	it.seq, it.gate = o.seq, nil
	me := mark{seq: o.seq, shard: int32(shard)}
	for _, h := range it.hashes {
		if m, ok := o.last[h]; ok && m.shard != me.shard && o.pending(m) {
			it.gate = addDep(it.gate, m)
		}
		o.last[h] = me
	}
	if len(o.last) >= max(2*o.kept, minSweep) {
		o.sweep()
	}
}

// sweep forgets the series whose last item was sent.
func (o *order) sweep() {
	for h, m := range o.last {
		if !o.pending(m) {
			delete(o.last, h)
		}
	}
	o.kept = len(o.last)
}

// addDep adds the item m to gate, which keeps the latest item per shard:
// once it is sent, so are that shard's earlier ones.
func addDep(gate []mark, m mark) []mark {
	for i := range gate {
		if gate[i].shard == m.shard {
			gate[i].seq = max(gate[i].seq, m.seq)
			return gate
		}
	}
	return append(gate, m)
}

// ready reports whether every item of gate is sent or dropped.
func (o *order) ready(gate []mark) bool {
	for _, m := range gate {
		if o.pending(m) {
			return false
		}
	}
	return true
}

// wait returns once every item of gate is sent or dropped, or ctx is done.
func (o *order) wait(ctx context.Context, gate []mark) {
	for {
		o.wmu.Lock()
		if o.ready(gate) {
			o.wmu.Unlock()
			return
		}
		if o.wake == nil {
			o.wake = make(chan struct{})
		}
		wake := o.wake
		o.wmu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}

// done records that shard sent or dropped its items up to seq, and wakes
// what waits.
func (o *order) done(shard int, seq uint64) {
	if seq <= o.sent[shard].Load() {
		return
	}
	o.sent[shard].Store(seq)
	o.wmu.Lock()
	if o.wake != nil {
		close(o.wake)
		o.wake = nil
	}
	o.wmu.Unlock()
}
