package forward

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/registry"
)

// logInterval is the least time between two warnings of one kind for one
// upstream.
const logInterval = 10 * time.Second

// forwarder sends to one upstream. It owns a fixed set of shards, each with a
// bounded queue and one sending goroutine, and one HTTP client.
//
// The number of shards is queue_config.max_shards.
// TODO(gateway): dynamic resharding between min_shards and max_shards is not
// implemented; min_shards is accepted and ignored.
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
	timeout   time.Duration
	metrics   *registry.ForwardMetrics
	m         upstreamMetrics
	shards    []*shard
	capacity  int // per shard

	// v1Only is set once a 2.0 upstream has shown it only speaks 1.0.
	v1Only atomic.Bool
	// backoffHint is the last retry delay, in nanoseconds, 0 after a success:
	// what a client refused for a full queue is told to wait.
	backoffHint atomic.Int64

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
	queueLength, lastSuccess                                 prometheus.Gauge
	sendDuration                                             prometheus.Observer
	dropped                                                  map[string]prometheus.Counter
}

// newForwarder builds the forwarder of u. With dq set it runs in disk mode:
// Enqueue appends records to dq, and a reader feeds the shards from it.
func newForwarder(logger *slog.Logger, metrics *registry.ForwardMetrics, u *config.UpstreamConfig, userAgent string, ready <-chan struct{}, dq diskQueue, qm *queue.Metrics) (*forwarder, error) {
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
		timeout:   time.Duration(u.RemoteTimeout),
		metrics:   metrics,
		capacity:  q.Capacity,
		ready:     ready,
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		ctx:       ctx,
		cancel:    cancel,
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
		lastSuccess:    metrics.LastSendSuccess.WithLabelValues(n),
		sendDuration:   metrics.SendDuration.WithLabelValues(n),
		dropped:        map[string]prometheus.Counter{},
	}
	for _, r := range registry.DropReasons {
		f.m.dropped[r] = metrics.DroppedSamples.WithLabelValues(n, r)
	}
	metrics.Shards.WithLabelValues(n).Set(float64(q.MaxShards))
	metrics.QueueCapacity.WithLabelValues(n).Set(float64(q.MaxShards * q.Capacity))
	f.shards = make([]*shard, q.MaxShards)
	for i := range f.shards {
		f.shards[i] = newShard(f)
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

// proto is the protocol batches are encoded in now.
func (f *forwarder) proto() prw.Protocol {
	if f.cfg.SendsV2() && !f.v1Only.Load() {
		return prw.ProtoV2
	}
	return prw.ProtoV1
}

func (f *forwarder) requests(code string) prometheus.Counter {
	return f.metrics.Requests.WithLabelValues(f.name, code)
}

func (f *forwarder) drop(reason string, n int) {
	if n > 0 {
		f.m.dropped[reason].Add(float64(n))
	}
}

// abandon gives up on n points because the forwarder is stopping: dropped
// (and counted) in memory mode, left in the disk queue in disk mode.
func (f *forwarder) abandon(n int) {
	if f.dq == nil {
		f.drop(registry.DropShutdown, n)
	}
}

// retryAfter is the delay suggested to a client whose request did not fit
// in this upstream's queue: the current retry backoff, at least a second.
func (f *forwarder) retryAfter() time.Duration {
	return min(max(time.Duration(f.backoffHint.Load()), time.Second), time.Minute)
}

// prepared is one request made ready for one upstream: its items grouped by
// shard, in request order within each shard.
type prepared struct {
	f      *forwarder
	items  []item
	ranges []shardRange
	// Disk mode: the records items were encoded into, their size, and the
	// encoder that holds them.
	recs     [][]byte
	recBytes int64
	enc      *recordEncoder
	// Disk mode, fast path: the request to write as it came, with its
	// metadata if rawMeta.
	raw     *prw.RawV1
	rawMeta bool
	// handoff are the items of raw for the reader (see handoff), if the
	// request is written as one record.
	handoff []item
	// Points dropped by relabeling or because the upstream does not take
	// them; counted once the request is accepted.
	dropRelabel, dropUnsupported int
	total                        int
}

type shardRange struct {
	shard, lo, hi, count int
}

// prepareInput is one request, copied, shared by every upstream's prepare.
type prepareInput struct {
	series   []ownedSeries
	families []*prw.FamilyMetadata
	// familyIndex maps family names to metadata, for 2.0 upstreams; built
	// on first use.
	familyIndex map[string]*prw.Metadata
	external    labels.Labels
	lb          *labels.Builder
	shardOf     []int
	hashBuf     []byte
}

func (in *prepareInput) lookupFamily(name string) *prw.Metadata {
	if in.familyIndex == nil {
		in.familyIndex = make(map[string]*prw.Metadata, len(in.families))
		for _, fm := range in.families {
			if _, ok := in.familyIndex[fm.MetricFamilyName]; !ok {
				in.familyIndex[fm.MetricFamilyName] = &fm.Metadata
			}
		}
	}
	a, b := familyCandidates(name)
	if md, ok := in.familyIndex[a]; ok {
		return md
	}
	if b != "" {
		return in.familyIndex[b]
	}
	return nil
}

// prepare applies external labels, write relabeling and the upstream's
// send_* settings to in, and assigns every item its shard.
func (f *forwarder) prepare(in *prepareInput, p *prepared) {
	*p = prepared{f: f}
	cfg := f.cfg
	v2 := f.proto() == prw.ProtoV2
	sendMeta := cfg.MetadataConfig.Send
	items := make([]item, 0, len(in.series)+1)
	shardOf := in.shardOf[:0]
	nShards := uint64(len(f.shards))
	lb := in.lb
	for i := range in.series {
		s := &in.series[i]
		lb.Reset(s.labels)
		// External labels first, then write relabeling, as Prometheus does.
		in.external.Range(func(l labels.Label) {
			if lb.Get(l.Name) == "" {
				lb.Set(l.Name, l.Value)
			}
		})
		if len(cfg.WriteRelabelConfigs) > 0 && !relabel.ProcessBuilder(lb, cfg.WriteRelabelConfigs...) {
			p.dropRelabel += len(s.samples) + len(s.histograms) + len(s.exemplars)
			continue
		}
		ls := lb.Labels()
		if ls.IsEmpty() {
			p.dropRelabel += len(s.samples) + len(s.histograms) + len(s.exemplars)
			continue
		}
		it := item{labels: ls, samples: s.samples}
		if cfg.SendNativeHistograms {
			it.histograms = s.histograms
		} else {
			p.dropUnsupported += len(s.histograms)
		}
		if cfg.SendExemplars {
			it.exemplars = s.exemplars
		} else {
			p.dropUnsupported += len(s.exemplars)
		}
		if it.count() == 0 {
			continue
		}
		if sendMeta {
			it.metadata = s.metadata
			if v2 && it.metadata.Empty() && len(in.families) > 0 {
				if md := in.lookupFamily(s.name); md != nil {
					it.metadata = *md
				}
			}
		}
		it.size = estimateSize(&it)
		items = append(items, it)
		var h uint64
		h, in.hashBuf = prw.HashLabels(ls, in.hashBuf)
		shardOf = append(shardOf, int(h%nShards))
	}
	if sendMeta && !v2 {
		for _, fm := range in.families {
			it := item{family: fm}
			it.size = estimateSize(&it)
			items = append(items, it)
			shardOf = append(shardOf, 0)
		}
	}
	in.shardOf = shardOf
	if len(items) == 0 {
		return
	}
	if f.dq != nil {
		// The reader groups by shard when it takes the record back.
		p.items = items
		for i := range items {
			p.total += items[i].count()
		}
		return
	}
	p.items, p.ranges, p.total = groupByShard(items, shardOf, len(f.shards))
}

// takesRaw reports whether the upstream sends raw exactly as it came: it
// speaks 1.0 and changes nothing (no write relabeling, no age limit, and
// it sends every kind of point raw holds). External labels are checked by
// the caller, for all upstreams at once.
func (f *forwarder) takesRaw(raw *prw.RawV1) bool {
	c := f.cfg
	return f.mayTakeRaw() && (raw.Histograms == 0 || c.SendNativeHistograms) && (raw.Exemplars == 0 || c.SendExemplars)
}

// prepareRaw is prepare for an upstream that takes raw as it came (see
// takesRaw): its series are copied into chunks (see chunkRaw), shared with
// the other upstreams of the same chunk layout. In memory mode the chunks
// go to the shards. In disk mode the request is written as it is, and its
// chunks, if handoff is set, are offered to the reader (see handoff).
func (f *forwarder) prepareRaw(raw *prw.RawV1, chunks *sharedChunks, handoff bool, p *prepared) {
	*p = prepared{f: f}
	sendMeta := f.cfg.MetadataConfig.Send
	if len(raw.Series) == 0 && (!sendMeta || len(raw.Metadata) == 0) {
		return
	}
	if f.dq != nil {
		p.raw, p.rawMeta = raw, sendMeta
		if handoff {
			items, _ := chunks.get(f)
			// The reader sets each item's record: a copy of its own.
			p.handoff = slices.Clone(items)
		}
		return
	}
	items, shardOf := chunks.get(f)
	p.items, p.ranges, p.total = groupByShard(items, shardOf, len(f.shards))
}

// sharedChunks are the chunks of one request, built on first use for each
// chunk layout (shards, batch limits, metadata or not) and shared
// read-only by the upstreams of that layout: fanning out to several
// upstreams copies the request once, not once per upstream.
type sharedChunks struct {
	raw    *prw.RawV1
	layout []chunkLayout
}

type chunkLayout struct {
	shards, maxN, maxB int
	meta               bool
	items              []item
	shardOf            []int
}

// get returns the chunks of the request for f, and each one's shard. The
// caller must not modify them.
func (c *sharedChunks) get(f *forwarder) ([]item, []int) {
	q := &f.cfg.QueueConfig
	key := chunkLayout{shards: len(f.shards), maxN: q.MaxSamplesPerSend, maxB: q.MaxBytesPerSend, meta: f.cfg.MetadataConfig.Send}
	for i := range c.layout {
		l := &c.layout[i]
		if l.shards == key.shards && l.maxN == key.maxN && l.maxB == key.maxB && l.meta == key.meta {
			return l.items, l.shardOf
		}
	}
	key.items, key.shardOf = rawItems(c.raw, key.shards, key.maxN, key.maxB, key.meta)
	c.layout = append(c.layout, key)
	return key.items, key.shardOf
}

// rawItems returns the chunks of raw's series and, if withMeta, the items
// of its metadata (in shard 0), all owning their memory, and each one's
// shard.
func rawItems(raw *prw.RawV1, shards, maxN, maxB int, withMeta bool) ([]item, []int) {
	items, shardOf := chunkRaw(raw.Msg, raw.Series, shards, maxN, maxB)
	if withMeta {
		for _, sp := range raw.Metadata {
			var md prompb.MetricMetadata
			if err := md.Unmarshal(sp.Bytes(raw.Msg)); err != nil {
				continue // the receiver checked it
			}
			it := item{family: familyFromV1(&md)}
			it.size = estimateSize(&it)
			items = append(items, it)
			shardOf = append(shardOf, 0)
		}
	}
	return items, shardOf
}

// hasLabels reports whether every series of raw has every label of ext
// with a non-empty value, so that adding ext as external labels changes
// nothing.
func hasLabels(raw *prw.RawV1, ext labels.Labels) bool {
	if ext.IsEmpty() {
		return true
	}
	want := ext.Len()
	for _, rs := range raw.Series {
		found := 0
		err := prw.RangeRawLabels(rs.Bytes(raw.Msg), func(name, value []byte) {
			if len(value) > 0 && ext.Has(string(name)) {
				found++
			}
		})
		if err != nil || found < want {
			return false
		}
	}
	return true
}

// groupByShard orders items by shard, stably, so that per-series order
// holds, and returns each shard's range of them.
func groupByShard(items []item, shardOf []int, nShards int) (sorted []item, ranges []shardRange, total int) {
	counts := make([]int, nShards+1)
	for _, sh := range shardOf {
		counts[sh+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	sorted = make([]item, len(items))
	pos := counts[:nShards]
	starts := make([]int, len(pos))
	copy(starts, pos)
	for i := range items {
		sh := shardOf[i]
		sorted[pos[sh]] = items[i]
		pos[sh]++
	}
	for sh := range starts {
		lo, hi := starts[sh], pos[sh]
		if lo == hi {
			continue
		}
		c := 0
		for j := lo; j < hi; j++ {
			c += sorted[j].count()
		}
		ranges = append(ranges, shardRange{shard: sh, lo: lo, hi: hi, count: c})
		total += c
	}
	return sorted, ranges, total
}

// reserve takes room for p in every shard it touches, all or nothing.
func (p *prepared) reserve() bool {
	for i, r := range p.ranges {
		if !p.f.shards[r.shard].reserve(r.count) {
			p.releaseFirst(i)
			return false
		}
	}
	return true
}

// releaseFirst gives back the reservations of p's first n ranges.
func (p *prepared) releaseFirst(n int) {
	for _, r := range p.ranges[:n] {
		p.f.shards[r.shard].unreserve(r.count)
	}
}

// commit appends p's items to the shards it reserved room in (in disk mode
// its records were appended to the disk queue already) and counts what was
// dropped.
func (p *prepared) commit() {
	f := p.f
	f.drop(registry.DropRelabel, p.dropRelabel)
	f.drop(registry.DropUnsupported, p.dropUnsupported)
	if f.dq != nil {
		return
	}
	if p.total > 0 {
		f.m.queueLength.Add(float64(p.total))
	}
	for _, r := range p.ranges {
		f.shards[r.shard].appendItems(p.items[r.lo:r.hi], r.count)
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

// familyFromV1 converts 1.0 metadata to the model's form.
func familyFromV1(md *prompb.MetricMetadata) *prw.FamilyMetadata {
	return &prw.FamilyMetadata{
		MetricFamilyName: md.MetricFamilyName,
		Metadata:         prw.Metadata{Type: prw.MetricTypeFromV1(md.Type), Help: md.Help, Unit: md.Unit},
	}
}
