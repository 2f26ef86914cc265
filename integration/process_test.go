//go:build integration

package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/queue/queuetest"
)

// processDownURL returns a write URL on a 127.0.0.1 port that nothing
// listens on: an upstream that is down.
func processDownURL(t *testing.T) string {
	t.Helper()
	addr, err := freeAddr()
	require.NoError(t, err)
	return "http://" + addr + "/api/v1/write"
}

// processGateway starts bin/gateway with config and its disk queues under
// storage, and waits for /-/ready.
func processGateway(t *testing.T, storage, config string, extraArgs ...string) *Process {
	t.Helper()
	dir := t.TempDir()
	cfg := writeFile(t, dir, "gateway.yml", config)
	return StartProcess(t, ProcessOptions{
		Name: "gateway",
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

// processWrite sends n requests of 10 samples each to gw and requires 2xx.
func processWrite(t *testing.T, gw *Process, n int) {
	t.Helper()
	base := time.Now().Add(-time.Minute).UnixMilli()
	for i := range n {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "it_process"}, {Name: "job", Value: "it"}}}
		for j := range 10 {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: base + int64(i*10+j)*1000, Value: float64(j)})
		}
		resp, err := PostV1(gw.URL("/api/v1/write"), &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts}})
		require.NoError(t, err)
		require.Truef(t, resp.Status/100 == 2, "write: %d %s", resp.Status, resp.Body)
	}
}

// TestProcessListenInUseWithBacklog starts the gateway on a disk backlog
// whose upstream is down, on a listen address that is taken: it must exit
// non-zero at once, saying why, and leave the backlog as it was.
func TestProcessListenInUseWithBacklog(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	storage := filepath.Join(t.TempDir(), "data")
	config := GatewayConfig("down", processDownURL(t), protoV2)
	first := processGateway(t, storage, config, "--shutdown.flush-timeout=1s")
	processWrite(t, first, 3)
	first.Stop(t, 10*time.Second)
	code, err := first.ExitCode(time.Second) // it has exited: Stop waited
	require.NoError(t, err)
	require.Equal(t, 0, code, "first gateway's exit code")
	backlog := queuetest.SegmentBytes(t, storage)
	require.Positive(t, backlog, "the first gateway left a disk backlog")

	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer held.Close()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "gateway.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	defer logFile.Close()
	cmd := exec.Command(gatewayBin(t),
		"--config.file="+writeFile(t, dir, "gateway.yml", config),
		"--web.listen-address="+held.Addr().String(),
		"--storage.path="+storage,
		"--shutdown.flush-timeout=1h",
		"--log.level=debug")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	readLog := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("gateway still running 30s after start on a taken address; log:\n%s", readLog())
	}
	took := time.Since(start)
	log := readLog()
	require.Error(t, err, "log:\n%s", log)
	require.NotZero(t, cmd.ProcessState.ExitCode(), "log:\n%s", log)
	require.Contains(t, log, "address already in use", "log:\n%s", log)
	require.Contains(t, log, "listen")
	require.Equal(t, backlog, queuetest.SegmentBytes(t, storage), "the backlog is untouched")
	t.Logf("exited %d %v after start: %s", cmd.ProcessState.ExitCode(), took.Round(time.Millisecond), strings.TrimSpace(log))
}

// processInFlight returns the gateway's gateway_http_requests_in_flight,
// the scrape that reads it excluded.
func processInFlight(t *testing.T, gw *Process) int {
	t.Helper()
	resp, err := readyClient.Get(gw.URL("/metrics"))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "gateway_http_requests_in_flight "); ok {
			n, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return int(n) - 1
		}
	}
	t.Fatal("no gateway_http_requests_in_flight")
	return 0
}

// TestProcessShutdownBacklogUpstreamDown sends SIGTERM to a gateway whose
// only upstream is down, with data queued on disk and a request whose body
// never ends: the server's shutdown and the flush share one deadline, so it
// exits 0 within --shutdown.flush-timeout and a little, and the data stays
// queued.
func TestProcessShutdownBacklogUpstreamDown(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	const flushTimeout = 3 * time.Second
	storage := filepath.Join(t.TempDir(), "data")
	gw := processGateway(t, storage, GatewayConfig("down", processDownURL(t), protoV2),
		"--shutdown.flush-timeout="+flushTimeout.String())
	processWrite(t, gw, 5)

	conn, err := net.Dial("tcp", gw.Addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprint(conn, "POST /api/v1/write HTTP/1.1\r\nHost: gateway\r\n"+
		"Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: 1000\r\n\r\npartial")
	require.NoError(t, err)
	require.NoError(t, eventually(10*time.Second, 50*time.Millisecond, func() error {
		if n := processInFlight(t, gw); n != 1 {
			return fmt.Errorf("%d requests in flight, want the slow one", n)
		}
		return nil
	}))

	start := time.Now()
	require.NoError(t, gw.Signal(syscall.SIGTERM))
	code, err := gw.ExitCode(flushTimeout + 10*time.Second)
	require.NoError(t, err)
	took := time.Since(start)
	require.Equal(t, 0, code, "exit code after SIGTERM")
	require.Less(t, took, flushTimeout+2*time.Second, "exit after SIGTERM")
	require.Positive(t, queuetest.SegmentBytes(t, storage), "what could not be sent stays on disk")
	t.Logf("exited 0 %v after SIGTERM (flush timeout %v)", took.Round(time.Millisecond), flushTimeout)
}
