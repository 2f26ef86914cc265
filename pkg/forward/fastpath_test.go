package forward

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	pmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/receiver"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

// postV1 sends wr through a receiver handler to m, as the gateway does.
func postV1(t *testing.T, m *Manager, wr *prompb.WriteRequest) {
	t.Helper()
	h := receiver.NewHandler(nil, registry.NewReceiverMetrics(prometheus.NewRegistry()), allUpstreams{m}, receiver.Options{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, rwtest.NewHTTPRequest(prw.ProtoV1, rwtest.Encode(wr)))
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
}

// marshalledSeries returns each series of wr as its client marshals it.
func marshalledSeries(t *testing.T, wr *prompb.WriteRequest) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range wr.Timeseries {
		b, err := wr.Timeseries[i].Marshal()
		require.NoError(t, err)
		out = append(out, b)
	}
	return out
}

func sortedBytes(in [][]byte) []string {
	out := make([]string, len(in))
	for i, b := range in {
		out[i] = string(b)
	}
	slices.Sort(out)
	return out
}

func waitRaw(t *testing.T, u *fakeUpstream, n int) [][]byte {
	t.Helper()
	var got [][]byte
	require.Eventually(t, func() bool {
		got = got[:0]
		for _, r := range u.requests() {
			got = append(got, r.rawSeries...)
		}
		return len(got) >= n
	}, waitFor, time.Millisecond)
	return got
}

// An unchanged 1.0 request reaches a 1.0 upstream with every series byte
// for byte as the client sent it; an upstream with a relabel config gets
// the same request relabeled, through the slow path.
func TestFastPath(t *testing.T) {
	for _, disk := range []bool{false, true} {
		name := "memory"
		if disk {
			name = "disk"
		}
		t.Run(name, func(t *testing.T) {
			plain := newFakeUpstream(t, nil)
			relabeled := newFakeUpstream(t, nil)
			u1 := testUpstream(t, "plain", plain.srv.URL, false)
			u2 := testUpstream(t, "relabeled", relabeled.srv.URL, false)
			u2.WriteRelabelConfigs = relabelConfigs(t, `
- action: labeldrop
  regex: instance
`)
			var opts Options
			if disk {
				opts.StoragePath = t.TempDir()
			}
			m, _, _, _ := newTestManagerOpts(t, testConfig(u1, u2), opts)

			wr := rwtest.V1Request(300, 2)
			postV1(t, m, wr)
			want := marshalledSeries(t, wr)
			got := waitRaw(t, plain, len(want))
			require.Equal(t, sortedBytes(want), sortedBytes(got))

			var wantRelabeled []string
			for i := range wr.Timeseries {
				b := labels.NewBuilder(rwtest.SeriesLabels(i))
				b.Del("instance")
				wantRelabeled = append(wantRelabeled, b.Labels().String())
			}
			require.Eventually(t, func() bool { return len(relabeled.series()) >= len(want) }, waitFor, time.Millisecond)
			var gotRelabeled []string
			for _, s := range relabeled.series() {
				gotRelabeled = append(gotRelabeled, s.Labels.String())
				require.Len(t, s.Samples, 2)
			}
			slices.Sort(wantRelabeled)
			slices.Sort(gotRelabeled)
			require.Equal(t, wantRelabeled, gotRelabeled)
		})
	}
}

// Raw records a 1.0 upstream queued on disk are sent as 2.0 once the
// upstream is reconfigured to speak it, and a series keeps its shard
// whichever form it is in.
func TestFastPathDiskToV2(t *testing.T) {
	dir := t.TempDir()
	down := newFakeUpstream(t, func(http.ResponseWriter, *http.Request, *gotRequest, int) int { return http.StatusServiceUnavailable })
	u := testUpstream(t, "u", down.srv.URL, false)
	m, _, _, _ := newTestManagerOpts(t, testConfig(u), Options{StoragePath: dir})
	wr := rwtest.V1Request(50, 3)
	postV1(t, m, wr)
	// The upstream is down: Stop flushes until its deadline, then leaves
	// the rest on disk.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	m.Stop(ctx)
	cancel()

	up := newFakeUpstream(t, nil)
	u2 := testUpstream(t, "u", up.srv.URL, true)
	newTestManagerOpts(t, testConfig(u2), Options{StoragePath: dir})
	require.Eventually(t, func() bool { return up.samples() >= 150 }, waitFor, time.Millisecond)
	for _, r := range up.requests() {
		require.Equal(t, prw.ProtoV2, r.proto)
	}
	var got []string
	for _, s := range up.series() {
		got = append(got, s.Labels.String())
	}
	var want []string
	for i := range 50 {
		want = append(want, rwtest.SeriesLabels(i).String())
	}
	slices.Sort(got)
	slices.Sort(want)
	require.Equal(t, want, got)
}

func TestHashLabelsMatchesRaw(t *testing.T) {
	wr := rwtest.V1Request(20, 1)
	for i, b := range marshalledSeries(t, wr) {
		want := rwtest.HashLabels(rwtest.SeriesLabels(i))
		got, _, err := prw.HashSeries(b, nil)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
}

// External labels that every series already has leave the request raw;
// one that some series lacks sends it through the slow path, which adds it.
func TestFastPathExternalLabels(t *testing.T) {
	for _, tc := range []struct {
		name     string
		external labels.Labels
		raw      bool
	}{
		{"present", labels.FromStrings("job", "other"), true},
		{"all present", labels.FromStrings("cluster", "c", "job", "other", "region", "r"), true},
		{"missing", labels.FromStrings("replica", "r1"), false},
		{"one of three missing", labels.FromStrings("cluster", "c", "replica", "r1", "region", "r"), false},
		{"missing, before every label", labels.FromStrings("a", "r1", "job", "other"), false},
		{"missing, after every label", labels.FromStrings("job", "other", "zone", "r1"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakeUpstream(t, nil)
			cfg := testConfig(testUpstream(t, "u", up.srv.URL, false))
			cfg.Global.ExternalLabels = tc.external
			m, _, _ := newTestManager(t, cfg)
			wr := rwtest.V1Request(40, 1)
			postV1(t, m, wr)
			got := waitRaw(t, up, 40)
			if tc.raw {
				require.Equal(t, sortedBytes(marshalledSeries(t, wr)), sortedBytes(got))
				return
			}
			for _, s := range up.series() {
				tc.external.Range(func(l labels.Label) {
					if v := rwtest.SeriesLabels(0).Get(l.Name); v != "" {
						require.Equal(t, v, s.Labels.Get(l.Name), "a series' own value is kept")
					} else {
						require.Equal(t, "r1", s.Labels.Get(l.Name), s.Labels.String())
					}
				})
			}
		})
	}
}

// In disk mode a reader that keeps up takes the requests' chunks from
// Enqueue instead of reading and decoding its records again, and what
// arrives is still every series byte for byte; the handoff holds nothing
// once all is read.
func TestFastPathHandoff(t *testing.T) {
	up := newFakeUpstream(t, nil)
	var skipped atomic.Int64
	opts := Options{StoragePath: t.TempDir(), wrapQueue: func(q diskQueue) diskQueue { return unreadQueue{q, &skipped} }}
	m, _, _, _ := newTestManagerOpts(t, testConfig(testUpstream(t, "u", up.srv.URL, false)), opts)
	var want [][]byte
	for range 5 {
		wr := rwtest.V1Request(100, 1)
		postV1(t, m, wr)
		want = append(want, marshalledSeries(t, wr)...)
	}
	got := waitRaw(t, up, len(want))
	require.Equal(t, sortedBytes(want), sortedBytes(got))
	m.mu.RLock()
	h := m.set.fwds[0].handoff
	m.mu.RUnlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Positive(t, h.hits, "the reader took chunks from Enqueue")
	require.Equal(t, 5, h.hits+h.misses)
	require.Equal(t, int64(h.hits), skipped.Load(), "records taken from the handoff are not read back")
	require.Empty(t, h.entries)
	require.Zero(t, h.bytes)
}

// unreadQueue counts the records NextUnless did not read.
type unreadQueue struct {
	diskQueue
	skipped *atomic.Int64
}

func (q unreadQueue) NextUnless(ctx context.Context, have func(queue.Position) bool) ([]byte, queue.Position, error) {
	rec, pos, err := q.diskQueue.NextUnless(ctx, have)
	if err == nil && rec == nil {
		q.skipped.Add(1)
	}
	return rec, pos, err
}

// An upstream with a size limit (413 above 50 points per request, as
// Amazon Managed Prometheus, Mimir and Cortex have) gets everything, on
// the fast path too: a refused batch of chunks is cut at series
// boundaries, and a series larger than the limit by its points.
// In disk mode a request that is encoded again for its upstream (1.0 for
// a 2.0 upstream, or given an external label) is encoded once, into its
// queue record, and the reader takes that body as a whole item: it is sent
// at once as it is, not queued as chunks that wait for more until
// batch_send_deadline and are encoded again.
func TestFastPathHandoffEncoded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		v2       bool
		external labels.Labels
	}{
		{"2.0 upstream", true, labels.EmptyLabels()},
		{"external label", false, labels.FromStrings("replica", "r1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newFakeUpstream(t, nil)
			u := testUpstream(t, "u", up.srv.URL, tc.v2)
			u.QueueConfig.MaxSamplesPerSend = 2000
			u.QueueConfig.MinShards, u.QueueConfig.MaxShards = 1, 1
			u.QueueConfig.BatchSendDeadline = pmodel.Duration(time.Minute)
			cfg := testConfig(u)
			cfg.Global.ExternalLabels = tc.external
			m, _, metrics, _ := newTestManagerOpts(t, cfg, Options{StoragePath: t.TempDir()})
			var want []labels.Labels
			for range 3 {
				wr := rwtest.V1Request(20, 2)
				postV1(t, m, wr)
				for i := range wr.Timeseries {
					b := labels.NewBuilder(wr.Timeseries[i].ToLabels(&labels.ScratchBuilder{}, nil))
					tc.external.Range(func(l labels.Label) { b.Set(l.Name, l.Value) })
					want = append(want, b.Labels())
				}
			}
			require.Eventually(t, func() bool { return len(up.requests()) == 3 }, waitFor, time.Millisecond)
			var got []labels.Labels
			for _, r := range up.requests() {
				require.Equal(t, tc.v2, r.proto == prw.ProtoV2)
				require.Len(t, r.series, 20, "one upstream request per client request")
				for _, s := range r.series {
					got = append(got, s.Labels)
					require.Len(t, s.Samples, 2)
				}
			}
			require.Equal(t, want, got)
			// Counted once each answer is read, after the upstream kept it.
			require.Eventually(t, func() bool { return testutil.ToFloat64(metrics.SentSamples.WithLabelValues("u")) == 120 }, waitFor, time.Millisecond)
		})
	}
}

func TestTooLargeSplitsAtSeriesBoundaries(t *testing.T) {
	const limit = 50
	for _, disk := range []bool{false, true} {
		name := "memory"
		if disk {
			name = "disk"
		}
		t.Run(name, func(t *testing.T) {
			refused := atomic.Int64{}
			u := newFakeUpstream(t, func(_ http.ResponseWriter, _ *http.Request, got *gotRequest, _ int) int {
				s, h, e := pointCounts(got.series)
				if s+h+e > limit {
					refused.Add(1)
					return http.StatusRequestEntityTooLarge
				}
				return http.StatusNoContent
			})
			opts := Options{}
			if disk {
				opts = diskOpts(t.TempDir())
			}
			m, _, metrics, _ := newTestManagerOpts(t, testConfig(testUpstream(t, "u", u.srv.URL, false)), opts)
			want := 0
			for range 10 {
				wr := rwtest.V1Request(20, 20)
				postV1(t, m, wr)
				want += 20 * 20
			}
			wr := rwtest.V1Request(1, 3*limit+7) // one series over the limit alone
			postV1(t, m, wr)
			want += 3*limit + 7
			require.Eventually(t, func() bool { return u.samples() == want }, waitFor, tick)
			require.Positive(t, refused.Load(), "the upstream refused batches")
			// The limit is learned: later batches are cut to fit, so a
			// refusal is not paid on every batch (there are 40 of them).
			require.LessOrEqual(t, refused.Load(), int64(8))
			learned := testutil.ToFloat64(metrics.LearnedMaxSamples.WithLabelValues("u"))
			require.Positive(t, learned)
			require.LessOrEqual(t, learned, float64(limit))
			require.Zero(t, testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("u", registry.DropTooLarge)))
			for _, r := range u.requests() {
				s, _, _ := pointCounts(r.series)
				require.LessOrEqual(t, s, limit)
			}
		})
	}
}
