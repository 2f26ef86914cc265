package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

// countingRegisterer counts every registration that reaches the registry.
type countingRegisterer struct {
	prometheus.Registerer
	n atomic.Int64
}

func (c *countingRegisterer) Register(col prometheus.Collector) error {
	c.n.Add(1)
	return c.Registerer.Register(col)
}

func (c *countingRegisterer) MustRegister(cols ...prometheus.Collector) {
	c.n.Add(int64(len(cols)))
	c.Registerer.MustRegister(cols...)
}

func writeConfig(t *testing.T, path string, upstreams ...string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("upstreams:\n")
	for i, u := range upstreams {
		fmt.Fprintf(&b, "- name: up%d\n  url: %s\n  queue_config: {batch_send_deadline: 10ms, max_shards: 4, capacity: 100000}\n", i, u)
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
}

// startGateway builds the gateway of the config file cfgFile on a pedantic
// registry, starts its forwarders (memory queues) and serves its routes
// without Run; both stop at cleanup.
func startGateway(t *testing.T, cfgFile string) (*Gateway, *prometheus.Registry, *httptest.Server) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	gw, err := New(nil, reg, reg, Options{ConfigFile: cfgFile})
	require.NoError(t, err)
	require.NoError(t, gw.start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gw.fwd.Stop(ctx)
	})
	srv := httptest.NewServer(gw.routes)
	t.Cleanup(srv.Close)
	return gw, reg, srv
}

// TestCollectorsRegisteredOnceUnderLoad builds the whole gateway against a
// pedantic registry, then sends 10,000 concurrent write requests and reloads
// the config while they run: no collector may be registered after start,
// and no family may be exposed twice.
func TestCollectorsRegisteredOnceUnderLoad(t *testing.T) {
	var received atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		dec, err := snappy.Decode(nil, body)
		if err == nil {
			var req prompb.WriteRequest
			if proto.Unmarshal(dec, &req) == nil {
				for _, ts := range req.Timeseries {
					received.Add(int64(len(ts.Samples)))
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer upstream.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer other.Close()

	cfgFile := filepath.Join(t.TempDir(), "gw.yml")
	writeConfig(t, cfgFile, upstream.URL+"/api/v1/write")

	pedantic := prometheus.NewPedanticRegistry()
	reg := &countingRegisterer{Registerer: pedantic}
	gw, err := New(nil, reg, pedantic, Options{ConfigFile: cfgFile})
	require.NoError(t, err)
	registered := reg.n.Load()
	require.Positive(t, registered)
	require.NoError(t, gw.start())
	defer gw.fwd.Stop(context.Background())

	srv := httptest.NewServer(gw.routes)
	defer srv.Close()
	fdsBefore := openFDs(t)

	const clients, perClient = 8, 1250
	var wg sync.WaitGroup
	var failed atomic.Int64
	for c := range clients {
		wg.Go(func() {
			client := &http.Client{}
			for i := range perClient {
				body := encode(t, c, i)
				resp, err := client.Post(srv.URL+"/api/v1/write", "application/x-protobuf", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					failed.Add(1)
				}
			}
		})
	}
	// Reload while writes run: add an upstream, then remove it again.
	wg.Go(func() {
		for i := range 20 {
			if i%2 == 0 {
				writeConfig(t, cfgFile, upstream.URL+"/api/v1/write", other.URL+"/api/v1/write")
			} else {
				writeConfig(t, cfgFile, upstream.URL+"/api/v1/write")
			}
			if err := gw.Reload(context.Background()); err != nil {
				failed.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	wg.Wait()
	require.Zero(t, failed.Load())
	// Every client's keep-alive connection to the gateway and the pooled
	// connections to the two upstreams may stay open; nothing else may.
	require.LessOrEqual(t, openFDs(t), fdsBefore+clients+2*4+8, "file descriptors grew")
	require.Equal(t, registered, reg.n.Load(), "a collector was registered after start")

	require.Eventually(t, func() bool { return received.Load() == clients*perClient*2 }, 20*time.Second, 20*time.Millisecond)

	// The pedantic registry checks consistency on every gather; the
	// exposition must not show any family twice.
	_, err = pedantic.Gather()
	require.NoError(t, err)
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "# TYPE "); ok {
			name, _, _ = strings.Cut(name, " ")
			require.False(t, seen[name], "family %s exposed twice", name)
			seen[name] = true
		}
	}
	require.NoError(t, sc.Err())
	require.True(t, seen["gateway_receiver_requests_total"])
	require.InDelta(t, float64(clients*perClient), testutil.ToFloat64(mustCounter(t, pedantic, "gateway_receiver_requests_total")), 0)
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// mustCounter sums a counter family across its series.
func mustCounter(t *testing.T, g prometheus.Gatherer, name string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sum"})
	c.Add(sum)
	return c
}

func encode(t *testing.T, client, i int) []byte {
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels: []prompb.Label{
			{Name: "__name__", Value: "test_metric"},
			{Name: "client", Value: fmt.Sprint(client)},
		},
		Samples: []prompb.Sample{{Value: float64(i), Timestamp: int64(i)}, {Value: float64(i), Timestamp: int64(i) + 1}},
	}}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Error(err)
	}
	return snappy.Encode(nil, b)
}

// A reload with a bad file is refused, counted, and the old upstreams keep
// receiving; a good reload after it takes effect.
func TestBadReloadKeepsOldConfig(t *testing.T) {
	got := make(chan string, 100)
	sink := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			got <- name
			w.WriteHeader(http.StatusNoContent)
		}))
	}
	a, b := sink("a"), sink("b")
	t.Cleanup(a.Close) // after the gateway's Stop
	t.Cleanup(b.Close)

	cfgFile := filepath.Join(t.TempDir(), "gw.yml")
	writeConfig(t, cfgFile, a.URL)
	_, reg, srv := startGateway(t, cfgFile)

	post := func(path string) int {
		resp, err := http.Post(srv.URL+path, "application/x-protobuf", bytes.NewReader(encode(t, 0, 1)))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Logf("%s: %d %s", path, resp.StatusCode, body)
		}
		return resp.StatusCode
	}
	gauge := func(name string) float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}

	require.NoError(t, os.WriteFile(cfgFile, []byte("upstreams:\n- name: a\n  url: ftp://nowhere\n"), 0o600))
	require.Equal(t, http.StatusInternalServerError, post("/-/reload"))
	require.Equal(t, 0.0, gauge("gateway_config_last_reload_successful"))

	require.Equal(t, http.StatusNoContent, post("/api/v1/write"))
	require.Equal(t, "a", <-got, "the old upstream still receives after a failed reload")

	writeConfig(t, cfgFile, b.URL)
	require.Equal(t, http.StatusOK, post("/-/reload"))
	require.Equal(t, 1.0, gauge("gateway_config_last_reload_successful"))
	require.Equal(t, http.StatusNoContent, post("/api/v1/write"))
	require.Equal(t, "b", <-got, "the new upstream receives after a good reload")
}

// A reload changes the receiver's limits for the requests after it.
func TestReloadReceiverLimits(t *testing.T) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(sink.Close) // after the gateway's Stop
	cfgFile := filepath.Join(t.TempDir(), "gw.yml")
	writeConfig(t, cfgFile, sink.URL)
	_, _, srv := startGateway(t, cfgFile)

	body := encode(t, 0, 1)
	post := func(path string, b []byte) int {
		resp, err := http.Post(srv.URL+path, "application/x-protobuf", bytes.NewReader(b))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusNoContent, post("/api/v1/write", body))

	raw, err := os.ReadFile(cfgFile)
	require.NoError(t, err)
	limited := fmt.Sprintf("receiver:\n  max_request_bytes: %d\n%s", len(body)-1, raw)
	require.NoError(t, os.WriteFile(cfgFile, []byte(limited), 0o600))
	require.Equal(t, http.StatusOK, post("/-/reload", nil))
	require.Equal(t, http.StatusRequestEntityTooLarge, post("/api/v1/write", body))

	require.NoError(t, os.WriteFile(cfgFile, raw, 0o600))
	require.Equal(t, http.StatusOK, post("/-/reload", nil))
	require.Equal(t, http.StatusNoContent, post("/api/v1/write", body))
}

// 2.0 requests are read as 1.0 data while no upstream takes 2.0; a reload
// that adds a 2.0 upstream has them read into the form again, so that it
// receives what only 2.0 carries (here, start timestamps).
func TestReloadAdds2Upstream(t *testing.T) {
	starts := make(chan int64, 10)
	sink2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		msg, err := snappy.Decode(nil, body)
		var req writev2.Request
		if err == nil {
			err = req.Unmarshal(msg)
		}
		if err != nil || len(req.Timeseries) == 0 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set(prw.HeaderSamplesWritten, fmt.Sprint(len(req.Timeseries[0].Samples)))
		w.Header().Set(prw.HeaderHistogramsWritten, "0")
		w.Header().Set(prw.HeaderExemplarsWritten, "0")
		w.WriteHeader(http.StatusNoContent)
		starts <- req.Timeseries[0].Samples[0].StartTimestamp
	}))
	t.Cleanup(sink2.Close)
	sink1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(sink1.Close)
	cfgFile := filepath.Join(t.TempDir(), "gw.yml")
	writeConfig(t, cfgFile, sink1.URL)
	gw, _, srv := startGateway(t, cfgFile)
	require.True(t, gw.handler.Options().PlainV2, "no upstream takes 2.0")

	post := func(path string, b []byte, ct string) int {
		resp, err := http.Post(srv.URL+path, ct, bytes.NewReader(b))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	raw, err := os.ReadFile(cfgFile)
	require.NoError(t, err)
	v2 := fmt.Sprintf("%s- name: v2\n  url: %s\n  protobuf_message: %s\n  queue_config: {batch_send_deadline: 10ms}\n", raw, sink2.URL, config.ProtobufMessageV2)
	require.NoError(t, os.WriteFile(cfgFile, []byte(v2), 0o600))
	require.Equal(t, http.StatusOK, post("/-/reload", nil, ""))
	require.False(t, gw.handler.Options().PlainV2)

	req := rwtest.V2Request(1, 1)
	require.Equal(t, http.StatusNoContent, post("/api/v1/write", rwtest.Encode(req), prw.ContentTypeV2))
	select {
	case st := <-starts:
		require.Equal(t, rwtest.StartTimestamp, st, "the start timestamp reaches the 2.0 upstream")
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reached the 2.0 upstream")
	}
}
