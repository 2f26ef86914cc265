package receiver

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

var protos = []prw.Protocol{prw.ProtoV1, prw.ProtoV2}

// tseries is a protocol-neutral test series. labels are name/value pairs in
// send order; they may be invalid on purpose.
type tseries struct {
	labels     []string
	samples    []prw.Sample
	histograms []prw.Histogram
	exemplars  []prw.Exemplar
	meta       prw.Metadata
}

func validSeries(name string, v float64) tseries {
	return tseries{
		labels:  []string{"__name__", name, "job", "test", "instance", "a:9100"},
		samples: []prw.Sample{{Value: v, Timestamp: 1000, StartTimestamp: 500}},
	}
}

// buildV1 returns the 1.0 message of series; start timestamps are dropped.
func buildV1(series []tseries, md []prw.FamilyMetadata) *prompb.WriteRequest {
	wr := &prompb.WriteRequest{}
	for _, s := range series {
		var ts prompb.TimeSeries
		for i := 0; i+1 < len(s.labels); i += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: s.labels[i], Value: s.labels[i+1]})
		}
		for _, smp := range s.samples {
			ts.Samples = append(ts.Samples, prompb.Sample{Value: smp.Value, Timestamp: smp.Timestamp})
		}
		for _, h := range s.histograms {
			ts.Histograms = append(ts.Histograms, rwtest.HistogramToV1(h))
		}
		for _, e := range s.exemplars {
			ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: prompb.FromLabels(e.Labels, nil), Value: e.Value, Timestamp: e.Timestamp})
		}
		wr.Timeseries = append(wr.Timeseries, ts)
	}
	for _, m := range md {
		wr.Metadata = append(wr.Metadata, prompb.MetricMetadata{
			Type: prompb.MetricMetadata_MetricType(m.Type), MetricFamilyName: m.MetricFamilyName, Help: m.Help, Unit: m.Unit,
		})
	}
	return wr
}

// buildV2 returns the 2.0 message of series.
func buildV2(series []tseries) *writev2.Request {
	st := writev2.NewSymbolTable()
	wr := &writev2.Request{}
	for _, s := range series {
		var ts writev2.TimeSeries
		for i := 0; i+1 < len(s.labels); i += 2 {
			ts.LabelsRefs = append(ts.LabelsRefs, st.Symbolize(s.labels[i]), st.Symbolize(s.labels[i+1]))
		}
		ts.Metadata = writev2.Metadata{Type: s.meta.Type, HelpRef: st.Symbolize(s.meta.Help), UnitRef: st.Symbolize(s.meta.Unit)}
		for _, smp := range s.samples {
			ts.Samples = append(ts.Samples, writev2.Sample{Value: smp.Value, Timestamp: smp.Timestamp, StartTimestamp: smp.StartTimestamp})
		}
		ts.Histograms = append(ts.Histograms, s.histograms...)
		for _, e := range s.exemplars {
			ts.Exemplars = append(ts.Exemplars, writev2.Exemplar{LabelsRefs: st.SymbolizeLabels(e.Labels, nil), Value: e.Value, Timestamp: e.Timestamp})
		}
		wr.Timeseries = append(wr.Timeseries, ts)
	}
	wr.Symbols = st.Symbols()
	return wr
}

// encode returns the snappy body of series in protocol p.
func encode(p prw.Protocol, series []tseries, md []prw.FamilyMetadata) []byte {
	if p == prw.ProtoV2 {
		return rwtest.Encode(buildV2(series))
	}
	return rwtest.Encode(buildV1(series, md))
}

// expected returns what the Enqueuer should receive for series sent in p.
func expected(p prw.Protocol, series []tseries, md []prw.FamilyMetadata) decodedRequest {
	req := decodedRequest{Proto: p}
	for _, s := range series {
		out := prw.Series{
			Labels:     labels.FromStrings(s.labels...),
			Samples:    slices.Clone(s.samples),
			Histograms: slices.Clone(s.histograms),
			Exemplars:  slices.Clone(s.exemplars),
		}
		if p == prw.ProtoV1 {
			for i := range out.Samples {
				out.Samples[i].StartTimestamp = 0
			}
			for i := range out.Histograms {
				out.Histograms[i] = prw.HistogramFromV1(rwtest.HistogramToV1(out.Histograms[i]))
			}
		} else {
			out.Metadata = s.meta
		}
		req.Series = append(req.Series, out)
	}
	if p == prw.ProtoV1 {
		req.Metadata = md
	}
	return normalize(req)
}

// decodedRequest is a request as tests compare it: decoded from the form.
type decodedRequest struct {
	Proto    prw.Protocol
	Series   []prw.Series
	Metadata []prw.FamilyMetadata
}

// counts returns the numbers of samples, histograms and exemplars of r.
func (r decodedRequest) counts() (samples, histograms, exemplars int) {
	for _, s := range r.Series {
		samples, histograms, exemplars = samples+len(s.Samples), histograms+len(s.Histograms), exemplars+len(s.Exemplars)
	}
	return samples, histograms, exemplars
}

// copyRequest decodes r from the form, which it checks (see
// checkRawMatches); a test fails on a form that does not decode.
func copyRequest(t testing.TB, r *prw.Request) decodedRequest {
	t.Helper()
	series, md, err := rwtest.Decode(r)
	if err != nil {
		t.Errorf("the form does not decode: %v", err)
	}
	out := decodedRequest{Proto: r.Proto, Series: series, Metadata: md}
	checkRawMatches(t, r, out)
	return normalize(out)
}

// normalize deep-copies r, with empty slices as nil so that requests
// compare equal whatever buffers they came from.
func normalize(r decodedRequest) decodedRequest {
	out := decodedRequest{Proto: r.Proto}
	for _, s := range r.Series {
		c := prw.Series{Labels: s.Labels.Copy(), Metadata: s.Metadata, Samples: cloneOrNil(s.Samples)}
		for _, h := range s.Histograms {
			c.Histograms = append(c.Histograms, copyHistogram(h))
		}
		for _, e := range s.Exemplars {
			c.Exemplars = append(c.Exemplars, prw.Exemplar{Labels: e.Labels.Copy(), Value: e.Value, Timestamp: e.Timestamp})
		}
		out.Series = append(out.Series, c)
	}
	out.Metadata = cloneOrNil(r.Metadata)
	return out
}

func copyHistogram(h prw.Histogram) prw.Histogram {
	c := prw.Histogram{
		Sum: h.Sum, Schema: h.Schema, ZeroThreshold: h.ZeroThreshold, ResetHint: h.ResetHint,
		Timestamp: h.Timestamp, StartTimestamp: h.StartTimestamp,
		NegativeSpans: cloneOrNil(h.NegativeSpans), NegativeDeltas: cloneOrNil(h.NegativeDeltas), NegativeCounts: cloneOrNil(h.NegativeCounts),
		PositiveSpans: cloneOrNil(h.PositiveSpans), PositiveDeltas: cloneOrNil(h.PositiveDeltas), PositiveCounts: cloneOrNil(h.PositiveCounts),
		CustomValues: cloneOrNil(h.CustomValues),
	}
	for i := range c.NegativeSpans {
		c.NegativeSpans[i].XXX_sizecache = 0
	}
	for i := range c.PositiveSpans {
		c.PositiveSpans[i].XXX_sizecache = 0
	}
	switch v := h.Count.(type) {
	case *writev2.Histogram_CountInt:
		c.Count = &writev2.Histogram_CountInt{CountInt: v.CountInt}
	case *writev2.Histogram_CountFloat:
		c.Count = &writev2.Histogram_CountFloat{CountFloat: v.CountFloat}
	}
	switch v := h.ZeroCount.(type) {
	case *writev2.Histogram_ZeroCountInt:
		c.ZeroCount = &writev2.Histogram_ZeroCountInt{ZeroCountInt: v.ZeroCountInt}
	case *writev2.Histogram_ZeroCountFloat:
		c.ZeroCount = &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: v.ZeroCountFloat}
	}
	return c
}

func cloneOrNil[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

// fakeQueue is an Enqueuer that records deep copies of what it is given.
type fakeQueue struct {
	err error // returned by every Enqueue

	t   testing.TB
	mu  sync.Mutex
	got []decodedRequest
}

func (q *fakeQueue) Enqueue(_ context.Context, req *prw.Request) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.got = append(q.got, copyRequest(q.t, req))
	return q.err
}

// retryAfterErr is a queue-full error as the forwarder returns it.
type retryAfterErr struct{ d time.Duration }

func (e retryAfterErr) Error() string             { return "queue of upstream \"a\" is full" }
func (e retryAfterErr) RetryAfter() time.Duration { return e.d }
func (e retryAfterErr) StatusCode() int           { return http.StatusServiceUnavailable }
func (e retryAfterErr) Reason() string            { return registry.ReasonQueueFull }

// statusErr is an Enqueue error with a status and a reason, and no
// Retry-After.
type statusErr struct {
	code   int
	reason string
}

func (e statusErr) Error() string   { return e.reason }
func (e statusErr) StatusCode() int { return e.code }
func (e statusErr) Reason() string  { return e.reason }

// newTestHandler returns a handler over q with its own pedantic registry.
func newTestHandler(t testing.TB, q Enqueuer, opts Options) (*Handler, *registry.ReceiverMetrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m := registry.NewReceiverMetrics(reg)
	return NewHandler(nil, m, q, opts), m, reg
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// Histograms of every kind, valid.
var (
	intExpHistogram = prw.Histogram{
		Count: &writev2.Histogram_CountInt{CountInt: 10}, ZeroCount: &writev2.Histogram_ZeroCountInt{ZeroCountInt: 2},
		Sum: 42.5, Schema: 3, ZeroThreshold: 0.001,
		PositiveSpans: []writev2.BucketSpan{{Offset: 0, Length: 2}, {Offset: 1, Length: 2}}, PositiveDeltas: []int64{1, 1, -1, 0}, // 1 2 1 1
		NegativeSpans: []writev2.BucketSpan{{Offset: -2, Length: 1}}, NegativeDeltas: []int64{3},
		ResetHint: writev2.Histogram_RESET_HINT_NO, Timestamp: 2000, StartTimestamp: 1500,
	}
	floatExpHistogram = prw.Histogram{
		Count: &writev2.Histogram_CountFloat{CountFloat: 10.5}, ZeroCount: &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: 1.5},
		Sum: -3.25, Schema: -2, ZeroThreshold: 1e-128,
		PositiveSpans: []writev2.BucketSpan{{Offset: 0, Length: 2}}, PositiveCounts: []float64{2, 3.5},
		NegativeSpans: []writev2.BucketSpan{{Offset: 1, Length: 1}}, NegativeCounts: []float64{3.5},
		ResetHint: writev2.Histogram_RESET_HINT_GAUGE, Timestamp: 2000, StartTimestamp: 1000,
	}
	intCustomHistogram = prw.Histogram{
		Count: &writev2.Histogram_CountInt{CountInt: 6}, Sum: 1.25, Schema: -53,
		PositiveSpans: []writev2.BucketSpan{{Offset: 0, Length: 3}}, PositiveDeltas: []int64{1, 2, -1}, // 1 3 2
		CustomValues: []float64{0.1, 0.5, 1}, Timestamp: 3000, StartTimestamp: 100,
	}
	floatCustomHistogram = prw.Histogram{
		Count: &writev2.Histogram_CountFloat{CountFloat: 4.5}, Sum: 8, Schema: -53,
		PositiveSpans: []writev2.BucketSpan{{Offset: 0, Length: 1}, {Offset: 1, Length: 1}}, PositiveCounts: []float64{1.5, 3},
		CustomValues: []float64{1, 10, 100}, Timestamp: 3000,
	}
	staleHistogram = prw.Histogram{
		Count: &writev2.Histogram_CountInt{}, ZeroCount: &writev2.Histogram_ZeroCountInt{},
		Sum: math.Float64frombits(value.StaleNaN), Schema: 0, Timestamp: 4000,
	}
)

// histogramSeries returns a valid series holding h.
func histogramSeries(name string, h ...prw.Histogram) tseries {
	return tseries{labels: []string{"__name__", name, "job", "test"}, histograms: h}
}

// withHistogram returns h changed by f, leaving the fixture alone.
func withHistogram(h prw.Histogram, f func(*prw.Histogram)) prw.Histogram {
	c := copyHistogram(h)
	f(&c)
	return c
}

// testutilSum returns the sum of the values of counters.
func testutilSum(cs ...prometheus.Collector) float64 {
	var sum float64
	for _, c := range cs {
		sum += testutil.ToFloat64(c)
	}
	return sum
}

// checkRawMatches checks that the descriptors of req's form describe the
// series decoded from it.
func checkRawMatches(t testing.TB, r *prw.Request, req decodedRequest) {
	t.Helper()
	raw := r.Raw
	if len(raw.Series) != len(req.Series) || len(raw.Metadata) != len(req.Metadata) {
		t.Errorf("raw form has %d series and %d metadata, decoded %d and %d",
			len(raw.Series), len(raw.Metadata), len(req.Series), len(req.Metadata))
		return
	}
	for i, rs := range raw.Series {
		s := &req.Series[i]
		want := rwtest.HashLabels(s.Labels)
		hash, _, err := prw.HashSeries(rs.Bytes(raw.Msg), nil)
		got, perr := prw.SeriesPoints(rs.Bytes(raw.Msg))
		if err != nil || perr != nil || rs.ShardHash(raw.Msg) != want || hash != want ||
			int(rs.Samples) != len(s.Samples) || int(rs.Histograms) != len(s.Histograms) || int(rs.Exemplars) != len(s.Exemplars) ||
			got.Samples != rs.Samples || got.Histograms != rs.Histograms || got.Exemplars != rs.Exemplars {
			t.Errorf("raw series %d (%s) does not match: %+v, rescanned %+v (err %v)", i, s.Labels, rs, got, err)
		}
	}
	samples, histograms, exemplars := req.counts()
	if raw.Samples != samples || raw.Histograms != histograms || raw.Exemplars != exemplars {
		t.Errorf("raw totals %d/%d/%d, decoded %d/%d/%d", raw.Samples, raw.Histograms, raw.Exemplars, samples, histograms, exemplars)
	}
}
