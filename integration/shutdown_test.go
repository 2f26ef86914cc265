//go:build integration

package integration

import (
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// samplesRequest returns a 1.0 request with n samples of series it_shutdown
// (label batch=batch), from base (ms).
func samplesRequest(batch string, base int64, n int) *prompb.WriteRequest {
	ts := prompb.TimeSeries{Labels: []prompb.Label{
		{Name: "__name__", Value: "it_shutdown"}, {Name: "batch", Value: batch}, {Name: "job", Value: "it"},
	}}
	for i := range n {
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: base + int64(i)*1000, Value: float64(i)})
	}
	return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts}}
}

// holdingSink returns a sink whose requests each wait for hold (or until the
// request is cancelled), and a channel that receives once per request when
// it arrives.
func holdingSink(t *testing.T, hold time.Duration) (*Sink, <-chan struct{}) {
	arrived := make(chan struct{}, 100)
	release := make(chan struct{})
	var once sync.Once
	sink := NewSink(t)
	// Runs before the sink's Close: release handlers still waiting.
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	sink.Hold = func(r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		timer := time.NewTimer(hold)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-release:
		case <-r.Context().Done():
		}
	}
	return sink, arrived
}

// requireNotReadySoon checks that /-/ready stops answering 200 within d of
// SIGTERM: 503 or a refused connection.
func requireNotReadySoon(t *testing.T, gw *Process, d time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for {
		resp, err := client.Get(gw.URL("/-/ready"))
		if err != nil {
			t.Logf("/-/ready after SIGTERM: %v", err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "/-/ready after SIGTERM")
			t.Logf("/-/ready after SIGTERM: %s", resp.Status)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/-/ready still 200 %v after SIGTERM", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireReadyGone checks that an exited gateway's /-/ready is refused.
func requireReadyGone(t *testing.T, gw *Process) {
	t.Helper()
	resp, err := (&http.Client{Timeout: time.Second}).Get(gw.URL("/-/ready"))
	if err == nil {
		resp.Body.Close()
		require.NotEqual(t, http.StatusOK, resp.StatusCode, "/-/ready after exit")
	}
}

// TestShutdownFlushesSlowUpstream sends SIGTERM while a slow upstream has one
// batch in flight and more queued: the gateway stops being ready, delivers
// everything within --shutdown.flush-timeout and exits 0.
func TestShutdownFlushesSlowUpstream(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	const flushTimeout = 15 * time.Second
	sink, arrived := holdingSink(t, 2*time.Second)
	gw := Gateway(t, GatewayConfig("slow", sink.URL+"/api/v1/write", protoV2),
		"--shutdown.flush-timeout="+flushTimeout.String())

	base := time.Now().Add(-time.Minute).UnixMilli()
	resp, err := PostV1(gw.URL("/api/v1/write"), samplesRequest("1", base, 10))
	require.NoError(t, err)
	require.Truef(t, resp.Status/100 == 2, "write: %d %s", resp.Status, resp.Body)
	select {
	case <-arrived:
	case <-time.After(15 * time.Second):
		t.Fatal("no request reached the upstream within 15s")
	}
	// The first batch is in flight at the slow upstream; queue more behind it.
	for _, batch := range []string{"2", "3"} {
		resp, err := PostV1(gw.URL("/api/v1/write"), samplesRequest(batch, base, 10))
		require.NoError(t, err)
		require.Truef(t, resp.Status/100 == 2, "write: %d %s", resp.Status, resp.Body)
	}

	start := time.Now()
	require.NoError(t, gw.Signal(syscall.SIGTERM))
	requireNotReadySoon(t, gw, 3*time.Second)
	code, err := gw.ExitCode(flushTimeout + 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 0, code, "exit code after SIGTERM")
	took := time.Since(start)
	require.Less(t, took, flushTimeout+2*time.Second, "exit after SIGTERM")
	requireReadyGone(t, gw)

	got, requests, errs := sink.Received()
	require.Empty(t, errs)
	samples, _, _ := got.Counts()
	require.Equal(t, 30, samples, "samples delivered before exit (%d upstream requests): %v", requests, got)
	t.Logf("exited 0 %v after SIGTERM with all 30 samples delivered in %d requests", took.Round(time.Millisecond), requests)
}

// TestShutdownStuckUpstream sends SIGTERM while the only upstream never
// answers: the gateway gives up on it after --shutdown.flush-timeout and
// exits 0.
func TestShutdownStuckUpstream(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	const flushTimeout = 3 * time.Second
	sink, arrived := holdingSink(t, time.Hour)
	gw := Gateway(t, GatewayConfig("stuck", sink.URL+"/api/v1/write", protoV2),
		"--shutdown.flush-timeout="+flushTimeout.String())

	base := time.Now().Add(-time.Minute).UnixMilli()
	resp, err := PostV1(gw.URL("/api/v1/write"), samplesRequest("1", base, 10))
	require.NoError(t, err)
	require.Truef(t, resp.Status/100 == 2, "write: %d %s", resp.Status, resp.Body)
	select {
	case <-arrived:
	case <-time.After(15 * time.Second):
		t.Fatal("no request reached the upstream within 15s")
	}
	resp, err = PostV1(gw.URL("/api/v1/write"), samplesRequest("2", base, 10))
	require.NoError(t, err)
	require.Truef(t, resp.Status/100 == 2, "write: %d %s", resp.Status, resp.Body)

	start := time.Now()
	require.NoError(t, gw.Signal(syscall.SIGTERM))
	requireNotReadySoon(t, gw, 3*time.Second)
	// The flush deadline, plus time to persist what is left and exit.
	code, err := gw.ExitCode(flushTimeout + 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, 0, code, "exit code after SIGTERM")
	took := time.Since(start)
	requireReadyGone(t, gw)
	t.Logf("exited 0 %v after SIGTERM (flush timeout %v)", took.Round(time.Millisecond), flushTimeout)
}
