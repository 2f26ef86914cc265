package tenant

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/registry"
)

// Guard applies the current Set to write requests: Middleware resolves the
// tenant and bounds in-flight requests before the body is read; Enqueue
// checks the decoded request against the tenant's limits and adds its
// labels before passing it on. It is built once; Apply swaps the Set.
type Guard struct {
	set     atomic.Pointer[Set]
	metrics *registry.TenantMetrics
	next    Forwarder
	now     func() time.Time
}

// Forwarder takes the requests a Guard accepted, with their tenant's id
// ("" for requests without a tenant) and routing: routes reports whether
// the data may go to an upstream, and is nil when it may go to every
// upstream. Its errors are passed back to the caller of Enqueue unchanged.
type Forwarder interface {
	Enqueue(ctx context.Context, req *prw.Request, tenant string, routes func(upstream string) bool) error
}

// NewGuard returns a Guard passing accepted requests to next.
func NewGuard(metrics *registry.TenantMetrics, next Forwarder) *Guard {
	return &Guard{metrics: metrics, next: next, now: time.Now}
}

// Apply makes s the Set in force, and creates and deletes metric series for
// the tenants it adds and removes.
func (g *Guard) Apply(s *Set) {
	old := g.set.Swap(s)
	g.metrics.InitTenant(s.dflt.ID)
	for id := range s.byID {
		g.metrics.InitTenant(id)
	}
	if old == nil {
		return
	}
	for id := range old.byID {
		if _, ok := s.byID[id]; !ok {
			g.metrics.DeleteTenant(id)
		}
	}
}

// Set returns the Set in force.
func (g *Guard) Set() *Set { return g.set.Load() }

// Middleware resolves each request's tenant (401, 403) and holds it to its
// in-flight limit (503) before next reads the body.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r) // the write handler answers 405
			return
		}
		s := g.set.Load()
		t, label, err := s.Resolve(r)
		if err != nil {
			code, reason := http.StatusUnauthorized, registry.TenantUnauthenticated
			if errors.Is(err, ErrForbidden) {
				code, reason = http.StatusForbidden, registry.TenantForbidden
			}
			g.metrics.Rejected.WithLabelValues(label, reason).Inc()
			http.Error(w, err.Error(), code)
			return
		}
		if max := t.limits.MaxInflightRequests; max > 0 {
			if n := t.state.inflight.Add(1); n > int64(max) {
				t.state.inflight.Add(-1)
				g.metrics.Rejected.WithLabelValues(t.ID, registry.TenantInflight).Inc()
				w.Header().Set("Retry-After", "1")
				http.Error(w, fmt.Sprintf("too many requests in flight (limit %d)", max), http.StatusServiceUnavailable)
				return
			}
			defer t.state.inflight.Add(-1)
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), t)))
	})
}

// limitError is a request refused by a limit. It carries the status, the
// reject reason and the Retry-After a write handler answers it with.
type limitError struct {
	code       int
	msg        string
	retryAfter time.Duration
}

func (e *limitError) Error() string             { return e.msg }
func (e *limitError) StatusCode() int           { return e.code }
func (e *limitError) RetryAfter() time.Duration { return e.retryAfter }
func (e *limitError) Reason() string            { return registry.ReasonLimit }

// Enqueue checks req against its tenant's limits, sets the tenant's extra
// labels on every series, and passes it on with the tenant's routing. The
// tenant is the one Middleware put in ctx; a request without one is
// checked against the global limits.
func (g *Guard) Enqueue(ctx context.Context, req *prw.Request) error {
	t := FromContext(ctx)
	if t == nil {
		t = g.set.Load().dflt
	}
	if err := g.checkShape(t, req); err != nil {
		return err
	}
	n := req.Raw.Samples + req.Raw.Histograms + req.Raw.Exemplars
	if l := t.state.limiter.Load(); l != nil && n > 0 {
		now := g.now()
		res := l.ReserveN(now, n)
		if !res.OK() {
			g.metrics.Rejected.WithLabelValues(t.ID, registry.TenantRateLimited).Inc()
			return &limitError{code: http.StatusTooManyRequests, retryAfter: time.Second,
				msg: fmt.Sprintf("request of %d samples is over the tenant's burst of %d", n, t.limits.Burst)}
		}
		if d := res.DelayFrom(now); d > 0 {
			res.CancelAt(now)
			g.metrics.Rejected.WithLabelValues(t.ID, registry.TenantRateLimited).Inc()
			return &limitError{code: http.StatusTooManyRequests, retryAfter: d,
				msg: fmt.Sprintf("over the rate limit of %g samples/s", t.limits.SamplesPerSecond)}
		}
	}
	if !t.extraLabels.IsEmpty() {
		if err := setLabels(req, t.extraLabels); err != nil {
			return err
		}
	}
	var routes func(string) bool
	if t.upstreams != nil {
		routes = t.Routes
	}
	if err := g.next.Enqueue(ctx, req, t.ID, routes); err != nil {
		return err
	}
	g.metrics.Samples.WithLabelValues(t.ID).Add(float64(n))
	return nil
}

// checkShape enforces the request shape limits.
func (g *Guard) checkShape(t *Tenant, req *prw.Request) error {
	l := t.limits
	reject := func(reason, msg string) error {
		g.metrics.Rejected.WithLabelValues(t.ID, reason).Inc()
		return &limitError{code: http.StatusBadRequest, msg: msg}
	}
	if n := len(req.Raw.Series); l.MaxSeriesPerRequest > 0 && n > l.MaxSeriesPerRequest {
		return reject(registry.TenantSeries, fmt.Sprintf("%d series in one request, over the limit of %d", n, l.MaxSeriesPerRequest))
	}
	if l.MaxLabelsPerSeries == 0 && l.MaxLabelNameLength == 0 && l.MaxLabelValueLength == 0 {
		return nil
	}
	// The limits are checked on the form's labels, without decoding them.
	var (
		sb  labels.ScratchBuilder
		ts  []byte
		n   int
		err error
	)
	series := func() string { ls, _ := prw.SeriesLabels(ts, &sb); return truncate(ls.String()) }
	check := func(name, value []byte) bool {
		n++
		switch {
		case l.MaxLabelNameLength > 0 && len(name) > l.MaxLabelNameLength:
			err = reject(registry.TenantLabelName, "label name "+strconv.Quote(truncate(string(name)))+" of series "+series()+" is over the length limit of "+strconv.Itoa(l.MaxLabelNameLength))
		case l.MaxLabelValueLength > 0 && len(value) > l.MaxLabelValueLength:
			err = reject(registry.TenantLabelValue, "value of label "+strconv.Quote(string(name))+" of series "+series()+" is over the length limit of "+strconv.Itoa(l.MaxLabelValueLength))
		}
		return err == nil
	}
	for _, rs := range req.Raw.Series {
		ts, n = rs.Bytes(req.Raw.Msg), 0
		_ = prw.RangeRawLabels(ts, check) // the form was validated: its labels read
		if err == nil && l.MaxLabelsPerSeries > 0 && n > l.MaxLabelsPerSeries {
			err = reject(registry.TenantLabels, fmt.Sprintf("series %s has %d labels, over the limit of %d", series(), n, l.MaxLabelsPerSeries))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// setLabels sets extra on every series of req, replacing same-named
// labels.
func setLabels(req *prw.Request, extra labels.Labels) error {
	lb := labels.NewBuilder(labels.EmptyLabels())
	raw, _, err := prw.Relabel(req.Raw, lb, func(lb *labels.Builder) bool {
		extra.Range(func(l labels.Label) { lb.Set(l.Name, l.Value) })
		return true
	})
	if err != nil {
		return fmt.Errorf("set the tenant's labels: %w", err)
	}
	req.Raw = raw
	return nil
}
