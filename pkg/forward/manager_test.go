package forward

import (
	"context"
	"errors"
	"github.com/prometheus/client_golang/prometheus"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/value"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

func intHistogram(ts, st int64) prw.Histogram {
	return prw.Histogram{
		Count:          &writev2.Histogram_CountInt{CountInt: 12},
		Sum:            18.4,
		Schema:         1,
		ZeroThreshold:  1e-128,
		ZeroCount:      &writev2.Histogram_ZeroCountInt{ZeroCountInt: 2},
		NegativeSpans:  []writev2.BucketSpan{{Offset: 0, Length: 2}},
		NegativeDeltas: []int64{1, 1},
		PositiveSpans:  []writev2.BucketSpan{{Offset: 0, Length: 2}, {Offset: 1, Length: 2}},
		PositiveDeltas: []int64{1, 2, -1, -1},
		ResetHint:      writev2.Histogram_RESET_HINT_NO,
		Timestamp:      ts,
		StartTimestamp: st,
	}
}

func floatHistogram(ts int64) prw.Histogram {
	return prw.Histogram{
		Count:          &writev2.Histogram_CountFloat{CountFloat: 5.5},
		Sum:            9.25,
		Schema:         0,
		ZeroThreshold:  0.001,
		ZeroCount:      &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: 0.5},
		PositiveSpans:  []writev2.BucketSpan{{Offset: 1, Length: 3}},
		PositiveCounts: []float64{1, 2.5, 1.5},
		ResetHint:      writev2.Histogram_RESET_HINT_GAUGE,
		Timestamp:      ts,
	}
}

// bySeries merges what an upstream received by series.
func bySeries(ss []prw.Series) map[string]prw.Series {
	out := map[string]prw.Series{}
	for _, s := range ss {
		k := s.Labels.String()
		m := out[k]
		m.Labels = s.Labels
		m.Samples = append(m.Samples, s.Samples...)
		m.Histograms = append(m.Histograms, s.Histograms...)
		m.Exemplars = append(m.Exemplars, s.Exemplars...)
		if !s.Metadata.Empty() {
			m.Metadata = s.Metadata
		}
		out[k] = m
	}
	return out
}

func TestFanOut(t *testing.T) {
	v1 := newFakeUpstream(t, nil)
	v2 := newFakeUpstream(t, nil)
	u1 := testUpstream(t, "v1", v1.srv.URL, false)
	u1.Headers = map[string]string{"X-Scope-OrgID": "tenant-1"}
	u2 := testUpstream(t, "v2", v2.srv.URL, true)
	m, _, metrics := newTestManager(t, testConfig(u1, u2))

	staleNaN := math.Float64frombits(value.StaleNaN)
	req1 := prw.NewRequest(prw.ProtoV2, []prw.Series{
		{
			Labels: labels.FromStrings("__name__", "http_requests_total", "job", "api"),
			Samples: []prw.Sample{
				{Value: 1, Timestamp: 1000, StartTimestamp: 500},
				{Value: staleNaN, Timestamp: 2000, StartTimestamp: 500},
			},
			Exemplars: []prw.Exemplar{{Labels: labels.FromStrings("trace_id", "abc"), Value: 1.5, Timestamp: 1000}},
			Metadata:  prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: "Total requests."},
		},
		{
			Labels:     labels.FromStrings("__name__", "latency_seconds", "job", "api"),
			Histograms: []prw.Histogram{intHistogram(1000, 400), floatHistogram(2000)},
			Metadata:   prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, Help: "Latency.", Unit: "seconds"},
		},
	}, nil)

	req2 := prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(3000, 2, "__name__", "temp_celsius", "room", "a")},
		[]prw.FamilyMetadata{{MetricFamilyName: "temp_celsius",
			Metadata: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "Temperature.", Unit: "celsius"}}})

	require.NoError(t, m.Enqueue(t.Context(), req1, "", nil))
	require.NoError(t, m.Enqueue(t.Context(), req2, "", nil))
	// The receiver reuses its buffers once Enqueue returns.
	clear(req1.Raw.Msg)
	clear(req2.Raw.Msg)

	require.Eventually(t, func() bool { return len(bySeries(v1.series())) == 3 && len(bySeries(v2.series())) == 3 }, waitFor, tick)
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(metrics.SentMetadata.WithLabelValues("v1")) == 3 &&
			testutil.ToFloat64(metrics.SentMetadata.WithLabelValues("v2")) == 3
	}, waitFor, tick)

	counter := `{__name__="http_requests_total", job="api"}`
	latency := `{__name__="latency_seconds", job="api"}`
	temp := `{__name__="temp_celsius", room="a"}`
	wantHist := []prw.Histogram{intHistogram(1000, 400), floatHistogram(2000)}

	t.Run("1.0 upstream", func(t *testing.T) {
		got := bySeries(v1.series())
		c := got[counter]
		require.Equal(t, []prw.Sample{{Value: 1, Timestamp: 1000}, {Value: 0, Timestamp: 2000}}, noNaN(c.Samples))
		require.Equal(t, value.StaleNaN, math.Float64bits(c.Samples[1].Value), "stale marker bits")
		require.Equal(t, `{trace_id="abc"}`, c.Exemplars[0].Labels.String())
		require.Equal(t, 1.5, c.Exemplars[0].Value)

		var want []prw.Histogram
		for _, h := range wantHist {
			want = append(want, prw.HistogramFromV1(rwtest.HistogramToV1(h))) // start timestamp dropped
		}
		require.Equal(t, want, got[latency].Histograms)
		require.Zero(t, got[latency].Histograms[0].StartTimestamp)
		require.Len(t, got[temp].Samples, 2)

		var md []prw.FamilyMetadata
		for _, r := range v1.requests() {
			md = append(md, r.metadata...)
			require.Equal(t, "application/x-protobuf", r.header.Get("Content-Type"))
			require.Equal(t, "0.1.0", r.header.Get(prw.HeaderVersion))
			require.Equal(t, "snappy", r.header.Get("Content-Encoding"))
			require.Equal(t, "test-agent", r.header.Get("User-Agent"))
			require.Equal(t, "tenant-1", r.header.Get("X-Scope-OrgID"))
			require.Empty(t, r.header.Get(headerRetryAttempt))
		}
		slices.SortFunc(md, func(a, b prw.FamilyMetadata) int { return strings.Compare(a.MetricFamilyName, b.MetricFamilyName) })
		require.Equal(t, []prw.FamilyMetadata{
			{MetricFamilyName: "http_requests_total", Metadata: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: "Total requests."}},
			{MetricFamilyName: "latency_seconds", Metadata: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, Help: "Latency.", Unit: "seconds"}},
			{MetricFamilyName: "temp_celsius", Metadata: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "Temperature.", Unit: "celsius"}},
		}, md)
	})

	t.Run("2.0 upstream", func(t *testing.T) {
		got := bySeries(v2.series())
		c := got[counter]
		require.Equal(t, []prw.Sample{{Value: 1, Timestamp: 1000, StartTimestamp: 500}, {Value: 0, Timestamp: 2000, StartTimestamp: 500}}, noNaN(c.Samples))
		require.Equal(t, value.StaleNaN, math.Float64bits(c.Samples[1].Value), "stale marker bits")
		require.Equal(t, `{trace_id="abc"}`, c.Exemplars[0].Labels.String())
		require.Equal(t, prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: "Total requests."}, c.Metadata)
		require.Equal(t, wantHist, got[latency].Histograms)
		require.Equal(t, int64(400), got[latency].Histograms[0].StartTimestamp)
		require.Equal(t, prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "Temperature.", Unit: "celsius"}, got[temp].Metadata,
			"1.0 family metadata attached to the family's series")
		for _, r := range v2.requests() {
			require.Equal(t, "application/x-protobuf;proto=io.prometheus.write.v2.Request", r.header.Get("Content-Type"))
			require.Equal(t, "2.0.0", r.header.Get(prw.HeaderVersion))
			require.Equal(t, "test-agent", r.header.Get("User-Agent"))
		}
	})

	for _, up := range []string{"v1", "v2"} {
		eventuallyValue(t, 4, metrics.SentSamples.WithLabelValues(up))
		eventuallyValue(t, 2, metrics.SentHistograms.WithLabelValues(up))
		eventuallyValue(t, 1, metrics.SentExemplars.WithLabelValues(up))
	}
}

// noNaN replaces NaN values (which never equal themselves) with 0, so that
// slices compare; the bits are checked separately.
func noNaN(s []prw.Sample) []prw.Sample {
	out := slices.Clone(s)
	for i := range out {
		if math.IsNaN(out[i].Value) {
			out[i].Value = 0
		}
	}
	return out
}

func relabelConfigs(t testing.TB, s string) []*relabel.Config {
	t.Helper()
	var cfgs []*relabel.Config
	require.NoError(t, yaml.UnmarshalStrict([]byte(s), &cfgs))
	return cfgs
}

func TestWriteRelabelAndExternalLabels(t *testing.T) {
	a := newFakeUpstream(t, nil)
	b := newFakeUpstream(t, nil)
	ua := testUpstream(t, "a", a.srv.URL, false)
	// External labels come first, so a rule can match them.
	ua.WriteRelabelConfigs = relabelConfigs(t, `
- source_labels: [__name__]
  regex: drop_me
  action: drop
- source_labels: [cluster]
  regex: c1
  action: keep
`)
	ub := testUpstream(t, "b", b.srv.URL, true)
	cfg := testConfig(ua, ub)
	cfg.Global.ExternalLabels = labels.FromStrings("cluster", "c1", "env", "prod")
	m, _, metrics := newTestManager(t, cfg)

	require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{
		floatSeries(1, 3, "__name__", "keep_me", "env", "dev"),
		floatSeries(1, 2, "__name__", "drop_me"),
	}, nil),

		"", nil))

	require.Eventually(t, func() bool { return a.samples() == 3 && b.samples() == 5 }, waitFor, tick)
	ga, gb := bySeries(a.series()), bySeries(b.series())
	require.Contains(t, ga, `{__name__="keep_me", cluster="c1", env="dev"}`, "env kept: the series had it")
	require.NotContains(t, ga, `{__name__="drop_me", cluster="c1", env="prod"}`)
	require.Contains(t, gb, `{__name__="keep_me", cluster="c1", env="dev"}`)
	require.Contains(t, gb, `{__name__="drop_me", cluster="c1", env="prod"}`)
	require.Equal(t, 2.0, testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("a", registry.DropRelabel)))
	require.Equal(t, 0.0, testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("b", registry.DropRelabel)))
}

func TestSendUnsupportedDropped(t *testing.T) {
	u := newFakeUpstream(t, nil)
	cfg := testUpstream(t, "u", u.srv.URL, false)
	cfg.SendExemplars = false
	cfg.SendNativeHistograms = false
	m, _, metrics := newTestManager(t, testConfig(cfg))
	s := floatSeries(1, 2, "__name__", "x")
	s.Exemplars = []prw.Exemplar{{Labels: labels.FromStrings("a", "b"), Value: 1, Timestamp: 1}}
	h := prw.Series{Labels: labels.FromStrings("__name__", "h"), Histograms: []prw.Histogram{intHistogram(1, 0)}}
	require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{s, h}, nil), "", nil))
	require.Eventually(t, func() bool { return u.samples() == 2 }, waitFor, tick)
	require.Equal(t, 2.0, testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("u", registry.DropUnsupported)))
	for _, got := range u.series() {
		require.Empty(t, got.Exemplars)
		require.Empty(t, got.Histograms)
	}
}

func TestRetryOn5xx(t *testing.T) {
	u := newFakeUpstream(t, func(_ http.ResponseWriter, _ *http.Request, _ *gotRequest, n int) int {
		if n < 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	cfg := testUpstream(t, "u", u.srv.URL, false)
	cfg.QueueConfig.MaxShards = 1
	m, _, metrics := newTestManager(t, testConfig(cfg))
	require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(1, 10, "__name__", "x")}, nil), "", nil))

	require.Eventually(t, func() bool { return u.samples() == 10 }, waitFor, tick)
	require.Equal(t, "2", u.requests()[0].header.Get(headerRetryAttempt))
	require.Equal(t, 20.0, testutil.ToFloat64(metrics.FailedSamples.WithLabelValues("u")))
	require.Equal(t, 20.0, testutil.ToFloat64(metrics.RetriedSamples.WithLabelValues("u")))
	require.Equal(t, 2.0, testutil.ToFloat64(metrics.Requests.WithLabelValues("u", "500")))
	eventuallyValue(t, 1, metrics.Requests.WithLabelValues("u", "204"))
	require.Eventually(t, func() bool { return testutil.ToFloat64(metrics.QueueLength.WithLabelValues("u")) == 0 }, waitFor, tick)
	require.Positive(t, testutil.ToFloat64(metrics.LastSendSuccess.WithLabelValues("u")))
}

func TestNonRetryable4xxDropsOneBatch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		code      int
		retry429  bool
		retryHint string
	}{
		{name: "400", code: http.StatusBadRequest},
		{name: "401", code: http.StatusUnauthorized},
		{name: "403", code: http.StatusForbidden},
		{name: "404", code: http.StatusNotFound},
		{name: "409", code: http.StatusConflict},
		{name: "415", code: http.StatusUnsupportedMediaType},
		{name: "429 without retry_on_http_429", code: http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newFakeUpstream(t, func(w http.ResponseWriter, _ *http.Request, got *gotRequest, _ int) int {
				for _, s := range got.series {
					if s.Labels.Get("__name__") == "bad" {
						http.Error(w, "bad series", tc.code)
						return 0
					}
				}
				return http.StatusNoContent
			})
			cfg := testUpstream(t, "u", u.srv.URL, false)
			cfg.QueueConfig.MaxShards = 1
			cfg.QueueConfig.MaxSamplesPerSend = 5 // one request, one batch
			cfg.QueueConfig.RetryOnRateLimit = false
			m, _, metrics := newTestManager(t, testConfig(cfg))
			for _, name := range []string{"good1", "bad", "good2"} {
				require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(1, 5, "__name__", name)}, nil), "", nil))
			}
			require.Eventually(t, func() bool { return u.samples() == 10 }, waitFor, tick)
			got := bySeries(u.series())
			require.Contains(t, got, `{__name__="good1"}`)
			require.Contains(t, got, `{__name__="good2"}`)
			require.Eventually(t, func() bool {
				return testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("u", registry.DropHTTPStatus)) == 5
			}, waitFor, tick)
			require.Equal(t, 0.0, testutil.ToFloat64(metrics.RetriedSamples.WithLabelValues("u")))
		})
	}
}

func TestRetryAfterOn429(t *testing.T) {
	u := newFakeUpstream(t, func(w http.ResponseWriter, _ *http.Request, _ *gotRequest, n int) int {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusNoContent
	})
	cfg := testUpstream(t, "u", u.srv.URL, false)
	cfg.QueueConfig.MaxShards = 1
	m, _, metrics := newTestManager(t, testConfig(cfg))
	start := time.Now()
	require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(1, 3, "__name__", "x")}, nil), "", nil))
	require.Eventually(t, func() bool { return u.samples() == 3 }, waitFor, tick)
	require.GreaterOrEqual(t, time.Since(start), 950*time.Millisecond, "Retry-After honoured over max_backoff")
	require.Equal(t, 1.0, testutil.ToFloat64(metrics.Requests.WithLabelValues("u", "429")))
	require.Equal(t, 3.0, testutil.ToFloat64(metrics.RetriedSamples.WithLabelValues("u")))
}

func TestTooLargeSplits(t *testing.T) {
	u := newFakeUpstream(t, func(_ http.ResponseWriter, _ *http.Request, got *gotRequest, _ int) int {
		if len(got.series) > 1 || (len(got.series) == 1 && got.series[0].Labels.Get("__name__") == "huge") {
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusNoContent
	})
	cfg := testUpstream(t, "u", u.srv.URL, true)
	cfg.QueueConfig.MaxShards = 1
	m, _, metrics := newTestManager(t, testConfig(cfg))
	var ss []prw.Series
	for _, name := range []string{"a", "b", "c", "huge", "d"} {
		ss = append(ss, floatSeries(1, 2, "__name__", name))
	}
	req := prw.NewRequest(prw.ProtoV1, ss, nil)
	require.NoError(t, m.Enqueue(t.Context(), req, "", nil))
	require.Eventually(t, func() bool { return u.samples() == 8 }, waitFor, tick)
	for _, r := range u.requests() {
		require.Len(t, r.series, 1)
	}
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("u", registry.DropTooLarge)) == 2
	}, waitFor, tick)
}

func TestOldReceiverResentAsV1(t *testing.T) {
	var v2Requests atomic.Int64
	u := newFakeUpstream(t, func(w http.ResponseWriter, _ *http.Request, got *gotRequest, _ int) int {
		if got.proto == prw.ProtoV2 {
			v2Requests.Add(1)
			w.WriteHeader(http.StatusNoContent) // a 1.0 receiver: no Written headers
			return 0
		}
		return http.StatusNoContent
	})
	cfg := testUpstream(t, "u", u.srv.URL, true)
	cfg.QueueConfig.MaxShards = 1
	m, _, metrics := newTestManager(t, testConfig(cfg))

	require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(1, 3, "__name__", "x")}, nil), "", nil))
	require.Eventually(t, func() bool { return u.samples() == 3 }, waitFor, tick)
	require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(10, 3, "__name__", "x")}, nil), "", nil))
	require.Eventually(t, func() bool { return u.samples() == 6 }, waitFor, tick)

	for _, r := range u.requests() {
		require.Equal(t, prw.ProtoV1, r.proto)
	}
	require.Equal(t, int64(1), v2Requests.Load(), "1.0 from then on")
	require.Equal(t, 3.0, testutil.ToFloat64(metrics.FailedSamples.WithLabelValues("u")))
	eventuallyValue(t, 6, metrics.SentSamples.WithLabelValues("u"))
	require.Equal(t, 0.0, testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("u", registry.DropOldReceiver)))
}

func TestQueueFullIsAllOrNothing(t *testing.T) {
	release := make(chan struct{})
	a := newFakeUpstream(t, nil)
	b := newFakeUpstream(t, func(_ http.ResponseWriter, r *http.Request, _ *gotRequest, _ int) int {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return http.StatusNoContent
	})
	ua := testUpstream(t, "a", a.srv.URL, false)
	ua.QueueConfig.MaxShards = 1
	ub := testUpstream(t, "b", b.srv.URL, false)
	ub.QueueConfig.MaxShards = 1
	ub.QueueConfig.Capacity = 10
	ub.QueueConfig.MaxSamplesPerSend = 5
	m, _, metrics := newTestManager(t, testConfig(ua, ub))
	defer close(release)

	enqueue := func(ts int64) error {
		return m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(ts, 5, "__name__", "x")}, nil), "", nil)
	}
	require.NoError(t, enqueue(0))
	require.NoError(t, enqueue(5))
	err := enqueue(10)
	require.ErrorIs(t, err, ErrQueueFull)
	var ra interface{ RetryAfter() time.Duration }
	require.ErrorAs(t, err, &ra)
	require.Positive(t, ra.RetryAfter())
	require.Contains(t, err.Error(), `"b"`)

	require.Equal(t, 1.0, testutil.ToFloat64(metrics.QueueFull.WithLabelValues("b")))
	require.Equal(t, 0.0, testutil.ToFloat64(metrics.QueueFull.WithLabelValues("a")))
	require.Equal(t, 10.0, testutil.ToFloat64(metrics.QueueLength.WithLabelValues("b")))
	// a got what was accepted and nothing of the refused request.
	require.Eventually(t, func() bool {
		return a.samples() == 10 && testutil.ToFloat64(metrics.QueueLength.WithLabelValues("a")) == 0
	}, waitFor, tick)
	require.Equal(t, 10, a.samples())
	for _, s := range a.series() {
		for _, x := range s.Samples {
			require.Less(t, x.Timestamp, int64(10))
		}
	}
}

func TestPerSeriesOrder(t *testing.T) {
	u := newFakeUpstream(t, nil)
	cfg := testUpstream(t, "u", u.srv.URL, true)
	cfg.QueueConfig.MaxShards = 4
	cfg.QueueConfig.MaxSamplesPerSend = 7
	m, _, _ := newTestManager(t, testConfig(cfg))
	names := []string{"a", "b", "c", "d", "e"}
	const calls, per = 200, 5
	for i := range calls {
		var ss []prw.Series
		for _, n := range names {
			ss = append(ss, floatSeries(int64(i*per), per, "__name__", n))
		}
		req := prw.NewRequest(prw.ProtoV1, ss, nil)
		require.NoError(t, m.Enqueue(t.Context(), req, "", nil))
	}
	require.Eventually(t, func() bool { return u.samples() == calls*per*len(names) }, waitFor, tick)
	last := map[string]int64{}
	for _, s := range u.series() {
		k := s.Labels.String()
		for _, x := range s.Samples {
			if prev, ok := last[k]; ok {
				require.Equal(t, prev+1, x.Timestamp, "series %s out of order", k)
			}
			last[k] = x.Timestamp
		}
	}
	require.Len(t, last, len(names))
}

func TestStopFlushesQueued(t *testing.T) {
	u := newFakeUpstream(t, nil)
	cfg := testUpstream(t, "u", u.srv.URL, false)
	cfg.QueueConfig.BatchSendDeadline = 1e12 // never: only Stop sends
	m, _, metrics := newTestManager(t, testConfig(cfg))
	for i := range 10 {
		require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(int64(i*5), 5, "__name__", "x", "i", string(rune('a'+i)))}, nil), "", nil))
	}
	require.Equal(t, 0, u.samples())
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	m.Stop(ctx)
	m.Stop(ctx) // idempotent
	require.Equal(t, 50, u.samples())
	require.Equal(t, 0.0, testutil.ToFloat64(metrics.QueueLength.WithLabelValues("u")))
	require.ErrorIs(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, nil, nil), "", nil), ErrStopped)
	require.ErrorIs(t, m.ApplyConfig(testConfig(cfg)), ErrStopped)
}

func TestStopDeadlineDropsTheRest(t *testing.T) {
	u := newFakeUpstream(t, func(_ http.ResponseWriter, r *http.Request, _ *gotRequest, _ int) int {
		<-r.Context().Done() // never answers
		return http.StatusNoContent
	})
	cfg := testUpstream(t, "u", u.srv.URL, false)
	cfg.QueueConfig.MaxShards = 1
	cfg.QueueConfig.MaxSamplesPerSend = 5
	m, _, metrics := newTestManager(t, testConfig(cfg))
	for i := range 4 {
		require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(int64(i*5), 5, "__name__", "x")}, nil), "", nil))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	m.Stop(ctx)
	require.Less(t, time.Since(start), 3*time.Second)
	require.Equal(t, 20.0, testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("u", registry.DropShutdown)))
	require.Equal(t, 0.0, testutil.ToFloat64(metrics.QueueLength.WithLabelValues("u")))
}

// A shutdown during a reload that drains a removed upstream is bounded by
// the shutdown's deadline, not by the reload's (FlushDeadline).
func TestStopEndsReloadDrain(t *testing.T) {
	u := newFakeUpstream(t, func(_ http.ResponseWriter, r *http.Request, _ *gotRequest, _ int) int {
		<-r.Context().Done() // never answers
		return http.StatusNoContent
	})
	gone := testUpstream(t, "gone", u.srv.URL, false)
	gone.QueueConfig.MaxShards = 1
	kept := testUpstream(t, "kept", "http://127.0.0.1:1/", false)
	m, _, _, _ := newTestManagerOpts(t, testConfig(gone, kept), Options{FlushDeadline: time.Hour})
	require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(0, 5, "__name__", "x")}, nil), "", nil))
	reloaded := make(chan error, 1)
	go func() { reloaded <- m.ApplyConfig(testConfig(kept)) }() // drains "gone" for up to an hour
	require.Eventually(t, func() bool { return u.calls.Load() > 0 }, waitFor, tick, "the drain is sending")

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	stopped := make(chan struct{})
	go func() { m.Stop(ctx); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop waits for the reload's drain")
	}
	select {
	case err := <-reloaded:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the reload still drains after Stop")
	}
}

func TestEnqueueBeforeConfig(t *testing.T) {
	m := NewManager(nil, registry.NewForwardMetrics(nil), Options{})
	require.ErrorIs(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, nil, nil), "", nil), ErrNotConfigured)
	m.Stop(t.Context())
	require.True(t, errors.Is(m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, nil, nil), "", nil), ErrStopped))
}

// TestRoutes: Enqueue sends a request only to the upstreams its routes
// allow, whichever path (disk or memory) each upstream's queue takes.
func TestRoutes(t *testing.T) {
	a := newFakeUpstream(t, nil)
	b := newFakeUpstream(t, nil)
	m, _, _ := newTestManager(t, testConfig(testUpstream(t, "a", a.srv.URL, false), testUpstream(t, "b", b.srv.URL, false)))
	onlyB := func(u string) bool { return u == "b" }
	require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(1000, 3, "__name__", "routed")}, nil), "", onlyB))
	require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(5000, 2, "__name__", "everywhere")}, nil), "", nil))
	require.Eventually(t, func() bool { return b.samples() == 5 && a.samples() == 2 }, 10*time.Second, 10*time.Millisecond)
	for _, s := range a.series() {
		require.Equal(t, "everywhere", s.Labels.Get("__name__"), "a got data routed to b only")
	}
}

// An upstream configured for 2.0 that answers 415 gets 1.0 from then on,
// without a 2.0 attempt per batch; after the probe interval it is tried
// with 2.0 again, and once it takes 2.0 it keeps getting it.
func TestUnsupportedMediaTypeFallsBackAndProbes(t *testing.T) {
	var speaksV2 atomic.Bool
	var v2Attempts atomic.Int64
	u := newFakeUpstream(t, func(_ http.ResponseWriter, _ *http.Request, got *gotRequest, _ int) int {
		if got.proto == prw.ProtoV2 {
			v2Attempts.Add(1)
			if !speaksV2.Load() {
				return http.StatusUnsupportedMediaType
			}
		}
		return http.StatusNoContent
	})
	cfg := testUpstream(t, "u", u.srv.URL, true)
	cfg.QueueConfig.MaxShards = 1
	const probe = 300 * time.Millisecond
	m, _, metrics, _ := newTestManagerOpts(t, testConfig(cfg), Options{ProbeInterval: probe})
	send := func(ts int64) {
		require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(ts, 2, "__name__", "x")}, nil), "", nil))
	}
	lastProto := func() prw.Protocol { r := u.requests(); return r[len(r)-1].proto }

	send(0)
	require.Eventually(t, func() bool { return u.samples() == 2 }, waitFor, tick)
	require.Equal(t, prw.ProtoV1, lastProto(), "resent as 1.0")
	send(10)
	require.Eventually(t, func() bool { return u.samples() == 4 }, waitFor, tick)
	require.Equal(t, prw.ProtoV1, lastProto())
	require.Equal(t, int64(1), v2Attempts.Load(), "1.0 is remembered: no 2.0 attempt per batch")

	speaksV2.Store(true) // the upstream is upgraded
	time.Sleep(probe)
	send(20)
	require.Eventually(t, func() bool { return u.samples() == 6 }, waitFor, tick)
	require.Equal(t, prw.ProtoV2, lastProto(), "2.0 again after the probe interval")
	send(30)
	require.Eventually(t, func() bool { return u.samples() == 8 }, waitFor, tick)
	require.Equal(t, prw.ProtoV2, lastProto())
	require.Zero(t, testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("u", registry.DropOldReceiver)))
	require.Zero(t, testutil.ToFloat64(metrics.DroppedSamples.WithLabelValues("u", registry.DropHTTPStatus)))
}

// An upstream with a tenant_header gets each tenant's data in requests of
// its own, with the tenant's id in the header, from memory and disk queues
// and after a restart; an upstream without one gets everything, without
// the header.
func TestTenantHeader(t *testing.T) {
	tenants := []string{"team-a", "team-b", "team-c"}
	for _, mode := range []string{"memory", "disk", "restart"} {
		t.Run(mode, func(t *testing.T) {
			sw := &switchable{}
			sw.code.Store(http.StatusNoContent)
			if mode == "restart" {
				sw.code.Store(http.StatusServiceUnavailable)
			}
			mimir, plain := newFakeUpstream(t, sw.respond), newFakeUpstream(t, nil)
			um := testUpstream(t, "mimir", mimir.srv.URL, false)
			um.TenantHeader = "X-Scope-OrgID"
			um.QueueConfig.MaxShards = 1 // one shard: tenants meet in its queue
			up := testUpstream(t, "plain", plain.srv.URL, false)
			var opts Options
			dir := t.TempDir()
			if mode != "memory" {
				opts = diskOpts(dir)
			}
			m, _, _, _ := newTestManagerOpts(t, testConfig(um, up), opts)
			const rounds, per = 5, 4
			for i := range rounds {
				for _, tn := range tenants {
					var ss []prw.Series
					for j := range per {
						ss = append(ss, floatSeries(int64(i*10), 2, "__name__", "x", "t", tn, "j", intString(j)))
					}
					req := prw.NewRequest(prw.ProtoV1, ss, nil)
					require.NoError(t, m.Enqueue(t.Context(), req, tn, nil))
				}
			}
			want := rounds * len(tenants) * per * 2
			if mode == "restart" {
				ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
				m.Stop(ctx)
				cancel()
				sw.code.Store(http.StatusNoContent)
				newTestManagerOpts(t, testConfig(um, up), opts)
			}
			require.Eventually(t, func() bool { return mimir.samples() >= want && plain.samples() >= want }, waitFor, tick)
			for _, r := range mimir.requests() {
				id := r.header.Get("X-Scope-OrgID")
				require.Contains(t, tenants, id)
				for _, s := range r.series {
					require.Equal(t, id, s.Labels.Get("t"), "a request holds one tenant's data, named in its header")
				}
			}
			for _, r := range plain.requests() {
				require.Empty(t, r.header.Get("X-Scope-OrgID"))
			}
			require.Equal(t, want, len(sampleSet(mimir.series())))
		})
	}
}

// handed = sent + dropped (every reason) + pending holds per upstream,
// with tenants, relabeling, unsupported exemplars and refused batches,
// whichever queue; and pending is what is left when the upstream is down.
func TestAccountingIdentity(t *testing.T) {
	points := func(reg *registry.ForwardMetrics, u string) (handed, sent, dropped, pending float64) {
		for _, v := range []*prometheus.CounterVec{reg.HandedSamples, reg.HandedHistograms, reg.HandedExemplars} {
			for _, tn := range []string{"team-a", "team-b", "team-c"} {
				handed += testutil.ToFloat64(v.WithLabelValues(u, tn))
			}
		}
		for _, v := range []*prometheus.CounterVec{reg.SentSamples, reg.SentHistograms, reg.SentExemplars} {
			sent += testutil.ToFloat64(v.WithLabelValues(u))
		}
		for _, r := range registry.DropReasons {
			dropped += testutil.ToFloat64(reg.DroppedSamples.WithLabelValues(u, r))
		}
		return handed, sent, dropped, testutil.ToFloat64(reg.PendingSamples.WithLabelValues(u))
	}
	for _, mode := range []string{"memory", "disk", "disk, upstream down"} {
		t.Run(mode, func(t *testing.T) {
			down := &switchable{}
			down.code.Store(http.StatusNoContent)
			if mode == "disk, upstream down" {
				down.code.Store(http.StatusServiceUnavailable)
			}
			a := newFakeUpstream(t, down.respond)
			b := newFakeUpstream(t, func(_ http.ResponseWriter, _ *http.Request, got *gotRequest, _ int) int {
				for _, s := range got.series {
					if s.Labels.Get("__name__") == "bad" {
						return http.StatusBadRequest
					}
				}
				return http.StatusNoContent
			})
			ua, ub := testUpstream(t, "a", a.srv.URL, false), testUpstream(t, "b", b.srv.URL, false)
			ua.TenantHeader = "X-Scope-OrgID"
			ua.SendExemplars = false
			ua.WriteRelabelConfigs = relabelConfigs(t, "- source_labels: [__name__]\n  regex: dropme\n  action: drop\n")
			ub.QueueConfig.MaxShards = 1
			var opts Options
			if mode != "memory" {
				opts = diskOpts(t.TempDir())
			}
			m, _, reg, _ := newTestManagerOpts(t, testConfig(ua, ub), opts)
			for i, tn := range []string{"team-a", "team-b", "team-c"} {
				ex := floatSeries(int64(i*100), 3, "__name__", "ex", "t", tn)
				ex.Exemplars = []prw.Exemplar{{Labels: labels.FromStrings("trace_id", tn), Value: 1, Timestamp: int64(i * 100)}}
				require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{
					floatSeries(int64(i*100), 4, "__name__", "x", "t", tn),
					floatSeries(int64(i*100), 2, "__name__", "dropme", "t", tn),
					ex,
				}, nil),

					tn, nil))
				require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(int64(i*100), 5, "__name__", "bad", "t", tn)}, nil), tn, nil))
			}
			require.Eventually(t, func() bool {
				_, _, _, pa := points(reg, "a")
				_, _, _, pb := points(reg, "b")
				if mode == "disk, upstream down" {
					return pb == 0 && a.calls.Load() > 0
				}
				return pa == 0 && pb == 0
			}, waitFor, tick)
			if mode == "disk, upstream down" {
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				m.Stop(ctx)
				cancel()
			}
			for _, u := range []string{"a", "b"} {
				for _, tn := range []string{"team-a", "team-b", "team-c"} {
					require.Equal(t, 4.0+2+3+5, testutil.ToFloat64(reg.HandedSamples.WithLabelValues(u, tn)), "upstream %s, tenant %s", u, tn)
				}
				handed, sent, dropped, pending := points(reg, u)
				require.Equal(t, 3.0*(4+2+3+1+5), handed, "upstream %s handed", u)
				require.Equal(t, handed, sent+dropped+pending, "upstream %s: handed = sent + dropped + pending", u)
			}
			_, sent, dropped, pending := points(reg, "a")
			require.Equal(t, 3.0*(2+1), dropped, "relabeled away, and exemplars a does not take")
			if mode == "disk, upstream down" {
				require.Zero(t, sent)
				require.Equal(t, 3.0*(4+3+5), pending, "what a could not be sent stays pending on disk")
			}
			_, _, dropped, _ = points(reg, "b")
			require.GreaterOrEqual(t, dropped, 3.0*5, "refused with 400, with the batches they were in")
		})
	}
}
