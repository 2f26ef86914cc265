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

// logInterval is the least time between two warnings of one kind for one
// upstream.
const logInterval = 10 * time.Second

// forwarder sends to one upstream. It owns max_shards shards, each with a
// bounded queue and one sending goroutine, of which layout says how many
// are in use (see reshard.go), and one HTTP client.
//
// reserve, release and appendItems are safe for concurrent use; start and
// stop are called by the Manager only, once each.
type forwarder struct {
	name      string
	cfg       *config.UpstreamConfig
	logger    *slog.Logger
	client    *http.Client
	url       string
	userAgent string
	metrics   *registry.ForwardMetrics
	m         upstreamMetrics
	shards    []*shard
	layout    *layout
	mem       *budget
	rates     shardRates
	encoders  encoderPool

	// fellBack is when a 2.0 upstream last showed that it speaks 1.0 only
	// (Unix nanoseconds; 0: it speaks 2.0 as configured). It is sent 1.0
	// until probeInterval has passed, then 2.0 again.
	fellBack      atomic.Int64
	probeInterval time.Duration

	// pending is what the upstream was handed and is neither sent nor
	// dropped yet (see handed and settled). prev, when set, is the
	// forwarder of the previous configuration whose disk queue this one
	// took over: what it left pending is this one's once it stopped.
	pending atomic.Int64
	prev    *forwarder
	// handedBy holds the handed counters of each tenant seen: tenant id
	// -> *handedCounters.
	handedBy sync.Map

	// refusedLarge is set once the upstream refused a batch as too large
	// (413); learnedN and learnedB are then the largest batch it accepted
	// since, in points and bytes, and batches are cut to them.
	refusedLarge       atomic.Bool
	learnedN, learnedB atomic.Int64
	// backoffHint is the last retry delay, in nanoseconds, 0 after a success:
	// what a client refused for a full queue is told to wait.
	backoffHint atomic.Int64
	// lastSend is when the upstream last took a batch, backlogAt when the
	// shards last fell behind (Unix nanoseconds); refused is set when a
	// request was refused for a full queue (see checkBacklog).
	lastSend, backlogAt atomic.Int64
	refused             atomic.Bool
	// reshardAt is when the shards last changed (Unix nanoseconds),
	// pendingAt what was pending at the last backlog check (reshardLoop's).
	reshardAt atomic.Int64
	pendingAt int64

	warnLog, oldReceiverLog, retryLog logLimiter

	// dq is the upstream's disk queue, nil in memory mode. The Manager
	// opens and closes it; a reload may hand it to the forwarder of the new
	// configuration. acker, readCtx and the lag gauge exist in disk mode
	// only.
	dq          diskQueue
	acker       *acker
	handoff     *handoff
	readCtx     context.Context
	readCancel  context.CancelFunc
	readWG      sync.WaitGroup
	lag         prometheus.Gauge
	undecodable prometheus.Counter

	// ready, when not nil, is closed when the forwarder this one replaces
	// has stopped: shards send nothing before, and the reader of a disk
	// queue reads nothing before, so per-series order holds across a
	// reload.
	ready    <-chan struct{}
	quit     chan struct{}
	done     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// upstreamMetrics are the upstream's children of the shared vectors, looked
// up once.
type upstreamMetrics struct {
	sentSamples, sentHistograms, sentExemplars, sentMetadata prometheus.Counter
	sentBatches, sentBytes, failed, retried, queueFull       prometheus.Counter
	queueLength, lastSuccess, learnedN, learnedB, pendingG   prometheus.Gauge
	shards, desiredShards, queueCapacity                     prometheus.Gauge
	sendDuration                                             prometheus.Observer
	dropped                                                  map[string]prometheus.Counter
}

// newForwarder builds the forwarder of u. With dq set it runs in disk mode:
// Enqueue appends records to dq, and a reader feeds the shards from it.
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
	metrics.InitUpstream(u.Name)
	n := u.Name
	f.m = upstreamMetrics{
		sentSamples:    metrics.SentSamples.WithLabelValues(n),
		sentHistograms: metrics.SentHistograms.WithLabelValues(n),
		sentExemplars:  metrics.SentExemplars.WithLabelValues(n),
		sentMetadata:   metrics.SentMetadata.WithLabelValues(n),
		sentBatches:    metrics.SentBatches.WithLabelValues(n),
		sentBytes:      metrics.SentBytes.WithLabelValues(n),
		failed:         metrics.FailedSamples.WithLabelValues(n),
		retried:        metrics.RetriedSamples.WithLabelValues(n),
		queueFull:      metrics.QueueFull.WithLabelValues(n),
		queueLength:    metrics.QueueLength.WithLabelValues(n),
		learnedN:       metrics.LearnedMaxSamples.WithLabelValues(n),
		pendingG:       metrics.PendingSamples.WithLabelValues(n),
		learnedB:       metrics.LearnedMaxBytes.WithLabelValues(n),
		lastSuccess:    metrics.LastSendSuccess.WithLabelValues(n),
		sendDuration:   metrics.SendDuration.WithLabelValues(n),
		shards:         metrics.Shards.WithLabelValues(n),
		desiredShards:  metrics.ShardsDesired.WithLabelValues(n),
		queueCapacity:  metrics.QueueCapacity.WithLabelValues(n),
		dropped:        map[string]prometheus.Counter{},
	}
	for _, r := range registry.DropReasons {
		f.m.dropped[r] = metrics.DroppedSamples.WithLabelValues(n, r)
	}
	active := min(max(q.MinShards, 1), q.MaxShards)
	f.layout = newLayout(active)
	f.mem = newBudget(q.MaxMemoryBytes, metrics.QueueMemory.WithLabelValues(n))
	f.m.shards.Set(float64(active))
	f.m.desiredShards.Set(float64(active))
	f.m.queueCapacity.Set(float64(active * q.Capacity))
	f.shards = make([]*shard, q.MaxShards)
	for i := range f.shards {
		f.shards[i] = &shard{f: f, points: newBudget(int64(q.Capacity), nil), notify: make(chan struct{}, 1)}
	}
	if dq != nil {
		f.dq = dq
		f.acker = &acker{f: f}
		f.handoff = &handoff{}
		f.readCtx, f.readCancel = context.WithCancel(context.Background())
		f.lag = metrics.QueueLag.WithLabelValues(n)
		f.undecodable = qm.CorruptBytes.WithLabelValues(n, corruptUndecodable)
	}
	return f, nil
}

// start spawns the shards' goroutines, and the disk queue's reader.
func (f *forwarder) start() {
	for _, s := range f.shards {
		f.wg.Go(s.run)
	}
	f.wg.Go(f.reshardLoop)
	if f.dq != nil {
		f.readWG.Go(f.readLoop)
		f.wg.Go(f.lagLoop)
	}
}

// stop flushes the shards until ctx is done, then cancels in-flight sends.
// In memory mode what is left is counted dropped; in disk mode it stays
// unacknowledged in the disk queue, which the Manager closes. Safe to call
// more than once; later calls wait for the first.
func (f *forwarder) stop(ctx context.Context) {
	f.stopOnce.Do(func() {
		if f.dq != nil {
			// The reader stops first, so that nothing is added to the
			// shards once they flush.
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

// proto is the protocol batches are encoded in now: the configured one,
// but 1.0 for probeInterval after a 2.0 upstream answered as a 1.0 one.
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

// batchLimits are the points and bytes a batch holds at most: the
// configured max_samples_per_send and max_bytes_per_send, or what the
// upstream was seen to accept after refusing a batch as too large.
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
	f.m.learnedN.Set(float64(f.learnedN.Load()))
	f.m.learnedB.Set(float64(f.learnedB.Load()))
	if first {
		f.logger.Warn("upstream refused a batch as too large: cutting batches to the largest it accepted", "max_samples", n, "max_bytes", b)
	}
}

// acceptedV2 records that the upstream took a 2.0 batch.
func (f *forwarder) acceptedV2() {
	if f.fellBack.Swap(0) != 0 {
		f.logger.Info("upstream accepts remote write 2.0 again: sending 2.0")
	}
}

func (f *forwarder) drop(reason string, n int) {
	if n > 0 {
		f.m.dropped[reason].Add(float64(n))
		f.settled(n)
	}
}

// handed counts what the upstream was handed: a request's data after
// routing and before relabeling, or a record of a backlog read from disk.
// Everything handed is, in the end, sent (settled), dropped (drop) or
// still pending.
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
	f.m.pendingG.Set(float64(f.pending.Add(int64(samples + histograms + exemplars))))
	f.rates.in.add(int64(samples + histograms + exemplars))
}

// handedCounters are the handed counters of one upstream and tenant.
type handedCounters struct{ samples, histograms, exemplars prometheus.Counter }

// settled takes n points that were sent or dropped off what is pending.
func (f *forwarder) settled(n int) {
	f.m.pendingG.Set(float64(f.pending.Add(-int64(n))))
	f.rates.out.add(int64(n))
}

// abandon gives up on n points because the forwarder is stopping: dropped
// (and counted) in memory mode, left in the disk queue in disk mode.
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
