package forward

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/receiver"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

// TestDiskMode runs the tests written for the in-memory queue with every
// queue on disk: what reaches the upstream must not depend on the mode.
func TestDiskMode(t *testing.T) {
	testDisk = true
	defer func() { testDisk = false }()
	for name, test := range map[string]func(*testing.T){
		"FanOut":                        TestFanOut,
		"WriteRelabelAndExternalLabels": TestWriteRelabelAndExternalLabels,
		"SendUnsupportedDropped":        TestSendUnsupportedDropped,
		"RetryOn5xx":                    TestRetryOn5xx,
		"NonRetryable4xxDropsOneBatch":  TestNonRetryable4xxDropsOneBatch,
		"RetryAfterOn429":               TestRetryAfterOn429,
		"TooLargeSplits":                TestTooLargeSplits,
		"OldReceiverResentAsV1":         TestOldReceiverResentAsV1,
		"PerSeriesOrder":                TestPerSeriesOrder,
		"ApplyConfigReload":             TestApplyConfigReload,
		"ApplyConfigConcurrent":         TestApplyConfigConcurrent,
	} {
		t.Run(name, test)
	}
}

// diskOpts returns Options for a disk-mode Manager on dir.
func diskOpts(dir string) Options {
	return Options{StoragePath: dir, Fsync: queue.FsyncInterval, SyncInterval: 50 * time.Millisecond}
}

// switchable is a fake upstream's responder that answers code until set
// otherwise.
type switchable struct{ code atomic.Int64 }

func (s *switchable) respond(http.ResponseWriter, *http.Request, *gotRequest, int) int {
	return int(s.code.Load())
}

// sampleSet counts samples by series and timestamp.
func sampleSet(ss []prw.Series) map[string]int {
	out := map[string]int{}
	for _, s := range ss {
		for _, x := range s.Samples {
			out[fmt.Sprintf("%s@%d", s.Labels.String(), x.Timestamp)]++
		}
	}
	return out
}

func seriesRequest(i, n int) *prw.Request {
	return prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(int64(i*n), n, "__name__", "x", "r", fmt.Sprint(i%7))}, nil)
}

// TestDiskRestartResumes: what an upstream acknowledged before a stop is not
// sent again after a restart on the same directory, and what it had not is.
func TestDiskRestartResumes(t *testing.T) {
	dir := t.TempDir()
	var sw switchable
	sw.code.Store(http.StatusNoContent)
	u := newFakeUpstream(t, sw.respond)
	cfg := testUpstream(t, "u", u.srv.URL, true)
	const n, per = 40, 5

	m1, _, metrics1, qm1 := newTestManagerOpts(t, testConfig(cfg), diskOpts(dir))
	for i := range n / 2 {
		require.NoError(t, m1.Enqueue(t.Context(), seriesRequest(i, per), "", nil))
	}
	require.Eventually(t, func() bool { return u.samples() == n/2*per }, waitFor, tick)
	eventuallyValue(t, 0, qm1.Records.WithLabelValues("u"))
	sw.code.Store(http.StatusServiceUnavailable) // the upstream goes down
	for i := n / 2; i < n; i++ {
		require.NoError(t, m1.Enqueue(t.Context(), seriesRequest(i, per), "", nil))
	}
	require.Eventually(t, func() bool { return testutil.ToFloat64(metrics1.QueueLag.WithLabelValues("u")) > 0 }, waitFor, tick, "lag rises")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	m1.Stop(ctx)
	cancel()
	require.Zero(t, testutil.ToFloat64(metrics1.DroppedSamples.WithLabelValues("u", registry.DropShutdown)), "what stays on disk is not dropped")
	firstHalf := sampleSet(u.series())
	require.Len(t, firstHalf, n/2*per)

	sw.code.Store(http.StatusNoContent) // and comes back
	m2, _, metrics2, qm2 := newTestManagerOpts(t, testConfig(cfg), diskOpts(dir))
	require.Eventually(t, func() bool { return len(sampleSet(u.series())) == n*per }, waitFor, tick)
	eventuallyValue(t, 0, qm2.Records.WithLabelValues("u"))
	eventuallyValue(t, 0, metrics2.QueueLag.WithLabelValues("u"))
	got := sampleSet(u.series())
	dups := 0
	for k, c := range got {
		if firstHalf[k] > 0 {
			require.Equal(t, 1, c, "%s was acknowledged before the restart and sent again", k)
		}
		dups += c - 1
	}
	t.Logf("%d samples, %d duplicates", len(got), dups)
	require.Equal(t, float64(n/2*per), testutil.ToFloat64(metrics2.SentSamples.WithLabelValues("u")))
	m2.Stop(t.Context())
	_, err := os.Stat(filepath.Join(dir, "queues", "u", "position"))
	require.NoError(t, err, "the read position is persisted")
}

// fillRequest returns a request of about 100 KiB of queue record that snappy
// cannot shrink much.
func fillRequest(i int) *prw.Request {
	rng := rand.New(rand.NewPCG(uint64(i), 1))
	pad := make([]byte, 400)
	var ss []prw.Series
	for j := range 200 {
		for k := range pad {
			pad[k] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[rng.IntN(62)]
		}
		ss = append(ss, floatSeries(int64(i), 1, "__name__", "fill",
			"id", fmt.Sprintf("%d-%d-", i, j), "pad", string(pad)))
	}
	return prw.NewRequest(prw.ProtoV1, ss, nil)
}

func TestDiskFullBlocks(t *testing.T) {
	u := newFakeUpstream(t, func(http.ResponseWriter, *http.Request, *gotRequest, int) int { return http.StatusServiceUnavailable })
	cfg := testUpstream(t, "u", u.srv.URL, false)
	cfg.QueueConfig.MaxBytes = 1 << 20
	cfg.QueueConfig.Capacity = 10 // the reader stops early: the disk fills
	cfg.QueueConfig.MaxShards = 1
	m, _, metrics, qm := newTestManagerOpts(t, testConfig(cfg), diskOpts(t.TempDir()))
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = m.Enqueue(t.Context(), fillRequest(i), "", nil)
	}
	require.ErrorIs(t, err, ErrQueueFull)
	var ra interface{ RetryAfter() time.Duration }
	require.ErrorAs(t, err, &ra)
	require.Positive(t, ra.RetryAfter())
	require.Equal(t, 1.0, testutil.ToFloat64(metrics.QueueFull.WithLabelValues("u")))
	require.LessOrEqual(t, testutil.ToFloat64(qm.Bytes.WithLabelValues("u")), float64(1<<20))
	require.Zero(t, testutil.ToFloat64(qm.DroppedRecords.WithLabelValues("u", queue.DropOldestReason)))
	stopSoon(t, m)
}

// stopSoon stops m, giving its flush little time: the upstream is down.
func stopSoon(t *testing.T, m *Manager) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	m.Stop(ctx)
}

func TestDiskFullDropsOldest(t *testing.T) {
	var sw switchable
	sw.code.Store(http.StatusServiceUnavailable)
	u := newFakeUpstream(t, sw.respond)
	cfg := testUpstream(t, "u", u.srv.URL, false)
	cfg.QueueConfig.MaxBytes = 1 << 20
	cfg.QueueConfig.FullPolicy = config.FullPolicyDropOldest
	cfg.QueueConfig.Capacity = 10
	cfg.QueueConfig.MaxShards = 1
	m, _, _, qm := newTestManagerOpts(t, testConfig(cfg), diskOpts(t.TempDir()))
	const n = 40
	for i := range n {
		require.NoError(t, m.Enqueue(t.Context(), fillRequest(i), "", nil), "request %d", i)
	}
	dropped := testutil.ToFloat64(qm.DroppedRecords.WithLabelValues("u", queue.DropOldestReason))
	require.Positive(t, dropped)
	require.Positive(t, testutil.ToFloat64(qm.DroppedBytes.WithLabelValues("u", queue.DropOldestReason)))

	sw.code.Store(http.StatusNoContent)
	last := fmt.Sprintf("%d-0-", n-1)
	require.Eventually(t, func() bool {
		for _, s := range u.series() {
			if s.Labels.Get("id") == last {
				return true
			}
		}
		return false
	}, waitFor, tick, "the newest request arrives")
	eventuallyValue(t, 0, qm.Records.WithLabelValues("u"))
	require.Less(t, u.samples(), n*200, "the oldest were dropped")
	t.Logf("dropped %v records; %d of %d samples arrived", dropped, u.samples(), n*200)
}

// noSpaceQueue makes Append fail as on a full disk while full is set.
type noSpaceQueue struct {
	diskQueue
	full *atomic.Bool
}

func (q noSpaceQueue) AppendAt(recs ...[]byte) (queue.Position, error) {
	if q.full.Load() {
		return queue.Position{}, fmt.Errorf("%w: write segment: %w", queue.ErrFull, syscall.ENOSPC)
	}
	return q.diskQueue.AppendAt(recs...)
}

// TestDiskNoSpace: ENOSPC is the queue-full error. When it hits the second
// upstream's append, the first keeps the request (at least once).
func TestDiskNoSpace(t *testing.T) {
	a, b := newFakeUpstream(t, nil), newFakeUpstream(t, nil)
	var full atomic.Bool
	opts := diskOpts(t.TempDir())
	opts.wrapQueue = func(q diskQueue) diskQueue { return noSpaceQueue{diskQueue: q, full: &full} }
	ua, ub := testUpstream(t, "a", a.srv.URL, false), testUpstream(t, "b", b.srv.URL, false)
	ub.QueueConfig.Storage = config.StorageDisk
	ua.QueueConfig.Storage = config.StorageMemory // a in memory, b on disk
	m, _, metrics, _ := newTestManagerOpts(t, testConfig(ua, ub), opts)

	require.NoError(t, m.Enqueue(t.Context(), seriesRequest(0, 5), "", nil))
	full.Store(true)
	err := m.Enqueue(t.Context(), seriesRequest(1, 5), "", nil)
	require.ErrorIs(t, err, ErrQueueFull)
	require.Contains(t, err.Error(), `"b"`)
	require.Equal(t, 1.0, testutil.ToFloat64(metrics.QueueFull.WithLabelValues("b")))
	full.Store(false)
	require.NoError(t, m.Enqueue(t.Context(), seriesRequest(2, 5), "", nil))
	for _, u := range []*fakeUpstream{a, b} {
		require.Eventually(t, func() bool { return u.samples() == 10 }, waitFor, tick)
	}
	// The upstream has the batch before its answer reaches the shard,
	// which gives the room back after that.
	eventuallyValue(t, 0, metrics.QueueLength.WithLabelValues("a"))
}

func TestOrphanedQueueDirectories(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "queues", "gone"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "queues", "gone", "00000000000000000001.seg"), make([]byte, 100), 0o644))
	a, b := newFakeUpstream(t, nil), newFakeUpstream(t, nil)
	ua, ub := testUpstream(t, "a", a.srv.URL, false), testUpstream(t, "b", b.srv.URL, false)
	m, reg, fm, _ := newTestManagerOpts(t, testConfig(ua, ub), diskOpts(dir))
	require.Equal(t, 1.0, testutil.ToFloat64(fm.OrphanedDirectories))
	require.Equal(t, 100.0, testutil.ToFloat64(fm.OrphanedBytes))
	require.Positive(t, upstreamSeries(t, reg, "b"))

	// b is removed: its directory stays, orphaned, and its series go.
	require.NoError(t, m.ApplyConfig(testConfig(ua)))
	require.Equal(t, 2.0, testutil.ToFloat64(fm.OrphanedDirectories))
	require.DirExists(t, filepath.Join(dir, "queues", "b"))
	require.Zero(t, upstreamSeries(t, reg, "b"))

	// Back again: it resumes its queue.
	require.NoError(t, m.ApplyConfig(testConfig(ua, ub)))
	require.Equal(t, 1.0, testutil.ToFloat64(fm.OrphanedDirectories))
	_, err := reg.Gather()
	require.NoError(t, err)
}

func TestStoragePathLocked(t *testing.T) {
	dir := t.TempDir()
	u := newFakeUpstream(t, nil)
	cfg := testConfig(testUpstream(t, "u", u.srv.URL, false))
	newTestManagerOpts(t, cfg, diskOpts(dir))

	m2 := NewManager(nil, registry.NewForwardMetrics(nil), diskOpts(dir))
	err := m2.ApplyConfig(cfg)
	require.ErrorIs(t, err, queue.ErrLocked)
	require.ErrorContains(t, err, "lock storage path")
	m2.Stop(t.Context())
}

// TestFailedReloadChangesNothing: a reload that fails on its second
// upstream leaves the first one's gauges as the running forwarder has them.
func TestFailedReloadChangesNothing(t *testing.T) {
	dir := t.TempDir()
	a := newFakeUpstream(t, nil)
	ua := testUpstream(t, "a", a.srv.URL, false)
	m, _, fm, _ := newTestManagerOpts(t, testConfig(ua), diskOpts(dir))
	capacity := fm.QueueCapacity.WithLabelValues("a")
	before := testutil.ToFloat64(capacity)
	require.Positive(t, before)

	changed := testUpstream(t, "a", a.srv.URL, false)
	changed.QueueConfig.Capacity *= 2
	// b's queue directory cannot be made: a file is in its place.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "queues", "b"), nil, 0o644))
	ub := testUpstream(t, "b", a.srv.URL, false)
	require.ErrorContains(t, m.ApplyConfig(testConfig(changed, ub)), `upstream "b"`)
	require.Equal(t, before, testutil.ToFloat64(capacity))

	require.NoError(t, m.ApplyConfig(testConfig(changed)))
	require.Equal(t, 2*before, testutil.ToFloat64(capacity))
}

// TestDiskReloadHandsOver: a changed disk-queued upstream keeps its queue,
// and what its old forwarder had read and not sent is sent by the new one.
func TestDiskReloadHandsOver(t *testing.T) {
	var sw switchable
	sw.code.Store(http.StatusServiceUnavailable)
	u := newFakeUpstream(t, sw.respond)
	cfg := testUpstream(t, "u", u.srv.URL, false)
	opts := diskOpts(t.TempDir())
	m, _, metrics, qm := newTestManagerOpts(t, testConfig(cfg), opts)
	for i := range 10 {
		require.NoError(t, m.Enqueue(t.Context(), seriesRequest(i, 5), "", nil))
	}
	next := testUpstream(t, "u", u.srv.URL, false)
	next.Headers = map[string]string{"X-Changed": "yes"}
	next.QueueConfig.MaxBytes = 2 << 20
	m.opts.FlushDeadline = 100 * time.Millisecond
	require.NoError(t, m.ApplyConfig(testConfig(next)))
	sw.code.Store(http.StatusNoContent)
	// Everything arrives from the new forwarder. (A last attempt of the old
	// one, cancelled when its drain ended, may still be answered by the
	// upstream after the switch: a duplicate, as at-least-once allows.)
	fromNew := func() map[string]int {
		var ss []prw.Series
		for _, r := range u.requests() {
			if r.header.Get("X-Changed") == "yes" {
				ss = append(ss, r.series...)
			}
		}
		return sampleSet(ss)
	}
	require.Eventually(t, func() bool { return len(fromNew()) == 50 }, waitFor, tick)
	require.Zero(t, testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("u", registry.DropShutdown)))
	eventuallyValue(t, 0, qm.Records.WithLabelValues("u"))
}

// TestDiskMetricsRegistration: building, reloading and stopping twice
// registers nothing twice, on a pedantic registry.
func TestDiskMetricsRegistration(t *testing.T) {
	u := newFakeUpstream(t, nil)
	reg := prometheus.NewPedanticRegistry()
	opts := diskOpts(t.TempDir())
	opts.QueueMetrics = queue.NewMetrics(reg)
	m := NewManager(nil, registry.NewForwardMetrics(reg), opts)
	var wg sync.WaitGroup
	for i := range 3 {
		c := testUpstream(t, "u", u.srv.URL, i%2 == 0)
		require.NoError(t, m.ApplyConfig(testConfig(c)))
		wg.Go(func() { _ = m.Enqueue(t.Context(), seriesRequest(i, 3), "", nil) })
	}
	wg.Wait()
	_, err := reg.Gather()
	require.NoError(t, err)
	m.Stop(t.Context())
	m.Stop(t.Context())
	_, err = reg.Gather()
	require.NoError(t, err)
}

// A request larger than an upstream's whole disk queue (max_bytes) is
// refused with 413, as no retry could succeed, and counted as too large;
// requests that fit are still taken.
func TestDiskRequestLargerThanQueue(t *testing.T) {
	up := newFakeUpstream(t, nil)
	u := testUpstream(t, "u", up.srv.URL, false)
	u.QueueConfig.MaxBytes = 1 << 20
	m, _, _, _ := newTestManagerOpts(t, testConfig(u), Options{StoragePath: t.TempDir()})
	rm := registry.NewReceiverMetrics(prometheus.NewRegistry())
	h := receiver.NewHandler(nil, rm, allUpstreams{m}, receiver.Options{})

	// Random label values: snappy cannot shrink them below the queue size.
	rnd := rand.New(rand.NewPCG(1, 2))
	big := &prompb.WriteRequest{}
	for i := range 12000 {
		id := make([]byte, 100)
		for j := range id {
			id[j] = "0123456789abcdef"[rnd.IntN(16)]
		}
		big.Timeseries = append(big.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "id", Value: string(id) + strconv.Itoa(i)}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: 1000}},
		})
	}
	body := rwtest.Encode(big)
	require.Greater(t, len(body), 1<<20)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, rwtest.NewHTTPRequest(prw.ProtoV1, body))
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "max_bytes")
	require.Equal(t, 1.0, testutil.ToFloat64(rm.Rejected.WithLabelValues(registry.ReasonTooLarge)))

	postV1(t, m, rwtest.V1Request(10, 1))
	require.Eventually(t, func() bool { return up.samples() == 10 }, waitFor, time.Millisecond)
}
