// Package forward sends what the receiver accepted to every configured
// upstream.
//
// The Manager owns one forwarder per upstream. Enqueue copies a request,
// applies each upstream's external labels, write relabeling and send_*
// settings, and appends it to every upstream's queue, all or nothing. Each
// forwarder has a fixed number of shards (queue_config.max_shards); a series
// always goes to the same shard, whose goroutine sends batches one after the
// other, so each series arrives in order. Batches are retried with backoff
// on network errors, 5xx and 429, split on 413, and dropped (and counted) on
// other 4xx.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/model/labels"
	"go.yaml.in/yaml/v2"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/model"
	"github.com/rwgateway/gateway/pkg/receiver"
	"github.com/rwgateway/gateway/pkg/registry"
)

// DefaultFlushDeadline bounds how long a reload waits for a removed or
// changed upstream's queue to drain.
const DefaultFlushDeadline = time.Minute

var (
	// ErrQueueFull and ErrStopped wrap the receiver's sentinels, so the
	// write handler answers 503 with Retry-After for both.
	//
	// ErrQueueFull is wrapped by the error Enqueue returns when an upstream's
	// queue has no room for the request. That error also has a
	// RetryAfter() time.Duration method: the delay to suggest to the client.
	ErrQueueFull = fmt.Errorf("upstream %w", receiver.ErrQueueFull)
	// ErrStopped is returned by Enqueue and ApplyConfig after Stop.
	ErrStopped = fmt.Errorf("forwarding stopped: %w", receiver.ErrShuttingDown)
	// ErrNotConfigured is returned by Enqueue before the first ApplyConfig.
	ErrNotConfigured = errors.New("no upstreams configured")
)

// queueFullError is the error Enqueue returns when the request did not fit.
type queueFullError struct {
	upstream   string
	retryAfter time.Duration
}

func (e *queueFullError) Error() string {
	return fmt.Sprintf("upstream %q: %s", e.upstream, ErrQueueFull)
}

func (e *queueFullError) Unwrap() error { return ErrQueueFull }

// RetryAfter is how long the client should wait before retrying.
func (e *queueFullError) RetryAfter() time.Duration { return e.retryAfter }

// Options configure a Manager. Zero fields mean the documented defaults.
type Options struct {
	// UserAgent is sent to upstreams; default "rw-gateway/<version>".
	UserAgent string
	// FlushDeadline bounds the drain of an upstream that a reload removes or
	// changes; default DefaultFlushDeadline.
	FlushDeadline time.Duration
}

// Manager owns one forwarder per upstream. It is built once at start;
// ApplyConfig sets and later swaps the set of upstreams. All methods are
// safe for concurrent use.
type Manager struct {
	logger  *slog.Logger
	metrics *registry.ForwardMetrics
	opts    Options

	// reloadMu serializes ApplyConfig and Stop.
	reloadMu sync.Mutex
	stopped  bool

	// mu guards set: Enqueue holds it for reading while it reserves and
	// appends, so a forwarder taken out of the set receives nothing after.
	mu  sync.RWMutex
	set *upstreamSet

	builders sync.Pool
}

// upstreamSet is one configuration's forwarders; never modified once
// published.
type upstreamSet struct {
	fwds     []*forwarder
	byName   map[string]*forwarder
	external labels.Labels
}

// NewManager returns a Manager with no upstreams; call ApplyConfig.
func NewManager(logger *slog.Logger, metrics *registry.ForwardMetrics, opts Options) *Manager {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.UserAgent == "" {
		v := version.Version
		if v == "" {
			v = "unknown"
		}
		opts.UserAgent = "rw-gateway/" + v
	}
	if opts.FlushDeadline <= 0 {
		opts.FlushDeadline = DefaultFlushDeadline
	}
	return &Manager{
		logger:   logger.With("component", "forward"),
		metrics:  metrics,
		opts:     opts,
		builders: sync.Pool{New: func() any { return labels.NewBuilder(labels.EmptyLabels()) }},
	}
}

// ApplyConfig sets the upstreams. New upstreams start; removed ones are
// drained (for at most Options.FlushDeadline), stopped, and their metric
// series deleted; changed ones are replaced, the new forwarder sending only
// once the old one has drained; unchanged ones keep their queue and
// connections. External labels apply to every request enqueued after it
// returns. On error nothing changes.
func (m *Manager) ApplyConfig(cfg *config.Config) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if m.stopped {
		return ErrStopped
	}
	old := m.set
	if old == nil {
		old = &upstreamSet{}
	}
	next := &upstreamSet{
		byName:   make(map[string]*forwarder, len(cfg.Upstreams)),
		external: cfg.Global.ExternalLabels.Copy(),
	}
	var created, replaced []*forwarder
	for _, u := range cfg.Upstreams {
		prev := old.byName[u.Name]
		if prev != nil && sameUpstream(prev.cfg, u) {
			next.fwds = append(next.fwds, prev)
			next.byName[u.Name] = prev
			continue
		}
		var ready <-chan struct{}
		if prev != nil {
			ready = prev.done
			replaced = append(replaced, prev)
		}
		f, err := newForwarder(m.logger, m.metrics, u, m.opts.UserAgent, ready)
		if err != nil {
			for _, c := range created {
				c.client.CloseIdleConnections()
				if _, ok := old.byName[c.name]; !ok {
					m.metrics.DeleteUpstream(c.name)
				}
			}
			return fmt.Errorf("upstream %q: %w", u.Name, err)
		}
		created = append(created, f)
		next.fwds = append(next.fwds, f)
		next.byName[u.Name] = f
	}
	var removed []*forwarder
	for _, f := range old.fwds {
		if _, ok := next.byName[f.name]; !ok {
			removed = append(removed, f)
		}
	}
	for _, f := range created {
		f.start()
	}

	m.mu.Lock()
	m.set = next
	m.mu.Unlock()

	for _, f := range created {
		m.logger.Info("upstream started", "upstream", f.name, "protocol", f.proto().Label(), "shards", len(f.shards))
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.FlushDeadline)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range append(replaced, removed...) {
		wg.Go(func() { f.stop(ctx) })
	}
	wg.Wait()
	for _, f := range removed {
		m.metrics.DeleteUpstream(f.name)
		m.logger.Info("upstream removed", "upstream", f.name)
	}
	return nil
}

// sameUpstream reports whether a and b configure the same upstream.
// Relabel configs are compared by their YAML, since they hold compiled
// regexps; everything else, secrets included, with reflect.DeepEqual.
func sameUpstream(a, b *config.UpstreamConfig) bool {
	ca, cb := *a, *b
	ca.WriteRelabelConfigs, cb.WriteRelabelConfigs = nil, nil
	if !reflect.DeepEqual(ca, cb) {
		return false
	}
	ya, errA := yaml.Marshal(a.WriteRelabelConfigs)
	yb, errB := yaml.Marshal(b.WriteRelabelConfigs)
	return errA == nil && errB == nil && string(ya) == string(yb)
}

// Enqueue appends req to every upstream's queue. It returns once the data
// is queued everywhere, or nothing is queued anywhere: an error wrapping
// ErrQueueFull (with a RetryAfter method) when an upstream lacks room,
// ErrStopped after Stop. Enqueue copies what it keeps: the caller may reuse
// req and everything it points to once Enqueue returns.
func (m *Manager) Enqueue(ctx context.Context, req *model.Request) error {
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
	in := prepareInput{
		series:   copySeries(req),
		external: set.external,
		lb:       m.builders.Get().(*labels.Builder),
	}
	defer m.builders.Put(in.lb)
	if len(req.Metadata) > 0 {
		in.families = make([]*model.FamilyMetadata, len(req.Metadata))
		for i, fm := range req.Metadata {
			in.families[i] = &model.FamilyMetadata{
				MetricFamilyName: strings.Clone(fm.MetricFamilyName),
				Metadata:         cloneMetadata(fm.Metadata),
			}
		}
	}
	preps := make([]prepared, len(set.fwds))
	for i, f := range set.fwds {
		f.prepare(&in, &preps[i])
	}
	for i := range preps {
		if !preps[i].reserve() {
			for j := range i {
				preps[j].releaseFirst(len(preps[j].ranges))
			}
			f := preps[i].f
			f.m.queueFull.Inc()
			return &queueFullError{upstream: f.name, retryAfter: f.retryAfter()}
		}
	}
	for i := range preps {
		preps[i].commit()
	}
	return nil
}

// Stop flushes every queue until ctx is done, then cancels in-flight sends;
// what is left is counted dropped. Enqueue returns ErrStopped after. Stop is
// idempotent.
func (m *Manager) Stop(ctx context.Context) {
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
	if set == nil {
		return
	}
	var wg sync.WaitGroup
	for _, f := range set.fwds {
		wg.Go(func() { f.stop(ctx) })
	}
	wg.Wait()
}
