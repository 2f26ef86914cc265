package receiver

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

// roundTripSeries exercises everything a request can carry. No NaN values:
// require.Equal compares floats with ==; TestRoundTripStaleMarkers checks
// NaN bits.
func roundTripSeries() []tseries {
	return []tseries{
		{
			labels: []string{"job", "api", "__name__", "http_requests_total", "code", "200", "method", "GET"},
			samples: []prw.Sample{
				{Value: 1, Timestamp: 1000, StartTimestamp: 10},
				{Value: 2.5, Timestamp: 2000, StartTimestamp: 10},
				{Value: math.Inf(1), Timestamp: 3000, StartTimestamp: 10},
			},
			exemplars: []prw.Exemplar{
				{Labels: labels.FromStrings("trace_id", "4bf92f3577b34da6", "span_id", "00f067aa0ba902b7"), Value: 0.25, Timestamp: 1500},
				{Labels: labels.EmptyLabels(), Value: 3, Timestamp: 2500},
			},
			meta: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: "Requests served.", Unit: "requests"},
		},
		{
			labels:     []string{"__name__", "rpc_duration_seconds", "service", "checkout"},
			histograms: []prw.Histogram{intExpHistogram, floatExpHistogram},
			exemplars:  []prw.Exemplar{{Labels: labels.FromStrings("trace_id", "x"), Value: 0.7, Timestamp: 2000}},
			meta:       prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, Help: "RPC latency.", Unit: "seconds"},
		},
		{
			labels:     []string{"__name__", "nhcb_seconds", "le_set", "custom"},
			histograms: []prw.Histogram{intCustomHistogram, floatCustomHistogram},
			meta:       prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM},
		},
		{
			labels:  []string{"__name__", "utf8.métric", "ключ", "значение"},
			samples: []prw.Sample{{Value: -1e308, Timestamp: -5}},
			meta:    prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Unit: "bytes"},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	md := []prw.FamilyMetadata{
		{MetricFamilyName: "http_requests_total", Metadata: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: "Requests served.", Unit: "requests"}},
		{MetricFamilyName: "rpc_duration_seconds", Metadata: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM}},
	}
	for _, p := range protos {
		t.Run(p.Label(), func(t *testing.T) {
			q := &fakeQueue{t: t}
			h, _, _ := newTestHandler(t, q, Options{})
			series := roundTripSeries()
			// Twice, so the second request decodes into reused state.
			for range 2 {
				q.got = nil
				rec := serve(h, rwtest.NewHTTPRequest(p, encode(p, series, md)))
				require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
				require.Len(t, q.got, 1)
				require.Equal(t, expected(p, series, md), q.got[0])
				if p == prw.ProtoV2 {
					require.Equal(t, "4", rec.Header().Get(prw.HeaderSamplesWritten))
					require.Equal(t, "4", rec.Header().Get(prw.HeaderHistogramsWritten))
					require.Equal(t, "3", rec.Header().Get(prw.HeaderExemplarsWritten))
				}
			}
		})
	}
}

// TestRoundTripReuse sends requests of different shapes through one handler
// so that each decodes into state a different request left behind.
func TestRoundTripReuse(t *testing.T) {
	for _, p := range protos {
		t.Run(p.Label(), func(t *testing.T) {
			q := &fakeQueue{t: t}
			h, _, _ := newTestHandler(t, q, Options{})
			all := roundTripSeries()
			shapes := [][]tseries{
				all,
				{all[3]},
				{all[1], all[0]},
				{histogramSeries("h", staleHistogram)},
				nil,
				{all[2], all[3], all[0], all[1]},
				{tseries{labels: []string{"__name__", "only_labels"}, samples: []prw.Sample{{Value: 1}}}},
			}
			for i, series := range shapes {
				q.got = nil
				rec := serve(h, rwtest.NewHTTPRequest(p, encode(p, series, nil)))
				require.Equal(t, http.StatusNoContent, rec.Code, "shape %d: %s", i, rec.Body.String())
				if len(series) == 0 {
					require.Empty(t, q.got)
					continue
				}
				require.Len(t, q.got, 1)
				want := expected(p, series, nil)
				if i == 3 { // NaN sum: compare bits, then the rest
					require.Equal(t, value.StaleNaN, math.Float64bits(q.got[0].Series[0].Histograms[0].Sum))
					want.Series[0].Histograms[0].Sum, q.got[0].Series[0].Histograms[0].Sum = 0, 0
				}
				require.Equal(t, want, q.got[0], "shape %d", i)
			}
		})
	}
}

func TestRoundTripStaleMarkers(t *testing.T) {
	stale := math.Float64frombits(value.StaleNaN)
	otherNaN := math.Float64frombits(0x7ff8000000000001)
	series := []tseries{
		{labels: []string{"__name__", "up", "job", "a"}, samples: []prw.Sample{
			{Value: 1, Timestamp: 1},
			{Value: stale, Timestamp: 2},
			{Value: otherNaN, Timestamp: 3},
		}},
		histogramSeries("h", staleHistogram),
	}
	for _, p := range protos {
		t.Run(p.Label(), func(t *testing.T) {
			q := &fakeQueue{t: t}
			h, _, _ := newTestHandler(t, q, Options{})
			rec := serve(h, rwtest.NewHTTPRequest(p, encode(p, series, nil)))
			require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
			got := q.got[0].Series
			require.Len(t, got, 2)
			require.Equal(t, math.Float64bits(1), math.Float64bits(got[0].Samples[0].Value))
			require.Equal(t, value.StaleNaN, math.Float64bits(got[0].Samples[1].Value))
			require.True(t, value.IsStaleNaN(got[0].Samples[1].Value))
			require.Equal(t, uint64(0x7ff8000000000001), math.Float64bits(got[0].Samples[2].Value))
			require.Equal(t, value.StaleNaN, math.Float64bits(got[1].Histograms[0].Sum))
		})
	}
}

// TestRoundTripRWTest checks that rwtest's payloads arrive as generated.
func TestRoundTripRWTest(t *testing.T) {
	q := &fakeQueue{t: t}
	h, _, _ := newTestHandler(t, q, Options{})

	rec := serve(h, rwtest.NewHTTPRequest(prw.ProtoV1, rwtest.Encode(rwtest.V1Request(600, 2))))
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	rec = serve(h, rwtest.NewHTTPRequest(prw.ProtoV2, rwtest.Encode(rwtest.V2Request(600, 2))))
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	require.Equal(t, "1200", rec.Header().Get(prw.HeaderSamplesWritten))

	require.Len(t, q.got, 2)
	for _, got := range q.got {
		require.Len(t, got.Series, 600)
		seen := map[string]bool{}
		for i, s := range got.Series {
			require.Equal(t, rwtest.SeriesLabels(i), s.Labels)
			require.Equal(t, 10, s.Labels.Len())
			seen[s.Labels.String()] = true
			for j, smp := range s.Samples {
				require.Equal(t, rwtest.SampleValue(i, j), smp.Value)
				require.Equal(t, rwtest.SampleTimestamp(j), smp.Timestamp)
			}
			if got.Proto == prw.ProtoV2 {
				require.Equal(t, prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: rwtest.MetricHelp, Unit: rwtest.MetricUnit}, s.Metadata)
				require.Equal(t, rwtest.StartTimestamp, s.Samples[0].StartTimestamp)
			}
		}
		require.Len(t, seen, 600, "series are distinct")
	}
}

type wantKey struct{}

// checkingQueue compares each request with the one its HTTP request's
// context says was sent.
type checkingQueue struct{ t testing.TB }

func (q checkingQueue) Enqueue(ctx context.Context, req *prw.Request) error {
	want := ctx.Value(wantKey{}).(decodedRequest)
	runtime.Gosched() // let other requests run while this one is held
	got := copyRequest(q.t, req)
	if !requestsEqual(want, got) {
		return fmt.Errorf("request mismatch: want %d series (first %s), got %d series (first %s)",
			len(want.Series), want.Series[0].Labels, len(got.Series), got.Series[0].Labels)
	}
	return nil
}

func requestsEqual(a, b decodedRequest) bool {
	if a.Proto != b.Proto || len(a.Series) != len(b.Series) {
		return false
	}
	for i := range a.Series {
		x, y := a.Series[i], b.Series[i]
		if !labels.Equal(x.Labels, y.Labels) || len(x.Samples) != len(y.Samples) || x.Metadata != y.Metadata {
			return false
		}
		for j := range x.Samples {
			if x.Samples[j] != y.Samples[j] {
				return false
			}
		}
	}
	return true
}

// TestHandlerConcurrent proves that concurrent requests do not share
// buffers: each goroutine sends requests of its own content and sizes, and
// the Enqueuer checks each request against what its sender sent. Run with
// -race.
func TestHandlerConcurrent(t *testing.T) {
	const goroutines, requests = 8, 500
	h, m, _ := newTestHandler(t, checkingQueue{t}, Options{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range requests {
				p := protos[(g+i)%2]
				n := 1 + (g*31+i*7)%25
				series := make([]tseries, n)
				for k := range series {
					series[k] = tseries{
						labels: []string{"__name__", fmt.Sprintf("m_%d", k), "g", fmt.Sprint(g), "i", fmt.Sprint(i),
							"pad", string(make([]byte, (g*i+k)%300))},
						samples: []prw.Sample{{Value: float64(g*1e6 + i*100 + k), Timestamp: int64(i), StartTimestamp: int64(g)}},
						meta:    prw.Metadata{Help: fmt.Sprintf("help %d %d", g, i)},
					}
				}
				want := expected(p, series, nil)
				r := rwtest.NewHTTPRequest(p, encode(p, series, nil))
				r = r.WithContext(context.WithValue(r.Context(), wantKey{}, want))
				rec := serve(h, r)
				if rec.Code != http.StatusNoContent {
					t.Errorf("goroutine %d request %d: status %d: %s", g, i, rec.Code, rec.Body.String())
					return
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, float64(goroutines*requests), testutilSum(m.Requests.WithLabelValues("1.0"), m.Requests.WithLabelValues("2.0")))
}
