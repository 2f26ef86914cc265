package forward

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	pmodel "github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/registry"
)

// connTracker counts an httptest server's client connections.
type connTracker struct {
	mu         sync.Mutex
	open, peak int
	total      int
}

func (c *connTracker) track(_ net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		c.total++
		c.open++
		c.peak = max(c.peak, c.open)
	case http.StateClosed, http.StateHijacked:
		c.open--
	}
}

// TestNoConnectionOrFDLeak sends thousands of batches to an upstream that
// answers 204, 500, 400, 429, too slowly, or resets the connection, and
// checks that the client's connection pool stays bounded and that nothing
// is left open after Stop.
func TestNoConnectionOrFDLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fdsBefore := openFDs(t)

	const (
		shards  = 4
		batches = 3000
		timeout = 40 * time.Millisecond
	)
	var (
		calls, timeouts, resets atomic.Int64
		tracker                 connTracker
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		_, _ = drainBody(r)
		switch n % 20 {
		case 3, 13:
			w.WriteHeader(http.StatusInternalServerError)
		case 5:
			http.Error(w, "bad", http.StatusBadRequest)
		case 7:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		case 11:
			timeouts.Add(1)
			select { // past remote_timeout: the client gives up and closes
			case <-r.Context().Done():
			case <-time.After(10 * timeout):
			}
		case 17:
			resets.Add(1)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	srv.Config.ConnState = tracker.track
	srv.Start()

	cfg := testUpstream(t, "u", srv.URL, false)
	cfg.RemoteTimeout = pmodel.Duration(timeout)
	cfg.QueueConfig.MaxShards = shards
	cfg.QueueConfig.MaxSamplesPerSend = 1
	cfg.QueueConfig.MinBackoff = pmodel.Duration(time.Millisecond)
	cfg.QueueConfig.MaxBackoff = pmodel.Duration(2 * time.Millisecond)
	m, _, metrics := newTestManager(t, testConfig(cfg))

	for i := range batches / 10 {
		var ss []prw.Series
		for j := range 10 {
			ss = append(ss, floatSeries(int64(i), 1, "__name__", "x", "j", intString(j)))
		}
		req := prw.NewRequest(prw.ProtoV1, ss, nil)
		require.NoError(t, m.Enqueue(t.Context(), req, "", nil))
	}
	done := func() float64 {
		return testutil.ToFloat64(metrics.SentSamples.WithLabelValues("u")) +
			testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("u", registry.DropHTTPStatus))
	}
	require.Eventually(t, func() bool { return done() == batches }, 45*time.Second, 10*time.Millisecond)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	m.Stop(ctx)
	srv.Close()

	tracker.mu.Lock()
	defer tracker.mu.Unlock()
	t.Logf("requests=%d connections=%d peak=%d timeouts=%d resets=%d", calls.Load(), tracker.total, tracker.peak, timeouts.Load(), resets.Load())
	require.GreaterOrEqual(t, calls.Load(), int64(batches))
	// The server notices a connection the client closed a little late, so
	// it may see a replacement open before the old one closes.
	require.LessOrEqual(t, tracker.peak, shards+connSlack+2, "connections open at once")
	// Every connection is reused until a timeout or a reset kills it; the
	// transport may dial a spare while a shard waits for a connection to come
	// back, hence the slack (more under -race on a loaded machine). A leak
	// would open one per request: ten times this bound.
	killed := timeouts.Load() + resets.Load()
	require.LessOrEqual(t, int64(tracker.total), killed+killed/10+20, "connections opened")
	require.Eventually(t, func() bool { return openFDs(t) <= fdsBefore+3 }, 5*time.Second, 10*time.Millisecond, "open fds: before %d", fdsBefore)
}
