package forward

import (
	"slices"
	"sync"
	"time"

	"github.com/rwgateway/gateway/pkg/queue"
)

// pendingRecord is a record read from the disk queue whose points are in
// the shards: acknowledged once every point of it and of every earlier
// record is sent or dropped.
type pendingRecord struct {
	pos      queue.Position
	appended time.Time
	left     int // points not yet done; guarded by acker.mu
}

// acker acknowledges the longest fully delivered prefix of the records a
// forwarder read: the contiguous watermark. The reader adds records and
// shards complete points, concurrently.
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

// complete marks n points of r done and acknowledges what became contiguous.
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
	if a.head == len(a.pending) || (a.head > 1024 && a.head > len(a.pending)/2) {
		a.pending, a.head = slices.Delete(a.pending, 0, a.head), 0
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

// completeItems marks the points of a finished batch done, record by record.
func (f *forwarder) completeItems(items []item) {
	if f.acker == nil {
		return
	}
	for i := 0; i < len(items); {
		r, n := items[i].rec, 0
		for ; i < len(items) && items[i].rec == r; i++ {
			n += items[i].count()
		}
		if r != nil {
			f.acker.complete(r, n)
		}
	}
}
