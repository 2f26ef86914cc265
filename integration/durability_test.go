//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// gatewayOn starts bin/gateway with config and --storage.path=storage, so
// that a restarted gateway finds the queues of the one before.
func gatewayOn(t *testing.T, name, storage, config string, extraArgs ...string) *Process {
	t.Helper()
	dir := t.TempDir()
	cfg := writeFile(t, dir, "gateway.yml", config)
	return StartProcess(t, ProcessOptions{
		Name: name,
		Bin:  gatewayBin(t),
		Dir:  dir,
		Args: func(addr string) []string {
			return append([]string{
				"--config.file=" + cfg,
				"--web.listen-address=" + addr,
				"--storage.path=" + storage,
				"--log.level=debug",
			}, extraArgs...)
		},
		ReadyPath: "/-/ready",
	})
}

// kill9 kills p with SIGKILL, as a crash would, and waits for it.
func kill9(t *testing.T, p *Process) {
	t.Helper()
	require.NoError(t, p.Signal(syscall.SIGKILL))
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still running 10s after SIGKILL", p.Name)
	}
}

// lateSink starts a 2.0 sink on addr, a port chosen before the gateway
// started: the upstream was down until now. While failing is set it
// answers 503.
func lateSink(t *testing.T, addr string, failing *atomic.Bool) *Sink {
	t.Helper()
	s := &Sink{t: t, received: Received{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing != nil && failing.Load() {
			http.Error(w, "outage", http.StatusServiceUnavailable)
			return
		}
		s.serve(w, r)
	}))
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err, "listen on the sink's port")
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	s.Server = srv
	t.Cleanup(srv.Close)
	return s
}

// durableRequest is request i: series it_durable{req="i"} with n samples
// from base (ms), one per second. Every request has its own series, so
// receivers that refuse out-of-order samples accept any delivery order.
func durableRequest(i, n int, base int64) *prompb.WriteRequest {
	ts := prompb.TimeSeries{Labels: []prompb.Label{
		{Name: "__name__", Value: "it_durable"}, {Name: "job", Value: "it"}, {Name: "req", Value: strconv.Itoa(i)},
	}}
	for j := range n {
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: base + int64(j)*1000, Value: float64(i*n + j)})
	}
	return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts}}
}

// sendDurable posts requests [from, to) and returns the keys
// (series label string without gw, and timestamp) of the samples answered
// with 2xx.
func sendDurable(t *testing.T, gw *Process, from, to, n int, base int64, accepted map[string]bool) {
	t.Helper()
	for i := from; i < to; i++ {
		req := durableRequest(i, n, base)
		resp, err := PostV1(gw.URL("/api/v1/write"), req)
		require.NoError(t, err)
		if resp.Status/100 != 2 {
			t.Logf("request %d: %d %s (not counted)", i, resp.Status, resp.Body)
			continue
		}
		for _, s := range req.Timeseries[0].Samples {
			accepted[fmt.Sprintf(`{__name__="it_durable", gw="test", job="it", req="%d"}@%d`, i, s.Timestamp)] = true
		}
	}
}

// sinkSamples returns the samples the sink received, by series and
// timestamp, with the number of times each arrived.
func sinkSamples(s *Sink) map[string]int {
	got, _, _ := s.Received()
	out := map[string]int{}
	for series, r := range got {
		for _, smp := range r.Samples {
			out[series+"@"+strings.TrimPrefix(strings.Fields(smp)[0], "t=")]++
		}
	}
	return out
}

// requireAllArrived waits until every accepted sample is in the sink and
// reports duplicates.
func requireAllArrived(t *testing.T, sink *Sink, accepted map[string]bool, timeout time.Duration) {
	t.Helper()
	var missing int
	err := eventually(timeout, 200*time.Millisecond, func() error {
		got := sinkSamples(sink)
		missing = 0
		for k := range accepted {
			if got[k] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d accepted samples missing", missing, len(accepted))
		}
		return nil
	})
	require.NoError(t, err)
	got := sinkSamples(sink)
	dups, extra := 0, 0
	for k, c := range got {
		dups += c - 1
		if !accepted[k] {
			extra++
		}
	}
	_, _, errs := sink.Received()
	require.Empty(t, errs, "sink refused requests")
	t.Logf("all %d accepted samples arrived; %d duplicate deliveries, %d samples not answered 2xx but delivered", len(accepted), dups, extra)
}

// TestDurabilityKill9 accepts writes while the upstream is down, kills the
// gateway with SIGKILL, restarts it on the same --storage.path, and only then
// starts the upstream: every sample answered 2xx arrives.
func TestDurabilityKill9(t *testing.T) {
	requireIntegration(t)
	t.Parallel()
	storage := filepath.Join(t.TempDir(), "data")
	sinkAddr, err := freeAddr()
	require.NoError(t, err)
	cfg := GatewayConfig("sink", "http://"+sinkAddr+"/api/v1/write", protoV2)

	gw := gatewayOn(t, "gateway-1", storage, cfg)
	const requests, per = 200, 10
	base := time.Now().Add(-time.Hour).UnixMilli()
	accepted := map[string]bool{}
	sendDurable(t, gw, 0, requests, per, base, accepted)
	require.Len(t, accepted, requests*per, "the disk queue takes everything")
	kill9(t, gw)

	gw2 := gatewayOn(t, "gateway-2", storage, cfg)
	sink := lateSink(t, sinkAddr, nil)
	requireAllArrived(t, sink, accepted, 60*time.Second)
	require.Eventually(t, func() bool { return gatewayMetric(t, gw2, "gateway_queue_records", "sink") == 0 }, 30*time.Second, 200*time.Millisecond)
}

// TestDurabilityKill9Prometheus is TestDurabilityKill9 with a real
// Prometheus 2.42 upstream, started late on a port chosen before: it ends
// up holding every accepted sample.
func TestDurabilityKill9Prometheus(t *testing.T) {
	requireIntegration(t)
	t.Parallel()
	promBin := peerBin(t, "PROMETHEUS_BIN", "prometheus")
	storage := filepath.Join(t.TempDir(), "data")
	promAddr, err := freeAddr()
	require.NoError(t, err)
	cfg := GatewayConfig("prom", "http://"+promAddr+"/api/v1/write", protoV1)

	gw := gatewayOn(t, "gateway-1", storage, cfg)
	const requests, per = 100, 10
	base := time.Now().Add(-2 * time.Minute).UnixMilli()
	accepted := map[string]bool{}
	sendDurable(t, gw, 0, requests, per, base, accepted)
	require.Len(t, accepted, requests*per)
	kill9(t, gw)

	gatewayOn(t, "gateway-2", storage, cfg)
	dir := t.TempDir()
	promCfg := writeFile(t, dir, "prometheus.yml", upstreamPrometheusConfig(promAddr))
	prom := StartProcess(t, ProcessOptions{
		Addr: promAddr,
		Name: "prometheus-upstream",
		Bin:  promBin,
		Dir:  dir,
		Args: func(addr string) []string {
			return []string{"--config.file=" + promCfg, "--web.listen-address=" + addr,
				"--storage.tsdb.path=" + filepath.Join(dir, "data"), "--web.enable-remote-write-receiver"}
		},
		ReadyPath:    "/-/ready",
		ReadyTimeout: 60 * time.Second,
	})
	const q = `sum(count_over_time(it_durable{gw="test"}[10m]))`
	var last string
	err = eventually(60*time.Second, time.Second, func() error {
		got, err := queryInstant(prom.URL(""), q, time.Time{})
		if err != nil {
			return err
		}
		if len(got) == 1 {
			last = got[0].Value
		}
		if last != strconv.Itoa(len(accepted)) {
			return fmt.Errorf("%s = %q, want %d", q, last, len(accepted))
		}
		return nil
	})
	require.NoError(t, err)
	t.Logf("%s = %s: every accepted sample is in Prometheus", q, last)
}

// TestDurabilityOutage: the upstream answers 503 for 5 seconds while writes
// continue; afterwards it has every accepted sample, and the queue lag rose
// during the outage and is back to 0.
func TestDurabilityOutage(t *testing.T) {
	requireIntegration(t)
	t.Parallel()
	var failing atomic.Bool
	sinkAddr, err := freeAddr()
	require.NoError(t, err)
	sink := lateSink(t, sinkAddr, &failing)
	gw := gatewayOn(t, "gateway", filepath.Join(t.TempDir(), "data"),
		GatewayConfig("sink", "http://"+sinkAddr+"/api/v1/write", protoV2))

	base := time.Now().Add(-time.Hour).UnixMilli()
	accepted := map[string]bool{}
	const per = 5
	i := 0
	send := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); i++ {
			sendDurable(t, gw, i, i+1, per, base, accepted)
			time.Sleep(20 * time.Millisecond)
		}
	}
	send(time.Second)
	failing.Store(true)
	outage := time.Now()
	send(5 * time.Second)
	maxLag := gatewayMetric(t, gw, "gateway_upstream_queue_lag_seconds", "sink")
	failing.Store(false)
	t.Logf("outage of %v: lag %.1fs", time.Since(outage).Round(time.Millisecond), maxLag)
	send(time.Second)
	require.Len(t, accepted, i*per, "a disk queue answers 2xx throughout the outage")
	require.GreaterOrEqual(t, maxLag, 3.0, "the lag rose during the outage")

	requireAllArrived(t, sink, accepted, 60*time.Second)
	require.Eventually(t, func() bool {
		return gatewayMetric(t, gw, "gateway_upstream_queue_lag_seconds", "sink") == 0
	}, 30*time.Second, 200*time.Millisecond, "the lag returns to 0")
}

// TestDurabilityStoragePathLocked: a second gateway on the same
// --storage.path exits at once, non-zero, saying why.
func TestDurabilityStoragePathLocked(t *testing.T) {
	requireIntegration(t)
	t.Parallel()
	storage := filepath.Join(t.TempDir(), "data")
	sink := NewSink(t)
	cfg := GatewayConfig("sink", sink.URL+"/api/v1/write", protoV2)
	gatewayOn(t, "gateway-1", storage, cfg)

	dir := t.TempDir()
	addr, err := freeAddr()
	require.NoError(t, err)
	cmd := exec.Command(gatewayBin(t), "--config.file="+writeFile(t, dir, "gateway.yml", cfg),
		"--web.listen-address="+addr, "--storage.path="+storage)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("second gateway still running 5s after start; stderr:\n%s", stderr.String())
	}
	require.Error(t, err)
	require.NotZero(t, cmd.ProcessState.ExitCode())
	require.Contains(t, stderr.String(), "directory is locked", "stderr:\n%s", stderr.String())
	require.Contains(t, stderr.String(), "lock storage path")
	t.Logf("second gateway: %v; stderr: %s", err, strings.TrimSpace(stderr.String()))
}

// gatewayMetric scrapes gw's /metrics and returns the value of name's
// series with upstream=upstream, -1 if absent.
func gatewayMetric(t *testing.T, gw *Process, name, upstream string) float64 {
	t.Helper()
	return gatewayMetricWith(t, gw, name, "upstream", upstream)
}

// gatewayMetricWith returns the value of name's series with label=value,
// -1 if absent.
func gatewayMetricWith(t *testing.T, gw *Process, name, label, value string) float64 {
	t.Helper()
	resp, err := apiClient.Get(gw.URL("/metrics"))
	require.NoError(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	mf, ok := families[name]
	if !ok {
		return -1
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				if g := m.GetGauge(); g != nil {
					return g.GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}
