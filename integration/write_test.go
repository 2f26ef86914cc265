//go:build integration

package integration

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// testIntHistogram returns a valid integer histogram (count = zero count +
// buckets; checked with Validate in the test) that varies with i.
func testIntHistogram(i int) *histogram.Histogram {
	return &histogram.Histogram{
		Schema:          1,
		ZeroThreshold:   0.001,
		ZeroCount:       uint64(2 + i),
		Count:           uint64(13 + 5*i),
		Sum:             36.8 + float64(i),
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}, {Offset: 1, Length: 2}},
		PositiveBuckets: []int64{int64(1 + i), 1, -1, 0},
		NegativeSpans:   []histogram.Span{{Offset: 0, Length: 2}},
		NegativeBuckets: []int64{2, 2},
	}
}

// testFloatHistogram returns a valid gauge float histogram that varies with
// i; its values are dyadic, so the count is exactly the buckets' sum.
func testFloatHistogram(i int) *histogram.FloatHistogram {
	return &histogram.FloatHistogram{
		CounterResetHint: histogram.GaugeType,
		Schema:           0,
		ZeroThreshold:    1e-128,
		ZeroCount:        0.5,
		Count:            10.375 + float64(i),
		Sum:              -3.1415926535,
		PositiveSpans:    []histogram.Span{{Offset: -2, Length: 3}},
		PositiveBuckets:  []float64{1.5, 0.25, 2 + float64(i)},
		NegativeSpans:    []histogram.Span{{Offset: 3, Length: 1}},
		NegativeBuckets:  []float64{6.125},
	}
}

// writeRequests returns a 1.0 and a 2.0 request with float samples, a stale
// marker, int and float native histograms and exemplars, with timestamps
// from base (ms).
func writeRequests(base int64) (*prompb.WriteRequest, *writev2.Request) {
	lbl := func(kv ...string) []prompb.Label {
		var out []prompb.Label
		for i := 0; i < len(kv); i += 2 {
			out = append(out, prompb.Label{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	v1 := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			{
				Labels: lbl("__name__", "it_v1_gauge", "instance", "a:1", "job", "it"),
				Samples: []prompb.Sample{
					{Timestamp: base, Value: 1.5},
					{Timestamp: base + 1000, Value: math.NaN()}, // an ordinary NaN, not a stale marker
					{Timestamp: base + 2000, Value: math.Inf(1)},
					{Timestamp: base + 3000, Value: math.Float64frombits(value.StaleNaN)},
				},
			},
			{
				Labels:  lbl("__name__", "it_v1_requests_total", "instance", "a:1", "job", "it", "zone", "z"),
				Samples: []prompb.Sample{{Timestamp: base, Value: 42}, {Timestamp: base + 1000, Value: 43}},
				Exemplars: []prompb.Exemplar{
					{Labels: lbl("trace_id", "4bf92f3577b34da6", "span_id", "00f067aa0ba902b7"), Value: 1, Timestamp: base + 500},
				},
			},
			{
				Labels: lbl("__name__", "it_v1_latency_seconds", "instance", "a:1", "job", "it"),
				Histograms: []prompb.Histogram{
					prompb.FromIntHistogram(base, testIntHistogram(0)),
					prompb.FromIntHistogram(base+1000, testIntHistogram(1)),
				},
				Exemplars: []prompb.Exemplar{
					{Labels: lbl("trace_id", "a1"), Value: 0.25, Timestamp: base + 100},
				},
			},
			{
				Labels: lbl("__name__", "it_v1_size_bytes", "instance", "a:1", "job", "it"),
				Histograms: []prompb.Histogram{
					prompb.FromFloatHistogram(base, testFloatHistogram(0)),
				},
			},
		},
	}

	st := writev2.NewSymbolTable()
	refs := func(kv ...string) []uint32 {
		return st.SymbolizeLabels(labels.FromStrings(kv...), nil)
	}
	v2 := &writev2.Request{
		Timeseries: []writev2.TimeSeries{
			{
				LabelsRefs: refs("__name__", "it_v2_gauge", "instance", "b:2", "job", "it"),
				Samples: []writev2.Sample{
					{Timestamp: base, Value: 2.5},
					{Timestamp: base + 1000, Value: math.Float64frombits(value.StaleNaN)},
				},
				Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: st.Symbolize("A test gauge."), UnitRef: 0},
			},
			{
				LabelsRefs: refs("__name__", "it_v2_requests_total", "instance", "b:2", "job", "it"),
				Samples:    []writev2.Sample{{Timestamp: base, Value: 7}},
				Exemplars: []writev2.Exemplar{
					{LabelsRefs: refs("trace_id", "cafe"), Value: 7, Timestamp: base - 10},
				},
				Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("Requests."), UnitRef: 0},
			},
			{
				LabelsRefs: refs("__name__", "it_v2_latency_seconds", "instance", "b:2", "job", "it"),
				Histograms: []writev2.Histogram{
					writev2.FromIntHistogram(0, base, testIntHistogram(2)),
				},
				Exemplars: []writev2.Exemplar{
					{LabelsRefs: refs("trace_id", "beef", "sampled", "true"), Value: 0.125, Timestamp: base},
				},
				Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HelpRef: st.Symbolize("Latency."), UnitRef: st.Symbolize("seconds")},
			},
			{
				LabelsRefs: refs("__name__", "it_v2_size_bytes", "instance", "b:2", "job", "it"),
				Histograms: []writev2.Histogram{
					writev2.FromFloatHistogram(0, base, testFloatHistogram(3)),
					writev2.FromFloatHistogram(0, base+1000, testFloatHistogram(4)),
				},
				Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGEHISTOGRAM, HelpRef: st.Symbolize("Sizes."), UnitRef: st.Symbolize("bytes")},
			},
		},
	}
	v2.Symbols = st.Symbols()
	return v1, v2
}

// TestWriteV1AndV2ToV2Upstream sends a 1.0 and a 2.0 request with native
// histograms, exemplars and stale markers to the gateway, and checks that its
// 2.0 upstream receives exactly that data with gw="test" added.
func TestWriteV1AndV2ToV2Upstream(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	sink := NewSink(t)
	gw := Gateway(t, GatewayConfig("sink", sink.URL+"/api/v1/write", protoV2))

	for i := range 5 {
		require.NoError(t, testIntHistogram(i).Validate(), "test data: int histogram %d", i)
		require.NoError(t, testFloatHistogram(i).Validate(), "test data: float histogram %d", i)
	}
	base := time.Now().Add(-time.Minute).UnixMilli()
	v1, v2 := writeRequests(base)
	extra := labels.FromStrings("gw", "test")
	// Expect what goes on the wire: decode what was encoded. (The gogo
	// encoders skip a proto3 double equal to 0, so a -0 sample arrives as 0.)
	var v1Wire prompb.WriteRequest
	var v2Wire writev2.Request
	raw, err := v1.Marshal()
	require.NoError(t, err)
	require.NoError(t, v1Wire.Unmarshal(raw))
	raw, err = v2.Marshal()
	require.NoError(t, err)
	require.NoError(t, v2Wire.Unmarshal(raw))
	want := Received{}
	require.NoError(t, want.RecordV1(&v1Wire, extra))
	require.NoError(t, want.RecordV2(&v2Wire, extra))
	wantSamples, wantHistograms, wantExemplars := want.Counts()

	resp, err := PostV1(gw.URL("/api/v1/write"), v1)
	require.NoError(t, err)
	require.Truef(t, resp.Status/100 == 2, "1.0 write: %d %s", resp.Status, resp.Body)
	resp, err = PostV2(gw.URL("/api/v1/write"), v2)
	require.NoError(t, err)
	require.Truef(t, resp.Status/100 == 2, "2.0 write: %d %s", resp.Status, resp.Body)
	t.Logf("2.0 write answered %d, written headers: samples=%q histograms=%q exemplars=%q", resp.Status,
		resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"),
		resp.Header.Get("X-Prometheus-Remote-Write-Histograms-Written"),
		resp.Header.Get("X-Prometheus-Remote-Write-Exemplars-Written"))

	var got Received
	var requests int
	var errs []string
	err = eventually(30*time.Second, 200*time.Millisecond, func() error {
		got, requests, errs = sink.Received()
		if len(errs) > 0 {
			return fmt.Errorf("sink rejected requests: %s", strings.Join(errs, "; "))
		}
		s, h, e := got.Counts()
		if s < wantSamples || h < wantHistograms || e < wantExemplars {
			return fmt.Errorf("sink has %d/%d samples, %d/%d histograms, %d/%d exemplars",
				s, wantSamples, h, wantHistograms, e, wantExemplars)
		}
		return nil
	})
	require.Empty(t, errs, "sink rejected requests")
	require.NoError(t, err)
	// Anything more than expected would show up now, too.
	time.Sleep(1500 * time.Millisecond)
	got, requests, errs = sink.Received()
	require.Empty(t, errs, "sink rejected requests")
	require.Equal(t, want, got)
	t.Logf("sink received exactly the %d samples, %d histograms and %d exemplars sent, in %d requests",
		wantSamples, wantHistograms, wantExemplars, requests)
}
