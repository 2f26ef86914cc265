package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// sinkServer records the tenant label of every series it receives.
type sinkServer struct {
	*httptest.Server
	mu      sync.Mutex
	tenants map[string]int
	orgIDs  map[string]int
}

func newSinkServer(t *testing.T) *sinkServer {
	s := &sinkServer{tenants: map[string]int{}, orgIDs: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		dec, err := snappy.Decode(nil, body)
		require.NoError(t, err)
		var req prompb.WriteRequest
		require.NoError(t, proto.Unmarshal(dec, &req))
		s.mu.Lock()
		for _, ts := range req.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "tenant" {
					s.tenants[l.Value] += len(ts.Samples)
				}
			}
		}
		s.orgIDs[r.Header.Get("X-Scope-OrgID")]++
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sinkServer) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.tenants {
		out[k] = v
	}
	return out
}

// TestTenantIsolation sends data of two tenants through the whole gateway:
// each tenant's data reaches only the upstreams it is routed to, carries
// its tenant label, and a client cannot write as a tenant whose credentials
// it lacks.
func TestTenantIsolation(t *testing.T) {
	shared, onlyA, onlyB := newSinkServer(t), newSinkServer(t), newSinkServer(t)
	cfgFile := filepath.Join(t.TempDir(), "gw.yml")
	q := "  queue_config: {batch_send_deadline: 10ms, max_shards: 2}\n"
	cfgText := fmt.Sprintf(`upstreams:
- name: shared
  url: %s
%s- name: only-a
  url: %s
  headers: {X-Scope-OrgID: a}
%s- name: only-b
  url: %s
  headers: {X-Scope-OrgID: b}
%stenants:
  required: true
  tenants:
  - {id: a, upstreams: [shared, only-a], extra_labels: {tenant: a}, bearer_tokens: [token-a]}
  - {id: b, upstreams: [shared, only-b], extra_labels: {tenant: b}}
`, shared.URL, q, onlyA.URL, q, onlyB.URL, q)
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfgText), 0o600))
	gw, _, srv := startGateway(t, cfgFile)

	write := func(header map[string]string, forged string) int {
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "tenant", Value: forged}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: 1}},
		}}}
		b, err := proto.Marshal(req)
		require.NoError(t, err)
		hr, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, b)))
		require.NoError(t, err)
		for k, v := range header {
			hr.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(hr)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 10 {
		require.Equal(t, http.StatusNoContent, write(map[string]string{"Authorization": "Bearer token-a"}, "b"))
		require.Equal(t, http.StatusNoContent, write(map[string]string{"X-Scope-OrgID": "b"}, "a"))
	}
	require.Equal(t, http.StatusUnauthorized, write(map[string]string{"X-Scope-OrgID": "a"}, "a"), "a needs its token")
	require.Equal(t, http.StatusForbidden, write(map[string]string{"Authorization": "Bearer token-a", "X-Scope-OrgID": "b"}, "b"))
	require.Equal(t, http.StatusUnauthorized, write(nil, "a"))

	// Stop flushes every queue: what was sent has arrived.
	gw.fwd.Stop(context.Background())
	require.Equal(t, map[string]int{"a": 10, "b": 10}, shared.counts())
	require.Equal(t, map[string]int{"a": 10}, onlyA.counts(), "b's data never reaches only-a")
	require.Equal(t, map[string]int{"b": 10}, onlyB.counts(), "a's data never reaches only-b")
}

// TestLimitsThroughTheStack checks each limit's status code, Retry-After
// and counters as a client sees them.
func TestLimitsThroughTheStack(t *testing.T) {
	up := newSinkServer(t)
	cfgFile := filepath.Join(t.TempDir(), "gw.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(fmt.Sprintf(`upstreams:
- {name: up, url: %s, queue_config: {batch_send_deadline: 10ms, max_shards: 1}}
limits: {max_series_per_request: 2, max_labels_per_series: 3, max_label_value_length: 8, samples_per_second: 1, burst: 3}
`, up.URL)), 0o600))
	_, reg, srv := startGateway(t, cfgFile)

	post := func(series ...prompb.TimeSeries) *http.Response {
		b, err := proto.Marshal(&prompb.WriteRequest{Timeseries: series})
		require.NoError(t, err)
		resp, err := http.Post(srv.URL+"/api/v1/write", "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, b)))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	ts := func(name string, kv ...string) prompb.TimeSeries {
		s := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}}, Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Labels = append(s.Labels, prompb.Label{Name: kv[i], Value: kv[i+1]})
		}
		return s
	}
	rejected := func(reason string) float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() != "gateway_tenant_rejected_requests_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == reason {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return -1
	}

	resp := post(ts("a"), ts("b"), ts("c"))
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Empty(t, resp.Header.Get("Retry-After"))
	require.Equal(t, 1.0, rejected("series_per_request"))

	require.Equal(t, http.StatusBadRequest, post(ts("a", "x", "1", "y", "2", "z", "3")).StatusCode)
	require.Equal(t, 1.0, rejected("labels_per_series"))
	require.Equal(t, http.StatusBadRequest, post(ts("a", "x", "123456789")).StatusCode)
	require.Equal(t, 1.0, rejected("label_value_length"))

	require.Equal(t, http.StatusNoContent, post(ts("a"), ts("b")).StatusCode, "2 of the burst of 3")
	resp = post(ts("a"), ts("b"))
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "over the rate")
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Equal(t, 1.0, rejected("rate_limited"))
}
