package forward

import (
	"context"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// budget bounds what is reserved of a limit (a shard's points, or the bytes
// an upstream's shards hold, max_memory_bytes) from placement in the shards
// until sent or dropped. Safe for concurrent use; one goroutine at a time
// may wait (the disk queue's reader).
type budget struct {
	limit int64
	used  atomic.Int64
	room  chan struct{}
	gauge prometheus.Gauge // what is used, if not nil
}

func newBudget(limit int64, gauge prometheus.Gauge) *budget {
	return &budget{limit: limit, room: make(chan struct{}, 1), gauge: gauge}
}

// take takes room for n. With nothing held it admits any n, so that a
// request over the limit is not refused forever.
func (b *budget) take(n int) bool {
	for {
		cur := b.used.Load()
		if cur > 0 && cur+int64(n) > b.limit {
			return false
		}
		if b.used.CompareAndSwap(cur, cur+int64(n)) {
			if b.gauge != nil {
				b.gauge.Add(float64(n))
			}
			return true
		}
	}
}

// wait takes room for n when there is; it reports false if ctx ended first.
func (b *budget) wait(ctx context.Context, n int) bool {
	for !b.take(n) {
		select {
		case <-b.room:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// give gives back n.
func (b *budget) give(n int) {
	if n == 0 {
		return
	}
	b.used.Add(-int64(n))
	if b.gauge != nil {
		b.gauge.Sub(float64(n))
	}
	select {
	case b.room <- struct{}{}:
	default:
	}
}
