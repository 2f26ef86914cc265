package receiver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

// statusCase is one case of TestHandlerStatus, run for each protocol in
// protos (both when empty).
type statusCase struct {
	name   string
	protos []prw.Protocol

	// series is the payload, after one valid series "ok_metric" that every
	// case sends first unless noValid is set.
	series   []tseries
	noValid  bool
	mutateV2 func(*writev2.Request) // changes the 2.0 message before encoding
	body     func(p prw.Protocol, valid []byte) []byte
	request  func(r *http.Request) // changes the HTTP request
	opts     Options
	enqErr   error

	wantCode     int
	wantReason   string // registry.Reason*, "" on success
	wantInvalid  string // invalid series reason
	wantBody     string // substring of the body
	wantHeader   map[string]string
	wantAccepted int // series enqueued; -1: Enqueue not called
}

func TestHandlerStatus(t *testing.T) {
	v1Only := []prw.Protocol{prw.ProtoV1}
	v2Only := []prw.Protocol{prw.ProtoV2}
	invalid := func(name, reason string, s tseries, protos ...prw.Protocol) statusCase {
		return statusCase{
			name: name, protos: protos, series: []tseries{s},
			wantCode: http.StatusBadRequest, wantReason: registry.ReasonInvalidSeries, wantInvalid: reason,
			wantBody: "1 of 2 series refused", wantAccepted: 1,
		}
	}
	labelsSeries := func(lbls ...string) tseries {
		return tseries{labels: lbls, samples: []prw.Sample{{Value: 1, Timestamp: 1}}}
	}
	badHist := func(f func(*prw.Histogram)) tseries {
		return histogramSeries("bad_histogram", withHistogram(intExpHistogram, f))
	}
	badFloatHist := func(f func(*prw.Histogram)) tseries {
		return histogramSeries("bad_histogram", withHistogram(floatExpHistogram, f))
	}
	// A snappy block that claims to decode to 1 GiB: a bomb.
	bomb := append(binaryUvarint(1<<30), 0x00, 0x00, 0x00)

	cases := []statusCase{
		{name: "ok", wantCode: http.StatusNoContent, wantAccepted: 1},
		{name: "no series", noValid: true, wantCode: http.StatusNoContent, wantAccepted: -1},
		{name: "method GET", request: func(r *http.Request) { r.Method = http.MethodGet },
			wantCode: http.StatusMethodNotAllowed, wantReason: registry.ReasonMethod, wantHeader: map[string]string{"Allow": "POST"}, wantAccepted: -1},
		{name: "method PUT", request: func(r *http.Request) { r.Method = http.MethodPut },
			wantCode: http.StatusMethodNotAllowed, wantReason: registry.ReasonMethod, wantHeader: map[string]string{"Allow": "POST"}, wantAccepted: -1},
		{name: "content type json", request: func(r *http.Request) { r.Header.Set("Content-Type", "application/json") },
			wantCode: http.StatusUnsupportedMediaType, wantReason: registry.ReasonContentType, wantAccepted: -1},
		{name: "content type unparsable", request: func(r *http.Request) { r.Header.Set("Content-Type", "application/x-protobuf; proto") },
			wantCode: http.StatusUnsupportedMediaType, wantReason: registry.ReasonContentType, wantAccepted: -1},
		{name: "unknown proto", request: func(r *http.Request) {
			r.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v3.Request")
		}, wantCode: http.StatusUnsupportedMediaType, wantReason: registry.ReasonContentType, wantBody: "unsupported proto", wantAccepted: -1},
		{name: "empty content type is 1.0", protos: v1Only, request: func(r *http.Request) { r.Header.Del("Content-Type") },
			wantCode: http.StatusNoContent, wantAccepted: 1},
		{name: "explicit 1.0 proto", protos: v1Only, request: func(r *http.Request) {
			r.Header.Set("Content-Type", "application/x-protobuf; proto=prometheus.WriteRequest")
		}, wantCode: http.StatusNoContent, wantAccepted: 1},
		{name: "content type with spaces and case", protos: v2Only, request: func(r *http.Request) {
			r.Header.Set("Content-Type", "Application/X-Protobuf; proto=io.prometheus.write.v2.Request")
		}, wantCode: http.StatusNoContent, wantAccepted: 1},
		{name: "content encoding gzip", request: func(r *http.Request) { r.Header.Set("Content-Encoding", "gzip") },
			wantCode: http.StatusUnsupportedMediaType, wantReason: registry.ReasonContentEncoding, wantAccepted: -1},
		{name: "content encoding zstd", request: func(r *http.Request) { r.Header.Set("Content-Encoding", "zstd") },
			wantCode: http.StatusUnsupportedMediaType, wantReason: registry.ReasonContentEncoding, wantAccepted: -1},
		{name: "empty content encoding is snappy", request: func(r *http.Request) { r.Header.Del("Content-Encoding") },
			wantCode: http.StatusNoContent, wantAccepted: 1},
		{name: "content length over limit", opts: Options{MaxRequestBytes: 10},
			wantCode: http.StatusRequestEntityTooLarge, wantReason: registry.ReasonTooLarge, wantAccepted: -1},
		{name: "chunked body over limit", opts: Options{MaxRequestBytes: 10}, request: func(r *http.Request) { r.ContentLength = -1 },
			wantCode: http.StatusRequestEntityTooLarge, wantReason: registry.ReasonTooLarge, wantAccepted: -1},
		{name: "chunked body under limit", request: func(r *http.Request) { r.ContentLength = -1 },
			wantCode: http.StatusNoContent, wantAccepted: 1},
		{name: "short body", request: func(r *http.Request) { r.ContentLength += 10 },
			wantCode: http.StatusBadRequest, wantReason: registry.ReasonReadError, wantAccepted: -1},
		{name: "decoded over limit", opts: Options{MaxDecodedBytes: 10},
			wantCode: http.StatusBadRequest, wantReason: registry.ReasonDecodedTooLarge, wantAccepted: -1},
		{name: "snappy bomb", body: func(prw.Protocol, []byte) []byte { return bomb },
			wantCode: http.StatusBadRequest, wantReason: registry.ReasonDecodedTooLarge, wantAccepted: -1},
		{name: "snappy corrupt", body: func(_ prw.Protocol, valid []byte) []byte { return valid[:len(valid)/2] },
			wantCode: http.StatusBadRequest, wantReason: registry.ReasonSnappy, wantAccepted: -1},
		{name: "snappy framed format", body: func(_ prw.Protocol, valid []byte) []byte {
			var b bytes.Buffer
			w := snappy.NewBufferedWriter(&b)
			_, _ = w.Write(valid)
			_ = w.Close()
			return b.Bytes()
		}, wantCode: http.StatusBadRequest, wantReason: registry.ReasonSnappy, wantAccepted: -1},
		{name: "empty body", body: func(prw.Protocol, []byte) []byte { return nil },
			wantCode: http.StatusBadRequest, wantReason: registry.ReasonSnappy, wantAccepted: -1},
		{name: "not protobuf", body: func(prw.Protocol, []byte) []byte { return snappy.Encode(nil, []byte("hello, world")) },
			wantCode: http.StatusBadRequest, wantReason: registry.ReasonProtobuf, wantAccepted: -1},
		{name: "truncated protobuf", body: func(p prw.Protocol, _ []byte) []byte {
			b, _ := buildV1([]tseries{validSeries("x", 1)}, nil).Marshal()
			if p == prw.ProtoV2 {
				b, _ = buildV2([]tseries{validSeries("x", 1)}).Marshal()
			}
			return snappy.Encode(nil, b[:len(b)-3])
		}, wantCode: http.StatusBadRequest, wantReason: registry.ReasonProtobuf, wantAccepted: -1},
		{name: "queue full with retry after", enqErr: fmt.Errorf("enqueue: %w", retryAfterErr{2500 * time.Millisecond}),
			wantCode: http.StatusServiceUnavailable, wantReason: registry.ReasonQueueFull, wantHeader: map[string]string{"Retry-After": "3"}, wantAccepted: 1},
		{name: "queue full with short retry after", enqErr: retryAfterErr{10 * time.Millisecond},
			wantCode: http.StatusServiceUnavailable, wantReason: registry.ReasonQueueFull, wantHeader: map[string]string{"Retry-After": "1"}, wantAccepted: 1},
		{name: "queue full without retry after", enqErr: fmt.Errorf("upstream a: %w", statusErr{http.StatusServiceUnavailable, registry.ReasonQueueFull}),
			wantCode: http.StatusServiceUnavailable, wantReason: registry.ReasonQueueFull, wantHeader: map[string]string{"Retry-After": "1"}, wantAccepted: 1},
		{name: "shutting down", enqErr: statusErr{http.StatusServiceUnavailable, registry.ReasonShuttingDown},
			wantCode: http.StatusServiceUnavailable, wantReason: registry.ReasonShuttingDown, wantHeader: map[string]string{"Retry-After": "1"}, wantAccepted: 1},
		{name: "enqueue internal error", enqErr: io.ErrClosedPipe,
			wantCode: http.StatusInternalServerError, wantReason: registry.ReasonInternal, wantAccepted: 1},
		{name: "partial write with queue full", series: []tseries{labelsSeries("job", "x")}, enqErr: retryAfterErr{time.Second},
			wantCode: http.StatusServiceUnavailable, wantReason: registry.ReasonQueueFull, wantInvalid: "missing_metric_name",
			wantHeader: map[string]string{"Retry-After": "1"}, wantAccepted: 1},
		{name: "only invalid series", noValid: true, series: []tseries{labelsSeries("job", "x")},
			wantCode: http.StatusBadRequest, wantReason: registry.ReasonInvalidSeries, wantInvalid: "missing_metric_name",
			wantBody: "1 of 1 series refused", wantAccepted: -1},

		// Series validation.
		invalid("missing metric name", "missing_metric_name", labelsSeries("job", "x")),
		invalid("empty metric name", "missing_metric_name", labelsSeries("__name__", "", "job", "x")),
		invalid("empty label set", "empty_labels", labelsSeries()),
		invalid("duplicate label name", "duplicate_label_name", labelsSeries("__name__", "a", "job", "x", "job", "y")),
		invalid("empty label name", "empty_label_name", labelsSeries("__name__", "a", "", "x")),
		invalid("invalid UTF-8 label name", "invalid_utf8", labelsSeries("__name__", "a", "jo\xffb", "x")),
		invalid("invalid UTF-8 label value", "invalid_utf8", labelsSeries("__name__", "a", "job", "x\xc3")),
		invalid("invalid UTF-8 metric name", "invalid_utf8", labelsSeries("__name__", "a\xff")),
		invalid("no samples or histograms", "no_samples", tseries{labels: []string{"__name__", "a"}}),
		invalid("integer histogram count mismatch", "invalid_histogram", badHist(func(h *prw.Histogram) {
			h.Count = &writev2.Histogram_CountInt{CountInt: 11}
		})),
		invalid("integer histogram zero count mismatch", "invalid_histogram", badHist(func(h *prw.Histogram) {
			h.ZeroCount = &writev2.Histogram_ZeroCountInt{ZeroCountInt: 3}
		})),
		invalid("integer histogram spans longer than deltas", "invalid_histogram", badHist(func(h *prw.Histogram) {
			h.PositiveSpans[1].Length = 3
		})),
		invalid("integer histogram negative spans shorter than deltas", "invalid_histogram", badHist(func(h *prw.Histogram) {
			h.NegativeDeltas = append(h.NegativeDeltas, 0)
		})),
		invalid("integer histogram negative bucket", "invalid_histogram", badHist(func(h *prw.Histogram) {
			h.PositiveDeltas = []int64{1, -2, 3, 0}
		})),
		invalid("integer histogram with float counts", "invalid_histogram", badHist(func(h *prw.Histogram) {
			h.PositiveCounts = []float64{1, 2, 1, 1}
		})),
		invalid("histogram mixing int count and float zero count", "invalid_histogram", badHist(func(h *prw.Histogram) {
			h.ZeroCount = &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: 2}
		})),
		invalid("float histogram count mismatch", "invalid_histogram", badFloatHist(func(h *prw.Histogram) {
			h.Count = &writev2.Histogram_CountFloat{CountFloat: 10.6}
		})),
		invalid("float histogram spans mismatch", "invalid_histogram", badFloatHist(func(h *prw.Histogram) {
			h.PositiveCounts = append(h.PositiveCounts, 0)
		})),
		invalid("float histogram negative bucket", "invalid_histogram", badFloatHist(func(h *prw.Histogram) {
			h.PositiveCounts = []float64{-2, 7.5}
		})),
		invalid("custom buckets histogram count mismatch", "invalid_histogram",
			histogramSeries("bad_histogram", withHistogram(intCustomHistogram, func(h *prw.Histogram) {
				h.Count = &writev2.Histogram_CountInt{CountInt: 7}
			}))),
		{name: "float histogram within tolerance", series: []tseries{histogramSeries("h", withHistogram(floatExpHistogram, func(h *prw.Histogram) {
			h.Count = &writev2.Histogram_CountFloat{CountFloat: 10.5 + 1e-9}
		}))}, wantCode: http.StatusNoContent, wantAccepted: 2},
		{name: "custom buckets histogram ignores the zero bucket", series: []tseries{histogramSeries("h", withHistogram(intCustomHistogram, func(h *prw.Histogram) {
			h.ZeroCount = &writev2.Histogram_ZeroCountInt{ZeroCountInt: 5}
		}))}, wantCode: http.StatusNoContent, wantAccepted: 2},
		{name: "histogram with NaN sum counts more than its buckets", series: []tseries{histogramSeries("h", withHistogram(intExpHistogram, func(h *prw.Histogram) {
			h.Sum = math.NaN()
			h.Count = &writev2.Histogram_CountInt{CountInt: 12}
		}))}, wantCode: http.StatusNoContent, wantAccepted: 2},
		{name: "stale histogram", series: []tseries{histogramSeries("h", staleHistogram)}, wantCode: http.StatusNoContent, wantAccepted: 2},

		// 1.0 senders and Prometheus's 2.0 sender put exemplars in series of
		// their own; a 2.0 series may carry only metadata.
		{name: "exemplar-only series", protos: v1Only, series: []tseries{{
			labels:    []string{"__name__", "a"},
			exemplars: []prw.Exemplar{{Labels: labels.FromStrings("trace_id", "1"), Value: 1, Timestamp: 1}},
		}}, wantCode: http.StatusNoContent, wantAccepted: 2},
		{name: "exemplar-only series", protos: []prw.Protocol{prw.ProtoV2}, series: []tseries{{
			labels:    []string{"__name__", "a"},
			exemplars: []prw.Exemplar{{Labels: labels.FromStrings("trace_id", "1"), Value: 1, Timestamp: 1}},
		}}, wantCode: http.StatusNoContent, wantAccepted: 2, wantHeader: map[string]string{
			prw.HeaderSamplesWritten: "1", prw.HeaderHistogramsWritten: "0", prw.HeaderExemplarsWritten: "1"}},
		{name: "metadata-only series", protos: []prw.Protocol{prw.ProtoV2}, series: []tseries{{
			labels: []string{"__name__", "a"},
			meta:   prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "A gauge."},
		}}, wantCode: http.StatusNoContent, wantAccepted: 2, wantHeader: map[string]string{
			prw.HeaderSamplesWritten: "1", prw.HeaderHistogramsWritten: "0", prw.HeaderExemplarsWritten: "0"}},

		// 2.0 references.
		withMutate(invalid("odd label refs", "label_refs", validSeries("b", 1), prw.ProtoV2), func(r *writev2.Request) {
			r.Timeseries[1].LabelsRefs = r.Timeseries[1].LabelsRefs[:3]
		}),
		withMutate(invalid("label ref out of range", "label_refs", validSeries("b", 1), prw.ProtoV2), func(r *writev2.Request) {
			r.Timeseries[1].LabelsRefs[3] = uint32(len(r.Symbols))
		}),
		withMutate(invalid("help ref out of range", "metadata_refs", validSeries("b", 1), prw.ProtoV2), func(r *writev2.Request) {
			r.Timeseries[1].Metadata.HelpRef = uint32(len(r.Symbols)) + 5
		}),
		withMutate(invalid("unit ref out of range", "metadata_refs", validSeries("b", 1), prw.ProtoV2), func(r *writev2.Request) {
			r.Timeseries[1].Metadata.UnitRef = math.MaxUint32
		}),
		withMutate(invalid("exemplar label ref out of range", "exemplar_label_refs", validSeries("b", 1), prw.ProtoV2), func(r *writev2.Request) {
			r.Timeseries[1].Exemplars = []writev2.Exemplar{{LabelsRefs: []uint32{1, uint32(len(r.Symbols))}, Value: 1, Timestamp: 1}}
		}),
		withMutate(invalid("odd exemplar label refs", "exemplar_label_refs", validSeries("b", 1), prw.ProtoV2), func(r *writev2.Request) {
			r.Timeseries[1].Exemplars = []writev2.Exemplar{{LabelsRefs: []uint32{1}, Value: 1, Timestamp: 1}}
		}),
	}

	for _, tc := range cases {
		ps := tc.protos
		if len(ps) == 0 {
			ps = protos
		}
		for _, p := range ps {
			t.Run(p.Label()+"/"+tc.name, func(t *testing.T) {
				runStatusCase(t, p, tc)
			})
		}
	}
}

func withMutate(tc statusCase, f func(*writev2.Request)) statusCase {
	tc.mutateV2 = f
	return tc
}

func runStatusCase(t *testing.T, p prw.Protocol, tc statusCase) {
	series := tc.series
	if !tc.noValid {
		series = append([]tseries{validSeries("ok_metric", 1)}, series...)
	}
	var body []byte
	if p == prw.ProtoV2 && tc.mutateV2 != nil {
		wr := buildV2(series)
		tc.mutateV2(wr)
		body = rwtest.Encode(wr)
	} else {
		body = encode(p, series, nil)
	}
	if tc.body != nil {
		body = tc.body(p, body)
	}
	r := rwtest.NewHTTPRequest(p, body)
	if tc.request != nil {
		tc.request(r)
	}
	q := &fakeQueue{t: t, err: tc.enqErr}
	h, m, _ := newTestHandler(t, q, tc.opts)

	rec := serve(h, r)

	require.Equal(t, tc.wantCode, rec.Code, "body: %s", rec.Body.String())
	if tc.wantCode != http.StatusNoContent {
		require.NotEmpty(t, rec.Body.String())
		require.Contains(t, rec.Header().Get("Content-Type"), "text/plain")
	}
	require.Contains(t, rec.Body.String(), tc.wantBody)
	for k, v := range tc.wantHeader {
		require.Equal(t, v, rec.Header().Get(k), "header %s", k)
	}
	for _, reason := range registry.RejectReasons {
		want := 0.0
		if reason == tc.wantReason {
			want = 1
		}
		require.Equal(t, want, testutil.ToFloat64(m.Rejected.WithLabelValues(reason)), "rejected{reason=%q}", reason)
	}
	for r := range prw.InvalidReason(prw.NumInvalidReasons) {
		want := 0.0
		if r.String() == tc.wantInvalid {
			want = 1
		}
		require.Equal(t, want, testutil.ToFloat64(m.InvalidSeries.WithLabelValues(r.String())), "invalid_series{reason=%q}", r)
	}

	if tc.wantAccepted < 0 {
		require.Empty(t, q.got, "Enqueue must not be called")
	} else {
		require.Len(t, q.got, 1)
		require.Len(t, q.got[0].Series, tc.wantAccepted)
		require.Equal(t, "ok_metric", q.got[0].Series[0].Labels.Get(labels.MetricName))
	}

	// What was accepted: all of the enqueued request, unless Enqueue failed.
	var samples, histograms, exemplars int
	if tc.wantAccepted > 0 && tc.enqErr == nil {
		samples, histograms, exemplars = q.got[0].counts()
	}
	if p == prw.ProtoV2 && tc.wantReason != registry.ReasonContentType && tc.wantReason != registry.ReasonMethod {
		require.Equal(t, fmt.Sprint(samples), rec.Header().Get(prw.HeaderSamplesWritten))
		require.Equal(t, fmt.Sprint(histograms), rec.Header().Get(prw.HeaderHistogramsWritten))
		require.Equal(t, fmt.Sprint(exemplars), rec.Header().Get(prw.HeaderExemplarsWritten))
	} else {
		require.Empty(t, rec.Header().Get(prw.HeaderSamplesWritten))
	}
	require.Equal(t, float64(samples), testutil.ToFloat64(m.Samples.WithLabelValues(p.Label())))
	require.Equal(t, float64(histograms), testutil.ToFloat64(m.Histograms.WithLabelValues(p.Label())))
	require.Equal(t, float64(exemplars), testutil.ToFloat64(m.Exemplars.WithLabelValues(p.Label())))

	// A request is counted once it is decoded.
	decoded := tc.wantReason == "" || tc.wantAccepted >= 0 || tc.wantReason == registry.ReasonInvalidSeries
	wantRequests := 0.0
	if decoded {
		wantRequests = 1
	}
	require.Equal(t, wantRequests, testutil.ToFloat64(m.Requests.WithLabelValues(p.Label())))
}

func binaryUvarint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func TestHandlerPartialWrite(t *testing.T) {
	for _, p := range protos {
		t.Run(p.Label(), func(t *testing.T) {
			good1 := validSeries("good_one", 1)
			good1.samples = append(good1.samples, prw.Sample{Value: 2, Timestamp: 2000})
			bad := tseries{labels: []string{"__name__", "bad", "x", "1", "x", "2"}, samples: []prw.Sample{{Value: 3, Timestamp: 1}}}
			good2 := histogramSeries("good_two", intExpHistogram)
			good2.exemplars = []prw.Exemplar{{Labels: labels.FromStrings("trace_id", "abc"), Value: 1, Timestamp: 2000}}
			noName := tseries{labels: []string{"job", "x"}, samples: []prw.Sample{{Value: 3, Timestamp: 1}}}
			series := []tseries{good1, bad, good2, noName}

			q := &fakeQueue{t: t}
			h, m, _ := newTestHandler(t, q, Options{})
			rec := serve(h, rwtest.NewHTTPRequest(p, encode(p, series, nil)))

			require.Equal(t, http.StatusBadRequest, rec.Code)
			require.Contains(t, rec.Body.String(), "2 of 4 series refused")
			require.Contains(t, rec.Body.String(), `series #1 {__name__="bad", x="1", x="2"}: duplicate label name "x"`)
			require.Len(t, q.got, 1)
			require.Equal(t, expected(p, []tseries{good1, good2}, nil), q.got[0])
			if p == prw.ProtoV2 {
				require.Equal(t, "2", rec.Header().Get(prw.HeaderSamplesWritten))
				require.Equal(t, "1", rec.Header().Get(prw.HeaderHistogramsWritten))
				require.Equal(t, "1", rec.Header().Get(prw.HeaderExemplarsWritten))
			}
			require.Equal(t, 2.0, testutil.ToFloat64(m.Samples.WithLabelValues(p.Label())))
			require.Equal(t, 1.0, testutil.ToFloat64(m.Histograms.WithLabelValues(p.Label())))
			require.Equal(t, 1.0, testutil.ToFloat64(m.Exemplars.WithLabelValues(p.Label())))
			require.Equal(t, 1.0, testutil.ToFloat64(m.InvalidSeries.WithLabelValues("duplicate_label_name")))
			require.Equal(t, 1.0, testutil.ToFloat64(m.InvalidSeries.WithLabelValues("missing_metric_name")))
			require.Equal(t, 1.0, testutil.ToFloat64(m.Rejected.WithLabelValues(registry.ReasonInvalidSeries)))
		})
	}
}

func TestHandlerQueueFull(t *testing.T) {
	for _, p := range protos {
		t.Run(p.Label(), func(t *testing.T) {
			q := &fakeQueue{t: t, err: fmt.Errorf("forward: %w", retryAfterErr{d: 4200 * time.Millisecond})}
			h, m, _ := newTestHandler(t, q, Options{})
			rec := serve(h, rwtest.NewHTTPRequest(p, encode(p, []tseries{validSeries("a", 1)}, nil)))

			require.Equal(t, http.StatusServiceUnavailable, rec.Code)
			require.Equal(t, "5", rec.Header().Get("Retry-After"))
			require.Contains(t, rec.Body.String(), "is full")
			require.Equal(t, 1.0, testutil.ToFloat64(m.Rejected.WithLabelValues(registry.ReasonQueueFull)))
			require.Equal(t, 0.0, testutil.ToFloat64(m.Samples.WithLabelValues(p.Label())))
			if p == prw.ProtoV2 {
				require.Equal(t, "0", rec.Header().Get(prw.HeaderSamplesWritten))
			}
		})
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{
		{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {time.Second + 1, 2}, {90 * time.Second, 90},
	} {
		require.Equal(t, tc.want, retryAfterSeconds(tc.d), "%s", tc.d)
	}
}

func TestHandlerMetrics(t *testing.T) {
	q := &fakeQueue{t: t}
	h, m, reg := newTestHandler(t, q, Options{})
	series := []tseries{
		{labels: []string{"__name__", "a"}, samples: []prw.Sample{{Value: 1, Timestamp: 1}, {Value: 2, Timestamp: 2}},
			exemplars: []prw.Exemplar{{Labels: labels.FromStrings("trace_id", "1"), Value: 1, Timestamp: 1}}},
		histogramSeries("b", intExpHistogram, floatExpHistogram),
	}
	for _, p := range protos {
		require.Equal(t, http.StatusNoContent, serve(h, rwtest.NewHTTPRequest(p, encode(p, series, nil))).Code)
	}
	require.Equal(t, http.StatusNoContent, serve(h, rwtest.NewHTTPRequest(prw.ProtoV1, encode(prw.ProtoV1, nil, nil))).Code)
	require.Equal(t, http.StatusMethodNotAllowed, serve(h, httptestRequest(http.MethodGet)).Code)

	require.Equal(t, 2.0, testutil.ToFloat64(m.Requests.WithLabelValues("1.0")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Requests.WithLabelValues("2.0")))
	for _, l := range []string{"1.0", "2.0"} {
		require.Equal(t, 2.0, testutil.ToFloat64(m.Samples.WithLabelValues(l)), l)
		require.Equal(t, 2.0, testutil.ToFloat64(m.Histograms.WithLabelValues(l)), l)
		require.Equal(t, 1.0, testutil.ToFloat64(m.Exemplars.WithLabelValues(l)), l)
	}
	require.Equal(t, 1.0, testutil.ToFloat64(m.Rejected.WithLabelValues(registry.ReasonMethod)))

	mfs, err := reg.Gather()
	require.NoError(t, err)
	var found bool
	for _, mf := range mfs {
		if mf.GetName() == "gateway_receiver_decoded_request_bytes" {
			found = true
			require.Equal(t, uint64(3), mf.GetMetric()[0].GetHistogram().GetSampleCount())
		}
		if mf.GetName() == "gateway_receiver_invalid_series_total" {
			require.Len(t, mf.GetMetric(), int(prw.NumInvalidReasons), "every reason is pre-created")
		}
	}
	require.True(t, found)
}

func httptestRequest(method string) *http.Request {
	r := rwtest.NewHTTPRequest(prw.ProtoV1, nil)
	r.Method = method
	return r
}

func TestParseContentType(t *testing.T) {
	for _, tc := range []struct {
		ct      string
		want    prw.Protocol
		wantErr string
	}{
		{ct: "", want: prw.ProtoV1},
		{ct: "application/x-protobuf", want: prw.ProtoV1},
		{ct: "application/x-protobuf;proto=prometheus.WriteRequest", want: prw.ProtoV1},
		{ct: "application/x-protobuf;proto=io.prometheus.write.v2.Request", want: prw.ProtoV2},
		{ct: `application/x-protobuf; charset=utf-8; proto="io.prometheus.write.v2.Request"`, want: prw.ProtoV2},
		{ct: "application/protobuf", wantErr: "unsupported media type"},
		{ct: "text/plain", wantErr: "unsupported media type"},
		{ct: "application/x-protobuf;proto=io.prometheus.write.v2.request", wantErr: "unsupported proto"},
		{ct: ";;", wantErr: "parse Content-Type"},
	} {
		t.Run(tc.ct, func(t *testing.T) {
			got, err := parseContentType(tc.ct)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestNewHandlerDefaults(t *testing.T) {
	h, _, _ := newTestHandler(t, &fakeQueue{t: t}, Options{})
	require.Equal(t, Options{MaxRequestBytes: 32 << 20, MaxDecodedBytes: 32 << 20}, *h.opts.Load())
	require.NotNil(t, h.logger)
}

// SetOptions changes the limits for the requests that come after it.
func TestSetOptions(t *testing.T) {
	h, _, _ := newTestHandler(t, &fakeQueue{t: t}, Options{})
	body := rwtest.Encode(rwtest.V1Request(100, 1))
	serve := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, rwtest.NewHTTPRequest(prw.ProtoV1, body))
		return rec.Code
	}
	require.Equal(t, http.StatusNoContent, serve())
	h.SetOptions(Options{MaxRequestBytes: int64(len(body) - 1)})
	require.Equal(t, http.StatusRequestEntityTooLarge, serve())
	h.SetOptions(Options{MaxDecodedBytes: 100})
	require.Equal(t, http.StatusBadRequest, serve())
	h.SetOptions(Options{})
	require.Equal(t, http.StatusNoContent, serve())
}

func TestTruncate(t *testing.T) {
	require.Equal(t, "abc", prw.Truncate("abc", 5))
	require.Equal(t, "ab…", prw.Truncate("abc", 2))
	require.True(t, strings.HasSuffix(prw.Truncate("a\xffb", 5), "b"))
	require.Equal(t, "a\uFFFDb", prw.Truncate("a\xffb", 5))
}

// bodyQueue records the client body handed on with each request.
type bodyQueue struct{ compressed [][]byte }

func (q *bodyQueue) Enqueue(_ context.Context, req *prw.Request) error {
	q.compressed = append(q.compressed, slices.Clone(req.Raw.Compressed))
	return nil
}

// TestClientBodyHandedOn: the client's body goes with the form when the
// form holds all of it, so an upstream of the same protocol can be sent it
// as it came; not when a series was refused.
func TestClientBodyHandedOn(t *testing.T) {
	v1 := rwtest.Encode(rwtest.V1Request(3, 2))
	v2 := rwtest.Encode(rwtest.V2Request(3, 2))
	bad := rwtest.V2Request(3, 2)
	bad.Timeseries[1].LabelsRefs = bad.Timeseries[1].LabelsRefs[:3]
	unsorted := rwtest.V2Request(3, 2)
	refs := unsorted.Timeseries[1].LabelsRefs
	refs[0], refs[1], refs[2], refs[3] = refs[2], refs[3], refs[0], refs[1] // accepted, and sorted in the form
	for _, tc := range []struct {
		name  string
		proto prw.Protocol
		body  []byte
		want  []byte
	}{
		{"1.0", prw.ProtoV1, v1, v1},
		{"2.0", prw.ProtoV2, v2, v2},
		{"2.0 with a refused series", prw.ProtoV2, rwtest.Encode(bad), nil},
		{"2.0 with labels out of order", prw.ProtoV2, rwtest.Encode(unsorted), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &bodyQueue{}
			h, _, _ := newTestHandler(t, q, Options{})
			serve(h, rwtest.NewHTTPRequest(tc.proto, tc.body))
			require.Len(t, q.compressed, 1, "the valid series are queued")
			require.Equal(t, tc.want, q.compressed[0])
		})
	}
}
