// Package forward sends what the receiver accepted to every configured
// upstream.
//
// The Manager (manager.go) owns one forwarder (forwarder.go) per upstream.
// Enqueue takes a request in the form every series keeps up to the wire
// (prw.AppendSeries; request.go), prepares it for each upstream
// it is routed to (prepare.go: external labels, write relabeling, send_*
// settings) as chunks of series (chunk.go, item.go), and appends it to
// every upstream's queue, all or nothing.
//
// A disk queue (storage.go; Options.StoragePath and queue_config.storage
// "disk") is appended one record per request (record.go) before Enqueue
// returns; a reader (reader.go) feeds the records in order to the shards
// (handoff.go spares it decoding what Enqueue just wrote), and a record is
// acknowledged (acker.go) once its points and all earlier ones were sent or
// dropped.
//
// Each item goes to a shard (shard.go; their number follows the load,
// reshard.go) whose goroutine cuts, encodes (encode.go) and sends
// (client.go) batches one after the other; an item waits for the earlier
// items of its series in other shards (order.go), so each series arrives
// in order. Batches are retried with backoff on network errors, 5xx and
// 429, split on 413, and dropped (and counted) on other 4xx.
package forward

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/registry"
)

// DefaultFlushDeadline bounds a reload's wait for an old queue to drain.
const DefaultFlushDeadline = time.Minute

// DefaultProbeInterval is how long a 2.0 upstream that answered as a 1.0
// one (415, or 2xx without Written headers) is sent 1.0.
const DefaultProbeInterval = 10 * time.Minute

// Options configure a Manager. Zero fields mean the documented defaults.
type Options struct {
	// UserAgent is sent to upstreams; default "rw-gateway/<version>".
	UserAgent string
	// See DefaultFlushDeadline and DefaultProbeInterval, their defaults.
	FlushDeadline, ProbeInterval time.Duration
	// StoragePath is --storage.path, locked at the first ApplyConfig: disk
	// queues live in StoragePath/queues/<upstream>. Empty: all in memory.
	StoragePath string
	// Fsync and SyncInterval are the disk queues' fsync policy; default
	// queue.FsyncInterval every queue.DefaultSyncInterval.
	Fsync        queue.FsyncPolicy
	SyncInterval time.Duration
	// QueueMetrics are the disk queues' collectors; default unregistered.
	QueueMetrics *queue.Metrics

	wrapQueue func(diskQueue) diskQueue // lets tests substitute a queue's operations
}

// Manager owns one forwarder per upstream, swapped by ApplyConfig. All its
// methods are safe for concurrent use.
type Manager struct {
	logger  *slog.Logger
	metrics *registry.ForwardMetrics
	opts    Options

	// reloadMu serializes ApplyConfig and Stop, and guards the fields up to
	// mu. queues are the open disk queues by upstream name: the Manager
	// opens and closes them, a forwarder uses its upstream's.
	reloadMu sync.Mutex
	stopped  bool
	unlock   func() error // releases the lock on Options.StoragePath
	queues   map[string]diskQueue

	// mu guards set: Enqueue holds it for reading while it reserves and
	// appends, so a forwarder taken out of the set receives nothing after.
	mu  sync.RWMutex
	set *upstreamSet

	builders sync.Pool
	encoders sync.Pool

	stopping context.Context // cancelled when Stop begins
	stop     context.CancelFunc
}

// upstreamSet is one configuration's forwarders; never modified once published.
type upstreamSet struct {
	fwds     []*forwarder
	byName   map[string]*forwarder
	external labels.Labels
}

// onDisk reports whether upstream name has a disk queue in s.
func (s *upstreamSet) onDisk(name string) bool {
	f := s.byName[name]
	return f != nil && f.dq != nil
}

// NewManager returns a Manager with no upstreams; call ApplyConfig.
func NewManager(logger *slog.Logger, metrics *registry.ForwardMetrics, opts Options) *Manager {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts.UserAgent = cmp.Or(opts.UserAgent, "rw-gateway/"+cmp.Or(version.Version, "unknown"))
	if opts.FlushDeadline <= 0 {
		opts.FlushDeadline = DefaultFlushDeadline
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	if opts.QueueMetrics == nil {
		opts.QueueMetrics = queue.NewMetrics(nil)
	}
	m := &Manager{
		logger:   logger.With("component", "forward"),
		metrics:  metrics,
		opts:     opts,
		queues:   map[string]diskQueue{},
		builders: sync.Pool{New: func() any { return labels.NewBuilder(labels.EmptyLabels()) }},
		encoders: sync.Pool{New: func() any { return newRecordEncoder() }},
	}
	m.stopping, m.stop = context.WithCancel(context.Background())
	return m
}

// ApplyConfig sets the upstreams: new ones start; removed ones are drained
// (for at most Options.FlushDeadline), stopped and their series deleted;
// changed ones are replaced, the new forwarder sending once the old one
// drained; unchanged ones keep their queue and connections. External labels
// apply to requests enqueued after it returns. On error nothing changes.
//
// A changed upstream keeps its disk queue (with its new limits), and its new
// forwarder reads again what the old one did not send. A removed upstream,
// or one switched to memory, is flushed and its queue closed: the rest stays
// on disk, unsent, and is reported as orphaned until the upstream is back.
func (m *Manager) ApplyConfig(cfg *config.Config) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if m.stopped {
		return ErrStopped
	}
	if err := m.lockStorage(); err != nil {
		return err
	}
	old := cmp.Or(m.set, &upstreamSet{})
	next := &upstreamSet{
		byName:   make(map[string]*forwarder, len(cfg.Upstreams)),
		external: cfg.Global.ExternalLabels.Copy(),
	}
	var (
		created, replaced []*forwarder
		opened            = map[string]diskQueue{}
	)
	// fail undoes what the loop below did, and returns err for upstream name.
	fail := func(name string, err error) error {
		for _, c := range created {
			c.client.CloseIdleConnections()
			if _, ok := old.byName[c.name]; !ok {
				m.metrics.DeleteUpstream(c.name)
			}
		}
		for n, q := range opened {
			if err := q.Close(); err != nil {
				m.logger.Error("close disk queue", "upstream", n, "err", err)
			}
			m.opts.QueueMetrics.DeleteUpstream(n)
		}
		return fmt.Errorf("upstream %q: %w", name, err)
	}
	for _, u := range cfg.Upstreams {
		prev := old.byName[u.Name]
		if prev != nil && prev.cfg.Equal(u) {
			next.fwds = append(next.fwds, prev)
			next.byName[u.Name] = prev
			continue
		}
		var ready <-chan struct{}
		if prev != nil {
			ready = prev.done
			replaced = append(replaced, prev)
		}
		var dq diskQueue
		if m.opts.StoragePath != "" && u.QueueConfig.OnDisk() {
			if dq = m.queues[u.Name]; dq == nil {
				var err error
				if dq, err = m.openQueue(u); err != nil {
					return fail(u.Name, err)
				}
				opened[u.Name] = dq
			}
		}
		f, err := newForwarder(m.logger, m.metrics, u, m.opts.UserAgent, m.opts.ProbeInterval, ready, dq, m.opts.QueueMetrics)
		if err != nil {
			return fail(u.Name, err)
		}
		if dq != nil && prev != nil && prev.dq == dq {
			f.prev = prev // its unsent records are this one's to send
		}
		created = append(created, f)
		next.fwds = append(next.fwds, f)
		next.byName[u.Name] = f
	}
	removed := slices.DeleteFunc(slices.Clone(old.fwds), func(f *forwarder) bool { return next.byName[f.name] != nil })
	maps.Copy(m.queues, opened)
	for _, f := range created {
		if q := &f.cfg.QueueConfig; f.dq != nil && opened[f.name] == nil {
			f.dq.SetLimits(q.MaxBytes, fullPolicy(q)) // handed over by the forwarder it replaces
		}
		f.start()
	}

	m.mu.Lock()
	m.set = next
	m.mu.Unlock()

	for _, f := range created {
		kind := config.StorageMemory
		if f.dq != nil {
			kind = config.StorageDisk
		}
		m.logger.Info("upstream started", "upstream", f.name, "protocol", f.proto().Label(), "shards", len(f.shards), "queue", kind)
	}
	if m.opts.StoragePath != "" {
		m.scanOrphans(next)
	}
	// Stop ends the drain: a shutdown is bounded by its own deadline, not
	// by a reload's.
	ctx, cancel := context.WithTimeout(m.stopping, m.opts.FlushDeadline)
	defer cancel()
	stopAll(ctx, append(replaced, removed...))
	for _, f := range append(replaced, removed...) {
		if f.dq != nil && !next.onDisk(f.name) {
			m.closeQueue(f.name)
		}
	}
	for _, f := range removed {
		m.metrics.DeleteUpstream(f.name)
		m.logger.Info("upstream removed", "upstream", f.name)
	}
	return nil
}

// Enqueue appends req, the data of tenant ("" for none), to the queue of
// every upstream routes reports true for (all if routes is nil); one with a
// tenant_header sends each tenant's data apart, its id in the header. It
// returns once the data is queued everywhere (on disk: written), or nowhere,
// with an error (see StatusError): ErrQueueFull when an upstream lacks room,
// ErrStopped after Stop. The caller may reuse req once it returns.
//
// Across disk queues all or nothing holds as far as it can: all are checked
// for room first, but an append can still fail (a full disk, a concurrent
// request took the room). The queues appended to before keep the request,
// and the client's retry duplicates it there: duplicates, never loss.
func (m *Manager) Enqueue(ctx context.Context, req *prw.Request, tenant string, routes func(upstream string) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	set := m.set
	if set == nil {
		if m.stopped {
			return ErrStopped
		}
		return ErrNotConfigured
	}
	fwds := set.fwds
	if routes != nil {
		fwds = slices.DeleteFunc(slices.Clone(fwds), func(f *forwarder) bool { return !routes(f.name) })
	}
	r := request{req: req, form: req.Raw, tenant: tenant, external: set.external, lb: m.builders.Get().(*labels.Builder)}
	preps := make([]prepared, len(fwds))
	defer func() {
		m.builders.Put(r.lb)
		r.release()
		for i := range preps {
			preps[i].release()
			if e := preps[i].enc; e != nil {
				m.encoders.Put(e)
			}
		}
	}()
	for i, f := range fwds {
		f.prepare(&r, &preps[i])
	}

	// Disk queues: encode, and check for room.
	now := time.Now()
	for i := range preps {
		p := &preps[i]
		if p.f.dq == nil || len(p.items) == 0 {
			continue
		}
		p.enc = m.encoders.Get().(*recordEncoder)
		q := &p.f.cfg.QueueConfig
		if proto := p.proto; proto == prw.ProtoV1 && !p.raw.Ext { // as prepared, whatever a fallback since
			p.recs, p.recBytes = p.enc.encodeRaw(p.raw, p.meta, p.tenant, now)
			if p.handoff != nil {
				p.handoff = p.enc.wholeRaw(p.raw, p.handoff, p.meta, q.MaxSamplesPerSend, q.MaxBytesPerSend)
			}
		} else {
			var err error
			if p.recs, p.recBytes, err = p.enc.encode(p.items, proto, p.f.cfg.MetadataConfig.Send, now); err != nil {
				return fmt.Errorf("upstream %q: encode queue record: %w", p.f.name, err)
			}
			if p.handoff != nil && proto == prw.ProtoV2 {
				p.handoff = p.enc.whole(p.handoff, q.MaxSamplesPerSend, q.MaxBytesPerSend)
			}
		}
		if !p.f.dq.Fits(len(p.recs), p.recBytes) {
			return p.f.tooLarge(fmt.Sprintf("request of %d bytes in queue records (queue_config.max_bytes)", p.recBytes))
		}
		if !p.f.dq.HasRoom(len(p.recs), p.recBytes) {
			return p.f.full()
		}
	}
	// Memory queues: reserve.
	for i := range preps {
		if !preps[i].reserve() {
			for j := range i {
				preps[j].unreserve()
			}
			return preps[i].f.full()
		}
	}
	// Disk queues: append.
	for i := range preps {
		p := &preps[i]
		if len(p.recs) == 0 {
			continue
		}
		pos, err := p.f.dq.AppendAt(p.recs...)
		if err != nil {
			for j := range preps {
				preps[j].unreserve()
			}
			// The disk queues appended to before keep the request.
			for j := range i {
				if preps[j].f.dq != nil && len(preps[j].recs) > 0 {
					preps[j].commit()
				}
			}
			if i > 0 {
				p.f.logger.Debug("append to disk queue failed after other upstreams' queues took the request: the client's retry duplicates it there", "err", err)
			}
			if errors.Is(err, queue.ErrFull) {
				return p.f.full()
			}
			if errors.Is(err, queue.ErrTooLarge) {
				return p.f.tooLarge("append to disk queue: " + err.Error())
			}
			return fmt.Errorf("upstream %q: append to disk queue: %w", p.f.name, err)
		}
		if p.handoff != nil && len(p.recs) == 1 {
			p.handingOff()
			p.f.handoff.put(pos, p.handoff, now, handoffBytes(p.handoff))
		}
	}
	for i := range preps {
		preps[i].commit()
	}
	return nil
}

// Stop flushes every queue until ctx is done, then cancels in-flight sends:
// what is left is counted dropped in memory, kept unacknowledged on disk.
// It closes the disk queues and unlocks the storage path; Enqueue returns
// ErrStopped after. Stop is idempotent.
func (m *Manager) Stop(ctx context.Context) {
	m.stop() // a reload draining upstreams ends its drain now
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if m.stopped {
		return
	}
	m.mu.Lock()
	m.stopped = true
	set := m.set
	m.set = nil
	m.mu.Unlock()
	if set != nil {
		stopAll(ctx, set.fwds)
	}
	for name := range m.queues {
		m.closeQueue(name)
	}
	if m.unlock != nil {
		if err := m.unlock(); err != nil {
			m.logger.Error("unlock storage path", "err", err)
		}
	}
}

// stopAll stops fwds at once, and returns when all have stopped.
func stopAll(ctx context.Context, fwds []*forwarder) {
	var wg sync.WaitGroup
	for _, f := range fwds {
		wg.Go(func() { f.stop(ctx) })
	}
	wg.Wait()
}
