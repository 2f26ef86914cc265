package forward

import (
	"context"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// memBudget bounds the bytes of queued data an upstream holds in memory
// (queue_config.max_memory_bytes), whatever the number of shards: room is
// taken when items are placed in the shards and given back when their
// batch is sent or dropped. Its methods are safe for concurrent use; one
// goroutine at a time may wait (the disk queue's reader).
type memBudget struct {
	limit int64
	used  atomic.Int64
	room  chan struct{}
	gauge prometheus.Gauge
}

func newMemBudget(limit int64, gauge prometheus.Gauge) *memBudget {
	return &memBudget{limit: limit, room: make(chan struct{}, 1), gauge: gauge}
}

// take takes room for n bytes. With nothing held it admits any n, so that
// a request larger than the budget is not refused forever.
func (b *memBudget) take(n int) bool {
	for {
		cur := b.used.Load()
		if cur > 0 && cur+int64(n) > b.limit {
			return false
		}
		if b.used.CompareAndSwap(cur, cur+int64(n)) {
			b.gauge.Add(float64(n))
			return true
		}
	}
}

// wait takes room for n bytes, waiting for it; it reports false if ctx
// ended first.
func (b *memBudget) wait(ctx context.Context, n int) bool {
	for !b.take(n) {
		select {
		case <-b.room:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// give gives back n bytes.
func (b *memBudget) give(n int) {
	if n == 0 {
		return
	}
	b.used.Add(-int64(n))
	b.gauge.Sub(float64(n))
	select {
	case b.room <- struct{}{}:
	default:
	}
}
