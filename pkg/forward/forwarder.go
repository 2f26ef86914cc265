package forward

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/registry"
)

// logInterval is the least time between two warnings of one kind.
const logInterval = 10 * time.Second

// forwarder sends to one upstream with one HTTP client and max_shards
// shards (a bounded queue, safe for concurrent use, and a sending goroutine
// each), active saying how many are in use (see reshard.go). The Manager
// calls start and stop, once each.
type forwarder struct {
	name      string
	cfg       *config.UpstreamConfig
	logger    *slog.Logger
	client    *http.Client
	url       string
	userAgent string
	metrics   *registry.ForwardMetrics
	m         registry.UpstreamMetrics
	shards    []*shard
	active    atomic.Int32 // the shards in use (see reshard.go)
	order     *order
	mem       *budget
	rates     shardRates
	encoders  encoderPool
	relabel   *writeRelabel // nil without write_relabel_configs

	// fellBack is when a 2.0 upstream last answered as a 1.0 one (Unix ns;
	// 0: never since it took 2.0): it is sent 1.0 for probeInterval.
	fellBack      atomic.Int64
	probeInterval time.Duration

	// pending is what was handed and is neither sent nor dropped yet. prev
	// is the forwarder whose disk queue this one took over: what it left
	// pending is this one's once it stopped.
	pending  atomic.Int64
	prev     *forwarder
	handedBy sync.Map // tenant id -> *handedCounters

	// After a 413 (refusedLarge), batches are cut to learnedN points and
	// learnedB bytes, the largest batch the upstream took since.
	refusedLarge       atomic.Bool
	learnedN, learnedB atomic.Int64
	// backoffHint is the last retry delay (ns; 0 after a success), which a
	// client refused for a full queue is told to wait.
	backoffHint atomic.Int64
	// For resharding (Unix ns): when the upstream last took a batch, the
	// shards last fell behind, and they last changed; refused is set by a
	// request refused for a full queue, pendingAt is reshardLoop's.
	lastSend, backlogAt, reshardAt atomic.Int64
	refused                        atomic.Bool
	pendingAt                      int64

	warnLog, oldReceiverLog, retryLog logLimiter

	// dq is the disk queue, nil in memory mode; the fields after it serve
	// disk mode only. The Manager opens and closes it; a reload may hand it
	// over.
	dq          diskQueue
	acker       *acker
	handoff     *handoff
	readCtx     context.Context
	readCancel  context.CancelFunc
	readWG      sync.WaitGroup
	lag         prometheus.Gauge
	undecodable prometheus.Counter

	// ready, if not nil, is closed when the forwarder this one replaces has
	// stopped: shards send and the reader reads nothing before, so
	// per-series order holds across a reload.
	ready    <-chan struct{}
	quit     chan struct{}
	done     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// newForwarder builds the forwarder of u, in disk mode with dq set: Enqueue
// appends records to dq, and a reader feeds the shards from it.
func newForwarder(logger *slog.Logger, metrics *registry.ForwardMetrics, u *config.UpstreamConfig, userAgent string, probeInterval time.Duration, ready <-chan struct{}, dq diskQueue, qm *queue.Metrics) (*forwarder, error) {
	q := u.QueueConfig
	client, err := newClient(u, q.MaxShards+connSlack)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &forwarder{
		name:      u.Name,
		cfg:       u,
		logger:    logger.With("upstream", u.Name),
		client:    client,
		url:       u.URL.String(),
		userAgent: userAgent,
		metrics:   metrics,

		probeInterval: probeInterval,
		ready:         ready,
		quit:          make(chan struct{}),
		done:          make(chan struct{}),
		ctx:           ctx,
		cancel:        cancel,
	}
	f.m = metrics.Upstream(u.Name)
	if len(u.WriteRelabelConfigs) > 0 {
		f.relabel = newWriteRelabel(u.WriteRelabelConfigs)
	}
	active := min(max(q.MinShards, 1), q.MaxShards)
	f.active.Store(int32(active))
	f.order = newOrder(q.MaxShards)
	f.mem = newBudget(q.MaxMemoryBytes, f.m.QueueMemory)
	f.shards = make([]*shard, q.MaxShards)
	for i := range f.shards {
		f.shards[i] = &shard{f: f, idx: i, points: newBudget(int64(q.Capacity), nil), notify: make(chan struct{}, 1)}
	}
	if dq != nil {
		f.dq = dq
		f.acker = &acker{f: f}
		f.handoff = &handoff{}
		f.readCtx, f.readCancel = context.WithCancel(context.Background())
		f.lag = metrics.QueueLag.WithLabelValues(u.Name)
		f.undecodable = qm.CorruptBytes.WithLabelValues(u.Name, corruptUndecodable)
	}
	return f, nil
}

// start spawns the shards' goroutines, and the disk queue's reader. The
// upstream's gauges show its configuration from here: a reload that fails
// after building f leaves them as they were.
func (f *forwarder) start() {
	active := int(f.active.Load())
	f.m.Shards.Set(float64(active))
	f.m.DesiredShards.Set(float64(active))
	f.m.QueueCapacity.Set(float64(active * f.cfg.QueueConfig.Capacity))
	for _, s := range f.shards {
		f.wg.Go(s.run)
	}
	f.wg.Go(f.reshardLoop)
	if f.dq != nil {
		f.readWG.Go(f.readLoop)
		f.wg.Go(f.lagLoop)
	}
}

// stop flushes the shards until ctx is done, then cancels in-flight sends:
// what is left is counted dropped in memory mode, left unacknowledged in
// disk mode. Later calls wait for the first.
func (f *forwarder) stop(ctx context.Context) {
	f.stopOnce.Do(func() {
		if f.dq != nil {
			// The reader stops first: nothing is added once shards flush.
			f.readCancel()
			f.readWG.Wait()
		}
		close(f.quit)
		unregister := context.AfterFunc(ctx, f.cancel)
		f.wg.Wait()
		unregister()
		f.cancel()
		f.client.CloseIdleConnections()
		close(f.done)
	})
}

// proto is the protocol batches are encoded in now (see fellBack).
func (f *forwarder) proto() prw.Protocol {
	if !f.cfg.SendsV2() {
		return prw.ProtoV1
	}
	if t := f.fellBack.Load(); t != 0 && time.Since(time.Unix(0, t)) < f.probeInterval {
		return prw.ProtoV1
	}
	return prw.ProtoV2
}

// fallBack records that the upstream answered 2.0 as a 1.0 receiver does.
func (f *forwarder) fallBack(err error) {
	if f.fellBack.Swap(time.Now().UnixNano()) == 0 {
		f.logger.Warn("upstream speaks remote write 1.0 only: sending 1.0, and 2.0 again after the probe interval", "err", err, "probe_interval", f.probeInterval)
	} else if f.oldReceiverLog.allow() {
		f.logger.Warn("upstream still speaks remote write 1.0 only, resending as 1.0", "err", err)
	}
}

// batchLimits are the points and bytes a batch holds at most:
// max_samples_per_send and max_bytes_per_send, or the learned limits.
func (f *forwarder) batchLimits() (maxN, maxB int) {
	q := &f.cfg.QueueConfig
	maxN, maxB = q.MaxSamplesPerSend, q.MaxBytesPerSend
	if n := int(f.learnedN.Load()); n > 0 {
		maxN = min(maxN, n)
	}
	if b := int(f.learnedB.Load()); b > 0 {
		maxB = min(maxB, b)
	}
	return maxN, maxB
}

// accepted records that the upstream took the batch items: after a 413,
// the largest batch it took, in points (see item.count) and bytes, is its
// learned limit.
func (f *forwarder) accepted(items []item) {
	if !f.refusedLarge.Load() {
		return
	}
	n, b := 0, itemsSize(items)
	for i := range items {
		n += items[i].count()
	}
	first := f.learnedN.Load() == 0
	for cur := f.learnedN.Load(); int64(n) > cur && !f.learnedN.CompareAndSwap(cur, int64(n)); cur = f.learnedN.Load() {
	}
	for cur := f.learnedB.Load(); int64(b) > cur && !f.learnedB.CompareAndSwap(cur, int64(b)); cur = f.learnedB.Load() {
	}
	f.m.LearnedN.Set(float64(f.learnedN.Load()))
	f.m.LearnedB.Set(float64(f.learnedB.Load()))
	if first {
		f.logger.Warn("upstream refused a batch as too large: cutting batches to the largest it accepted", "max_samples", n, "max_bytes", b)
	}
}

func (f *forwarder) drop(reason string, n int) {
	if n > 0 {
		f.m.Dropped[reason].Add(float64(n))
		f.settled(n)
	}
}

// handed counts what the upstream was handed: a request's data after
// routing and before relabeling, or a backlog record read from disk. All
// of it ends up sent (settled) or dropped (drop), or is still pending.
func (f *forwarder) handed(tenant string, samples, histograms, exemplars int) {
	c, ok := f.handedBy.Load(tenant)
	if !ok {
		c, _ = f.handedBy.LoadOrStore(tenant, &handedCounters{
			samples:    f.metrics.HandedSamples.WithLabelValues(f.name, tenant),
			histograms: f.metrics.HandedHistograms.WithLabelValues(f.name, tenant),
			exemplars:  f.metrics.HandedExemplars.WithLabelValues(f.name, tenant),
		})
	}
	hc := c.(*handedCounters)
	hc.samples.Add(float64(samples))
	hc.histograms.Add(float64(histograms))
	hc.exemplars.Add(float64(exemplars))
	f.m.Pending.Set(float64(f.pending.Add(int64(samples + histograms + exemplars))))
	f.rates.in.add(int64(samples + histograms + exemplars))
}

// handedCounters are the handed counters of one upstream and tenant.
type handedCounters struct{ samples, histograms, exemplars prometheus.Counter }

// settled takes n points that were sent or dropped off what is pending.
func (f *forwarder) settled(n int) {
	f.m.Pending.Set(float64(f.pending.Add(-int64(n))))
	f.rates.out.add(int64(n))
}

// abandon gives up on n points as the forwarder stops: dropped in memory
// mode, left in the disk queue in disk mode.
func (f *forwarder) abandon(n int) {
	if f.dq == nil {
		f.drop(registry.DropShutdown, n)
	}
}

// logLimiter lets one message through per logInterval.
type logLimiter struct{ last atomic.Int64 }

func (l *logLimiter) allow() bool {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if last != 0 && now-last < int64(logInterval) {
		return false
	}
	return l.last.CompareAndSwap(last, now)
}
