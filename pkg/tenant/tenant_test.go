package tenant

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

func loadConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.yml")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b.token"), []byte("token-b\n"), 0o600))
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	cfg, err := config.LoadFile(path)
	require.NoError(t, err)
	return cfg
}

const upstreams = `
upstreams:
- {name: shared, url: "http://127.0.0.1:1/w"}
- {name: a-only, url: "http://127.0.0.1:2/w"}
`

func hash(t *testing.T, pass string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	require.NoError(t, err)
	return string(h)
}

// recorder is a Forwarder that records what reached it and where it was
// routed: "all", or the upstreams of the test config that routes allows.
type recorder struct {
	mu      sync.Mutex
	got     []string
	tenants []string
	reqs    []prw.Request
}

func (r *recorder) Enqueue(_ context.Context, req *prw.Request, tenant string, routes func(string) bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	to := "all"
	if routes != nil {
		var names []string
		for _, u := range []string{"shared", "a-only"} {
			if routes(u) {
				names = append(names, u)
			}
		}
		to = strings.Join(names, ",")
	}
	r.got = append(r.got, to)
	r.tenants = append(r.tenants, tenant)
	r.reqs = append(r.reqs, *req)
	return nil
}

func newGuard(t *testing.T, cfg *config.Config) (*Guard, *recorder, *registry.TenantMetrics) {
	t.Helper()
	rec := &recorder{}
	m := registry.NewTenantMetrics(prometheus.NewPedanticRegistry())
	g := NewGuard(m, rec)
	s, err := NewSet(cfg, nil)
	require.NoError(t, err)
	g.Apply(s)
	return g, rec, m
}

func TestResolve(t *testing.T) {
	cfg := loadConfig(t, upstreams+`
tenants:
  required: true
  tenants:
  - id: a
    upstreams: [a-only, shared]
    bearer_tokens: [token-a]
  - id: b
    bearer_token_files: [b.token]
  - id: c
    basic_auth_users: {carol: '`+hash(t, "secret")+`'}
  - id: open
`)
	s, err := NewSet(cfg, nil)
	require.NoError(t, err)
	for _, tc := range []struct {
		name      string
		header    map[string]string
		user      [2]string
		want      string
		wantErr   error
		wantLabel string
	}{
		{name: "header only, no credentials needed", header: map[string]string{"X-Scope-OrgID": "open"}, want: "open", wantLabel: "open"},
		{name: "thanos header", header: map[string]string{"THANOS-TENANT": "open"}, want: "open", wantLabel: "open"},
		{name: "bearer token decides", header: map[string]string{"Authorization": "Bearer token-a"}, want: "a", wantLabel: "a"},
		{name: "token from file", header: map[string]string{"Authorization": "Bearer token-b"}, want: "b", wantLabel: "b"},
		{name: "token and matching header", header: map[string]string{"Authorization": "Bearer token-a", "X-Scope-OrgID": "a"}, want: "a", wantLabel: "a"},
		{name: "token of a, header claims b", header: map[string]string{"Authorization": "Bearer token-a", "X-Scope-OrgID": "b"}, wantErr: ErrForbidden, wantLabel: "a"},
		{name: "header claims a tenant with credentials", header: map[string]string{"X-Scope-OrgID": "a"}, wantErr: ErrUnauthenticated, wantLabel: "a"},
		{name: "unknown tenant", header: map[string]string{"X-Scope-OrgID": "mallory"}, wantErr: ErrUnauthenticated, wantLabel: UnknownLabel},
		{name: "no tenant when required", wantErr: ErrUnauthenticated, wantLabel: ""},
		{name: "unbound token and no header", header: map[string]string{"Authorization": "Bearer nope"}, wantErr: ErrUnauthenticated},
		{name: "basic auth user", user: [2]string{"carol", "secret"}, want: "c", wantLabel: "c"},
		{name: "basic auth wrong password", user: [2]string{"carol", "guess"}, wantErr: ErrUnauthenticated},
		{name: "basic auth of an unbound user falls back to the header", user: [2]string{"edge", "x"}, header: map[string]string{"X-Scope-OrgID": "open"}, want: "open", wantLabel: "open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/write", nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			if tc.user[0] != "" {
				r.SetBasicAuth(tc.user[0], tc.user[1])
			}
			got, label, err := s.Resolve(r)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				require.Nil(t, got)
			} else {
				require.NoError(t, err)
				require.Equal(t, tc.want, got.ID)
			}
			if tc.wantLabel != "" {
				require.Equal(t, tc.wantLabel, label)
			}
		})
	}
	a, _, err := s.Resolve(withHeader("Authorization", "Bearer token-a"))
	require.NoError(t, err)
	require.True(t, a.Routes("a-only"))
	open, _, err := s.Resolve(withHeader("X-Scope-OrgID", "open"))
	require.NoError(t, err)
	require.True(t, open.Routes("a-only"), "a tenant without upstreams reaches all")
	b, _, err := s.Resolve(withHeader("Authorization", "Bearer token-b"))
	require.NoError(t, err)
	require.True(t, b.Routes("shared"))

	cfg = loadConfig(t, upstreams+"tenants:\n  tenants: [{id: a, upstreams: [shared]}]\n")
	s, err = NewSet(cfg, nil)
	require.NoError(t, err)
	a, _, err = s.Resolve(withHeader("X-Scope-OrgID", "a"))
	require.NoError(t, err)
	require.False(t, a.Routes("a-only"), "a tenant routed to shared never reaches a-only")

	// The Guard hands the tenant's routing to the forwarder with the data.
	g, rec, _ := newGuard(t, cfg)
	require.NoError(t, g.Enqueue(NewContext(t.Context(), a), prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 1)}, nil)))
	require.NoError(t, g.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 1)}, nil)))
	require.Equal(t, []string{"shared", "all"}, rec.got)
	require.Equal(t, []string{"a", ""}, rec.tenants, "the tenant's id goes with its data")
	none, _, err := s.Resolve(withHeader("X", "y"))
	require.NoError(t, err, "not required: no tenant is served")
	require.Equal(t, "", none.ID)
}

func withHeader(k, v string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/write", nil)
	r.Header.Set(k, v)
	return r
}

func TestMiddlewareStatusAndCounters(t *testing.T) {
	cfg := loadConfig(t, upstreams+`
tenants:
  required: true
  tenants:
  - {id: a, bearer_tokens: [token-a], limits: {max_inflight_requests: 1}}
  - {id: b}
`)
	g, _, m := newGuard(t, cfg)
	block := make(chan struct{})
	entered := make(chan struct{})
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t := FromContext(r.Context()); t != nil && t.ID == "a" {
			entered <- struct{}{}
			<-block
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	require.Equal(t, http.StatusUnauthorized, serve(withHeader("X-Scope-OrgID", "zz")).Code)
	require.Equal(t, 1.0, testutil.ToFloat64(m.Rejected.WithLabelValues(UnknownLabel, registry.TenantUnauthenticated)))
	require.Equal(t, http.StatusUnauthorized, serve(withHeader("X-Scope-OrgID", "a")).Code)
	require.Equal(t, http.StatusUnauthorized, serve(httptest.NewRequest(http.MethodPost, "/", nil)).Code)
	r := withHeader("Authorization", "Bearer token-a")
	r.Header.Set("X-Scope-OrgID", "b")
	require.Equal(t, http.StatusForbidden, serve(r).Code)
	require.Equal(t, 1.0, testutil.ToFloat64(m.Rejected.WithLabelValues("a", registry.TenantForbidden)))
	require.Equal(t, http.StatusNoContent, serve(withHeader("X-Scope-OrgID", "b")).Code)
	require.Equal(t, http.StatusNoContent, serve(httptest.NewRequest(http.MethodGet, "/", nil)).Code, "non-POST passes through to the handler")

	// In-flight limit: the second concurrent request of a gets 503.
	done := make(chan int)
	go func() { done <- serve(withHeader("Authorization", "Bearer token-a")).Code }()
	<-entered
	rec := serve(withHeader("Authorization", "Bearer token-a"))
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Rejected.WithLabelValues("a", registry.TenantInflight)))
	close(block)
	require.Equal(t, http.StatusNoContent, <-done)
	go func() { <-entered }()
	require.Equal(t, http.StatusNoContent, serve(withHeader("Authorization", "Bearer token-a")).Code, "the slot is released")
}

func series(name string, n int, extra ...string) prw.Series {
	s := prw.Series{Labels: labels.FromStrings(append([]string{"__name__", name}, extra...)...)}
	for i := range n {
		s.Samples = append(s.Samples, prw.Sample{Value: float64(i), Timestamp: int64(i)})
	}
	return s
}

func TestEnqueueLimitsAndLabels(t *testing.T) {
	cfg := loadConfig(t, upstreams+`
limits: {max_labels_per_series: 4, max_label_value_length: 10}
tenants:
  tenants:
  - id: a
    extra_labels: {tenant: a, env: prod}
    limits: {samples_per_second: 10, burst: 20, max_series_per_request: 2}
`)
	g, rec, m := newGuard(t, cfg)
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }
	s := g.Set()
	a := s.byID["a"]
	ctxA := NewContext(context.Background(), a)

	for _, tc := range []struct {
		name     string
		ctx      context.Context
		req      prw.Request
		wantCode int
		reason   string
		tenant   string
	}{
		{"too many series", ctxA, *prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 1), series("y", 1), series("z", 1)}, nil), 400, registry.TenantSeries, "a"},
		{"too many labels (global limit, tenant inherits)", ctxA, *prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 1, "a", "1", "b", "2", "c", "3", "d", "4")}, nil), 400, registry.TenantLabels, "a"},
		{"label value too long", context.Background(), *prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 1, "a", "01234567890")}, nil), 400, registry.TenantLabelValue, ""},
		{"over the burst", ctxA, *prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 21)}, nil), 429, registry.TenantRateLimited, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(m.Rejected.WithLabelValues(tc.tenant, tc.reason))
			err := g.Enqueue(tc.ctx, &tc.req)
			le, ok := errors.AsType[*limitError](err)
			require.True(t, ok, "%v", err)
			require.Equal(t, tc.wantCode, le.StatusCode())
			require.Equal(t, registry.ReasonLimit, le.Reason())
			require.Equal(t, before+1, testutil.ToFloat64(m.Rejected.WithLabelValues(tc.tenant, tc.reason)))
		})
	}
	require.Empty(t, rec.got, "nothing refused reached the forwarder")

	// Rate: 20 samples of burst pass, the next 10 wait one second.
	require.NoError(t, g.Enqueue(ctxA, prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 20)}, nil)))
	err := g.Enqueue(ctxA, prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 10)}, nil))
	ra, ok := errors.AsType[*limitError](err)
	require.True(t, ok)
	require.Equal(t, time.Second, ra.RetryAfter())
	require.Equal(t, 429, ra.StatusCode())
	now = now.Add(time.Second)
	require.NoError(t, g.Enqueue(ctxA, prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 10)}, nil)))
	require.Equal(t, 30.0, testutil.ToFloat64(m.Samples.WithLabelValues("a")))

	// Extra labels replace what the client sent under those names.
	require.NoError(t, g.Enqueue(ctxA, prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 0, "tenant", "forged")}, nil)))
	last := rec.reqs[len(rec.reqs)-1]
	require.Equal(t, labels.FromStrings("__name__", "x", "env", "prod", "tenant", "a"), seriesLabels(t, &last)[0])
	require.Equal(t, []string{"all", "all", "all"}, rec.got, "tenant a reaches every upstream")
}

func TestReloadKeepsState(t *testing.T) {
	cfg := loadConfig(t, upstreams+"tenants:\n  tenants: [{id: a, limits: {samples_per_second: 1, burst: 5}}, {id: gone}]\n")
	g, _, m := newGuard(t, cfg)
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }
	ctx := NewContext(context.Background(), g.Set().byID["a"])
	require.NoError(t, g.Enqueue(ctx, prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 5)}, nil)))

	next, err := NewSet(loadConfig(t, upstreams+"tenants:\n  tenants: [{id: a, limits: {samples_per_second: 1, burst: 5}}]\n"), g.Set())
	require.NoError(t, err)
	g.Apply(next)
	ctx = NewContext(context.Background(), g.Set().byID["a"])
	require.Error(t, g.Enqueue(ctx, prw.NewRequest(prw.ProtoV1, []prw.Series{series("x", 1)}, nil)), "a reload does not refill the bucket")

	require.Equal(t, 2, testutil.CollectAndCount(m.Samples, "gateway_tenant_samples_total"), "the removed tenant's series are deleted; \"\" and a remain")
}

// seriesLabels returns the labels of each series of req.
func seriesLabels(t *testing.T, req *prw.Request) []labels.Labels {
	t.Helper()
	series, _, err := rwtest.Decode(req)
	require.NoError(t, err)
	var out []labels.Labels
	for _, s := range series {
		out = append(out, s.Labels)
	}
	return out
}

// decodedV1 returns wr as the receiver hands it on: scanned, in the form
// as it came.
func decodedV1(t *testing.T, wr *prompb.WriteRequest) *prw.Request {
	t.Helper()
	msg, err := wr.Marshal()
	require.NoError(t, err)
	dec := prw.NewV1Decoder()
	d, err := dec.Decode(msg)
	require.NoError(t, err)
	t.Cleanup(func() { dec.Release(d) })
	require.True(t, d.Req.Raw.AsSent, "the scan accepted it")
	return &d.Req
}

// A tenant's label limits and extra labels work on the request as it
// came, in the form.
func TestTenantKeepsFastPath(t *testing.T) {
	cfg := loadConfig(t, upstreams+`
limits: {max_labels_per_series: 11, max_label_name_length: 10, max_label_value_length: 40}
tenants:
  tenants:
  - id: a
    extra_labels: {tenant: a, cluster: forced}
`)
	g, rec, m := newGuard(t, cfg)
	a := g.Set().byID["a"]
	ctx := NewContext(t.Context(), a)

	req := decodedV1(t, rwtest.V1Request(3, 2))
	require.NoError(t, g.Enqueue(ctx, req))
	require.Nil(t, req.Raw.Compressed, "the client's body no longer holds the labels")
	got := rec.reqs[len(rec.reqs)-1]
	gotLabels := seriesLabels(t, &got)
	require.Len(t, gotLabels, 3)
	for i := range 3 {
		want := labels.NewBuilder(rwtest.SeriesLabels(i)).Set("tenant", "a").Set("cluster", "forced").Labels()
		require.Equal(t, want, gotLabels[i])
	}

	// Every limit, on the request as it came.
	for _, tc := range []struct {
		limits, reason string
	}{
		{"max_labels_per_series: 9", registry.TenantLabels},
		{"max_label_name_length: 5", registry.TenantLabelName},
		{"max_label_value_length: 20", registry.TenantLabelValue},
	} {
		cfg := loadConfig(t, upstreams+"limits: {"+tc.limits+"}\n")
		g, rec, m := newGuard(t, cfg)
		req := decodedV1(t, rwtest.V1Request(2, 1))
		err := g.Enqueue(t.Context(), req)
		le, ok := errors.AsType[*limitError](err)
		require.True(t, ok, "%s: %v", tc.limits, err)
		require.Equal(t, 400, le.StatusCode())
		require.Contains(t, le.Error(), "node_cpu_seconds_total")
		require.Empty(t, rec.reqs)
		require.Equal(t, 1.0, testutil.ToFloat64(m.Rejected.WithLabelValues("", tc.reason)), tc.limits)
	}
	require.Zero(t, testutil.ToFloat64(m.Rejected.WithLabelValues("a", registry.TenantLabels)))
}
