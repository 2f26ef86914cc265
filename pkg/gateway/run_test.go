package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rwgateway/gateway/pkg/forward"
	"github.com/rwgateway/gateway/pkg/queue/queuetest"
)

// closedURL returns a write URL on a 127.0.0.1 port that nothing listens
// on: an upstream that is down.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr + "/api/v1/write"
}

// newDiskGateway builds, without starting, the gateway of cfgFile with its
// disk queues under storage, on a fresh pedantic registry.
func newDiskGateway(t *testing.T, cfgFile, storage string, opts Options) (*Gateway, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	opts.ConfigFile = cfgFile
	opts.Forward.StoragePath = storage
	gw, err := New(nil, reg, reg, opts)
	require.NoError(t, err)
	return gw, reg
}

// stopNow stops m without flushing anything.
func stopNow(m *forward.Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.Stop(ctx)
}

// postWrite sends one write request to url and returns the status.
func postWrite(t *testing.T, client *http.Client, url string, i int) int {
	t.Helper()
	resp, err := client.Post(url, "application/x-protobuf", bytes.NewReader(encode(t, 0, i)))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// runGateway runs gw in a goroutine and returns the channel of Run's
// result.
func runGateway(ctx context.Context, gw *Gateway) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- gw.Run(ctx) }()
	return errc
}

// TestRunListenInUseFailsAtOnce: a gateway whose listen address is taken
// returns the listen error at once, even with a disk backlog for an
// upstream that is down and a long flush timeout; it opened no queue and
// left the storage path unlocked.
func TestRunListenInUseFailsAtOnce(t *testing.T) {
	storage := filepath.Join(t.TempDir(), "data")
	cfgFile := filepath.Join(t.TempDir(), "gw.yml")
	writeConfig(t, cfgFile, closedURL(t))

	// A first gateway leaves a backlog.
	first, _ := newDiskGateway(t, cfgFile, storage, Options{})
	require.NoError(t, first.start())
	srv := httptest.NewServer(first.routes)
	for i := range 5 {
		require.Equal(t, http.StatusNoContent, postWrite(t, srv.Client(), srv.URL+"/api/v1/write", i))
	}
	srv.Close()
	stopNow(first.fwd)
	backlog := queuetest.SegmentBytes(t, storage)
	require.Positive(t, backlog)

	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer held.Close()
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	second, _ := newDiskGateway(t, cfgFile, storage, Options{ListenAddress: held.Addr().String(), FlushTimeout: time.Hour})
	select {
	case err = <-runGateway(context.Background(), second):
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10s after its listen address was found taken")
	}
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.ErrorContains(t, err, "listen")
	require.Equal(t, backlog, queuetest.SegmentBytes(t, storage), "the backlog is untouched")

	// Nothing holds the storage path: a third gateway starts on it.
	third, _ := newDiskGateway(t, cfgFile, storage, Options{})
	require.NoError(t, third.start())
	stopNow(third.fwd)
}

// TestRunShutdownWithinFlushTimeout cancels Run while a request is still
// being read and the only upstream never answers: the server's shutdown and
// the forwarders' flush share one deadline, so Run returns after
// FlushTimeout, not twice that.
func TestRunShutdownWithinFlushTimeout(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const flushTimeout = 2 * time.Second

	arrived := make(chan struct{}, 1)
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read to the end: only then does the server notice a client
		// that goes away, and end r's context.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	defer stuck.Close()
	cfgFile := filepath.Join(t.TempDir(), "gw.yml")
	writeConfig(t, cfgFile, stuck.URL)
	storage := filepath.Join(t.TempDir(), "data")
	gw, reg := newDiskGateway(t, cfgFile, storage, Options{FlushTimeout: flushTimeout, ReadTimeout: time.Minute})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gw.listen = func(string, string) (net.Listener, error) { return ln, nil }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := runGateway(ctx, gw)
	base := "http://" + ln.Addr().String()
	client := &http.Client{}
	defer client.CloseIdleConnections()
	require.Eventually(t, func() bool {
		resp, err := client.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)

	for i := range 3 {
		require.Equal(t, http.StatusNoContent, postWrite(t, client, base+"/api/v1/write", i))
	}
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reached the upstream")
	}
	// A request whose body never ends keeps the server's shutdown waiting
	// until the deadline.
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprint(conn, "POST /api/v1/write HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\npartial")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return gaugeValue(t, reg, "gateway_http_requests_in_flight") == 1 },
		10*time.Second, 10*time.Millisecond, "the slow request is being served")

	start := time.Now()
	cancel()
	select {
	case err = <-errc:
	case <-time.After(3 * flushTimeout):
		t.Fatalf("Run still running %v after cancel", 3*flushTimeout)
	}
	took := time.Since(start)
	require.NoError(t, err)
	require.GreaterOrEqual(t, took, flushTimeout, "the in-flight request was waited for until the deadline")
	require.Less(t, took, flushTimeout+time.Second, "one deadline for the server and the forwarders")
	require.Positive(t, queuetest.SegmentBytes(t, storage), "the disk queue keeps what was not sent")
	_, err = client.Get(base + "/-/ready")
	require.Error(t, err, "the listener is closed")
	t.Logf("Run returned %v after cancel (flush timeout %v)", took.Round(time.Millisecond), flushTimeout)
}

// TestStartFailureStopsWhatStarted: when the forwarders cannot start (a
// queue directory that cannot be created), start returns the error and
// leaves nothing running and the storage path unlocked.
func TestStartFailureStopsWhatStarted(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	storage := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.MkdirAll(filepath.Join(storage, "queues"), 0o755))
	// up1's queue directory is a file.
	require.NoError(t, os.WriteFile(filepath.Join(storage, "queues", "up1"), nil, 0o600))
	cfgFile := filepath.Join(t.TempDir(), "gw.yml")
	writeConfig(t, cfgFile, closedURL(t), closedURL(t))

	gw, _ := newDiskGateway(t, cfgFile, storage, Options{})
	err := gw.start()
	require.ErrorContains(t, err, `upstream "up1"`)
	require.ErrorIs(t, gw.Reload(context.Background()), errNotStarted, "a gateway that did not start does not reload")

	writeConfig(t, cfgFile, closedURL(t))
	next, _ := newDiskGateway(t, cfgFile, storage, Options{})
	require.NoError(t, next.start(), "the storage path was unlocked")
	stopNow(next.fwd)
}

// TestNewStartsNothing: New fails on a tenant whose token file is missing
// without having started anything or touched the storage path.
func TestNewStartsNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	storage := filepath.Join(t.TempDir(), "data")
	cfgFile := filepath.Join(t.TempDir(), "gw.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(fmt.Sprintf(`upstreams:
- {name: up, url: %s}
tenants:
  tenants:
  - {id: a, bearer_token_files: [missing-token]}
`, closedURL(t))), 0o600))
	reg := prometheus.NewPedanticRegistry()
	_, err := New(nil, reg, reg, Options{ConfigFile: cfgFile, Forward: forward.Options{StoragePath: storage}})
	require.ErrorContains(t, err, "bearer_token_files")
	_, err = os.Stat(storage)
	require.ErrorIs(t, err, fs.ErrNotExist, "the storage path was not touched")
}

// gaugeValue returns the value of the unlabelled gauge name in g.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
