package forward

import (
	"context"
	"math/bits"
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
// (reshard.go) and any item go to any shard: a sender's request whole
// (whole.go), or a chunk of one (chunk.go).
//
// Items are numbered as they are queued, and a shard's items are queued in
// the order of their numbers and sent or dropped in that order, so what a
// shard has done is one number, sent[shard]: its every item up to that one.

// order tracks, for one upstream, the last queued item of every series not
// known to be sent, and how far each shard has sent. Its methods are safe
// for concurrent use.
type order struct {
	mu      sync.Mutex
	last    markTable // series hash -> the last item queued with it
	seq     uint64    // the number of the last item queued
	next    int       // where route starts looking for the least loaded shard
	idx     []int     // place's scratch
	touched uint32    // see touch

	sent []atomic.Uint64 // by shard

	wmu  sync.Mutex
	wake chan struct{} // closed when a shard has sent, if something waits
}

// mark is where an item was queued: its number and shard. The zero mark
// is no item.
type mark struct {
	seq   uint64
	shard int32
}

func newOrder(shards int) *order {
	return &order{last: newMarkTable(minMarkTable), sent: make([]atomic.Uint64, shards)}
}

// pending reports whether the item m is neither sent nor dropped.
func (o *order) pending(m mark) bool { return m.seq > o.sent[m.shard].Load() }

// queue numbers it, about to be appended to shard, sets its gate, and
// records it as the last item of its series. The caller holds o.mu, and
// appends the items it numbers to each shard in the order of their numbers.
func (o *order) queue(it *item, shard int) {
	o.reserve(len(it.hashes))
	o.seq++
	it.seq, it.gate = o.seq, nil
	me := mark{seq: o.seq, shard: int32(shard)}
	for _, h := range it.hashes {
		o.mark(o.last.index(h), it, me)
	}
}

// mark makes the item me, numbered it, the last of the series in slot i,
// behind that series' last item if it is pending in another shard. The
// caller holds o.mu.
func (o *order) mark(i int, it *item, me mark) {
	e := &o.last.entries[i]
	if m := e.mark(); m.seq != 0 && m.shard != me.shard && o.pending(m) {
		it.gate = addDep(it.gate, m)
	}
	e.set(me)
}

// place routes it and numbers it as queue does, looking each of its series
// up once: it goes to the shard of the latest of its series' items not
// sent yet, behind which it would wait anyway, or else to the one of the
// active shards with the fewest points held (load reports them). The
// caller appends it to that shard before it numbers anything else.
func (o *order) place(it *item, active int, load func(shard int) int64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reserve(len(it.hashes)) // no rebuild below: the indexes stay valid
	o.touch(it.hashes)
	o.idx = o.idx[:0]
	var latest mark
	for _, h := range it.hashes {
		i := o.last.index(h)
		o.idx = append(o.idx, i)
		if m := o.last.entries[i].mark(); m.seq > latest.seq && int(m.shard) < active && o.pending(m) {
			latest = m
		}
	}
	shard := int(latest.shard)
	if latest.seq == 0 {
		shard = o.leastLoaded(active, load)
	}
	o.seq++
	it.seq, it.gate = o.seq, nil
	me := mark{seq: o.seq, shard: int32(shard)}
	for _, i := range o.idx {
		o.mark(i, it, me)
	}
	return shard
}

// touch loads the first slot of each of hashes, in a loop whose branches
// do not depend on what it loads, so that the processor has many of these
// cache misses in flight at once; place's lookups then find them in cache.
// In place's loop each waits for the last, behind a branch on its data.
func (o *order) touch(hashes []uint64) {
	e, mask := o.last.entries, uint32(len(o.last.entries)-1)
	var sum uint32
	for _, h := range hashes {
		sum += e[key(h)&mask].key
	}
	o.touched = sum
}

// route returns the shard place would, without numbering anything: the
// memory queues' reservation, which numbers at commit (see queue).
func (o *order) route(hashes []uint64, active int, load func(shard int) int64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	var latest mark
	for _, h := range hashes {
		if m, ok := o.last.get(h); ok && m.seq > latest.seq && int(m.shard) < active && o.pending(m) {
			latest = m
		}
	}
	if latest.seq > 0 {
		return int(latest.shard)
	}
	return o.leastLoaded(active, load)
}

// leastLoaded returns the active shard holding the fewest points, the one
// after the last chosen on a tie. The caller holds o.mu.
func (o *order) leastLoaded(active int, load func(shard int) int64) int {
	best, least := 0, int64(-1)
	for i := range active {
		sh := (o.next + i) % active
		if l := load(sh); least < 0 || l < least {
			best, least = sh, l
		}
	}
	o.next = best + 1
	return best
}

// reserve makes room in o.last for n more series: when it is full, it is
// rebuilt without the series whose last item was sent. The caller holds
// o.mu.
func (o *order) reserve(n int) {
	t := &o.last
	if (t.n+n)*4 <= len(t.entries)*3 {
		return
	}
	kept := 0
	for _, e := range t.entries {
		if e.key != 0 && o.pending(e.mark()) {
			kept++
		}
	}
	// At least half the size it had: series that come back (most do)
	// would otherwise fill a table sized for the pending ones at once.
	size := max(minMarkTable, 1<<bits.Len(uint((kept+n)*2)), len(t.entries)/2)
	if kept == 0 && size == len(t.entries) {
		// Each item sent before the next (a low rate): emptied, not made
		// anew for every item.
		clear(t.entries)
		t.n = 0
		return
	}
	nt := newMarkTable(size)
	for _, e := range t.entries {
		if e.key != 0 && o.pending(e.mark()) {
			nt.entries[nt.slot(e.key)] = e
			nt.n++
		}
	}
	o.last = nt
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

// markTable maps series hashes to marks: open addressing with linear
// probing over pointer-free entries. Hand-written because each series is
// looked up once per item and its mark updated in place, where a Go map
// takes a second lookup to store; at millions of series a second this is a
// visible share of the CPU. Entries are only added; order.reserve rebuilds
// the table without the series whose last item was sent.
type markTable struct {
	entries []markEntry
	n       int
}

// markEntry is a slot: key 0 is empty (see key), so that a new table is
// all empty slots. It is 16 bytes, four to a cache line: at a million
// series the table outgrows the caches, and each lookup is a miss.
type markEntry struct {
	key   uint32
	shard int32
	seq   uint64
}

func (e *markEntry) mark() mark { return mark{seq: e.seq, shard: e.shard} }
func (e *markEntry) set(m mark) { e.seq, e.shard = m.seq, m.shard }

// minMarkTable is the least number of slots of a markTable.
const minMarkTable = 1 << 12

func newMarkTable(size int) markTable { return markTable{entries: make([]markEntry, size)} }

// key is the table's key for the series hash h: its two halves folded,
// never 0. Two series of the same key share one mark, which only makes an
// item wait for more than it must.
func key(h uint64) uint32 { return max(uint32(h>>32^h), 1) }

// slot returns the slot of the key k, or the empty slot where it goes.
func (t *markTable) slot(k uint32) int {
	mask := len(t.entries) - 1
	for i := int(k) & mask; ; i = (i + 1) & mask {
		if e := t.entries[i].key; e == k || e == 0 {
			return i
		}
	}
}

// index returns the slot of h, taking an empty one (of the zero mark) if
// h has none; the table must have room (see order.reserve).
func (t *markTable) index(h uint64) int {
	k := key(h)
	i := t.slot(k)
	if t.entries[i].key == 0 {
		t.entries[i].key = k
		t.n++
	}
	return i
}

// get returns h's mark, if it has one.
func (t *markTable) get(h uint64) (mark, bool) {
	k := key(h)
	e := &t.entries[t.slot(k)]
	return e.mark(), e.key == k
}
