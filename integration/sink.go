//go:build integration

package integration

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Series is what was received for one label set, rendered to comparable
// strings: every float is rendered with its bits, so a stale NaN differs from
// any other NaN.
type Series struct {
	Samples    []string
	Histograms []string
	Exemplars  []string
	// Metadata holds the distinct non-empty metadata seen (2.0 only).
	Metadata []string
}

// Received maps a label set, rendered by labels.Labels.String, to what was
// received for it.
type Received map[string]*Series

func (r Received) series(ls labels.Labels) *Series {
	k := ls.String()
	s := r[k]
	if s == nil {
		s = &Series{}
		r[k] = s
	}
	return s
}

// sort orders each series' entries, which all start with the timestamp.
func (r Received) sort() {
	for _, s := range r {
		for _, l := range [][]string{s.Samples, s.Histograms, s.Exemplars, s.Metadata} {
			slices.SortFunc(l, compareByTimestamp)
		}
	}
}

func compareByTimestamp(a, b string) int {
	ta, _ := strconv.ParseInt(strings.TrimPrefix(strings.Fields(a)[0], "t="), 10, 64)
	tb, _ := strconv.ParseInt(strings.TrimPrefix(strings.Fields(b)[0], "t="), 10, 64)
	if ta != tb {
		if ta < tb {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

func renderFloat(v float64) string {
	return fmt.Sprintf("%g(%#016x)", v, math.Float64bits(v))
}

func renderFloats(vs []float64) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = renderFloat(v)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func renderSample(t int64, v float64) string {
	return fmt.Sprintf("t=%d v=%s", t, renderFloat(v))
}

func renderExemplar(t int64, v float64, ls labels.Labels) string {
	return fmt.Sprintf("t=%d v=%s labels=%s", t, renderFloat(v), ls.String())
}

// histFields are the fields that 1.0 and 2.0 histograms share.
type histFields struct {
	t                      int64
	float                  bool
	countInt               uint64
	countFloat             float64
	zeroCountInt           uint64
	zeroCountFloat         float64
	sum, zeroThreshold     float64
	schema                 int32
	resetHint              int32
	negSpans, posSpans     string
	negDeltas, posDeltas   []int64
	negCounts, posCounts   []float64
	customValues           []float64
	startTimestamp         int64
	countSet, zeroCountSet bool
}

func (h histFields) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "t=%d", h.t)
	if h.float {
		fmt.Fprintf(&b, " float count=%s zero_count=%s", renderFloat(h.countFloat), renderFloat(h.zeroCountFloat))
	} else {
		fmt.Fprintf(&b, " int count=%d zero_count=%d", h.countInt, h.zeroCountInt)
	}
	fmt.Fprintf(&b, " sum=%s schema=%d zero_threshold=%s reset_hint=%d", renderFloat(h.sum), h.schema, renderFloat(h.zeroThreshold), h.resetHint)
	fmt.Fprintf(&b, " neg_spans=%s neg_deltas=%v neg_counts=%s", h.negSpans, h.negDeltas, renderFloats(h.negCounts))
	fmt.Fprintf(&b, " pos_spans=%s pos_deltas=%v pos_counts=%s", h.posSpans, h.posDeltas, renderFloats(h.posCounts))
	if len(h.customValues) > 0 {
		fmt.Fprintf(&b, " custom_values=%s", renderFloats(h.customValues))
	}
	if h.startTimestamp != 0 {
		fmt.Fprintf(&b, " start_timestamp=%d", h.startTimestamp)
	}
	if !h.countSet || !h.zeroCountSet {
		fmt.Fprintf(&b, " (count set %v, zero_count set %v)", h.countSet, h.zeroCountSet)
	}
	return b.String()
}

func renderSpans[S ~[]E, E any](spans S, f func(E) (int32, uint32)) string {
	parts := make([]string, len(spans))
	for i, s := range spans {
		o, l := f(s)
		parts[i] = fmt.Sprintf("%d:%d", o, l)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func renderV1Histogram(h prompb.Histogram) string {
	f := histFields{
		t: h.Timestamp, sum: h.Sum, schema: h.Schema, zeroThreshold: h.ZeroThreshold, resetHint: int32(h.ResetHint),
		negDeltas: h.NegativeDeltas, posDeltas: h.PositiveDeltas, negCounts: h.NegativeCounts, posCounts: h.PositiveCounts,
		customValues: h.CustomValues,
		negSpans:     renderSpans(h.NegativeSpans, func(s prompb.BucketSpan) (int32, uint32) { return s.Offset, s.Length }),
		posSpans:     renderSpans(h.PositiveSpans, func(s prompb.BucketSpan) (int32, uint32) { return s.Offset, s.Length }),
	}
	switch c := h.Count.(type) {
	case *prompb.Histogram_CountInt:
		f.countInt, f.countSet = c.CountInt, true
	case *prompb.Histogram_CountFloat:
		f.countFloat, f.float, f.countSet = c.CountFloat, true, true
	}
	switch c := h.ZeroCount.(type) {
	case *prompb.Histogram_ZeroCountInt:
		f.zeroCountInt, f.zeroCountSet = c.ZeroCountInt, true
	case *prompb.Histogram_ZeroCountFloat:
		f.zeroCountFloat, f.zeroCountSet = c.ZeroCountFloat, true
	}
	return f.String()
}

func renderV2Histogram(h writev2.Histogram) string {
	f := histFields{
		t: h.Timestamp, sum: h.Sum, schema: h.Schema, zeroThreshold: h.ZeroThreshold, resetHint: int32(h.ResetHint),
		negDeltas: h.NegativeDeltas, posDeltas: h.PositiveDeltas, negCounts: h.NegativeCounts, posCounts: h.PositiveCounts,
		customValues: h.CustomValues, startTimestamp: h.StartTimestamp,
		negSpans: renderSpans(h.NegativeSpans, func(s writev2.BucketSpan) (int32, uint32) { return s.Offset, s.Length }),
		posSpans: renderSpans(h.PositiveSpans, func(s writev2.BucketSpan) (int32, uint32) { return s.Offset, s.Length }),
	}
	switch c := h.Count.(type) {
	case *writev2.Histogram_CountInt:
		f.countInt, f.countSet = c.CountInt, true
	case *writev2.Histogram_CountFloat:
		f.countFloat, f.float, f.countSet = c.CountFloat, true, true
	}
	switch c := h.ZeroCount.(type) {
	case *writev2.Histogram_ZeroCountInt:
		f.zeroCountInt, f.zeroCountSet = c.ZeroCountInt, true
	case *writev2.Histogram_ZeroCountFloat:
		f.zeroCountFloat, f.zeroCountSet = c.ZeroCountFloat, true
	}
	return f.String()
}

func renderV2Metadata(m writev2.Metadata, symbols []string) (string, error) {
	if int(m.HelpRef) >= len(symbols) || int(m.UnitRef) >= len(symbols) {
		return "", fmt.Errorf("metadata refs %d/%d outside the %d symbols", m.HelpRef, m.UnitRef, len(symbols))
	}
	if m.Type == writev2.Metadata_METRIC_TYPE_UNSPECIFIED && m.HelpRef == 0 && m.UnitRef == 0 {
		return "", nil
	}
	return fmt.Sprintf("t=0 type=%s help=%q unit=%q", m.Type, symbols[m.HelpRef], symbols[m.UnitRef]), nil
}

// RecordV1 adds what req holds to r, each label set with extra merged in.
func (r Received) RecordV1(req *prompb.WriteRequest, extra labels.Labels) error {
	for _, ts := range req.Timeseries {
		b := labels.NewScratchBuilder(len(ts.Labels))
		for _, l := range ts.Labels {
			b.Add(l.Name, l.Value)
		}
		ls, err := withExtra(&b, extra)
		if err != nil {
			return err
		}
		s := r.series(ls)
		for _, smp := range ts.Samples {
			s.Samples = append(s.Samples, renderSample(smp.Timestamp, smp.Value))
		}
		for _, h := range ts.Histograms {
			s.Histograms = append(s.Histograms, renderV1Histogram(h))
		}
		for _, e := range ts.Exemplars {
			eb := labels.NewScratchBuilder(len(e.Labels))
			for _, l := range e.Labels {
				eb.Add(l.Name, l.Value)
			}
			eb.Sort()
			s.Exemplars = append(s.Exemplars, renderExemplar(e.Timestamp, e.Value, eb.Labels()))
		}
	}
	r.sort()
	return nil
}

// RecordV2 adds what req holds to r, each label set with extra merged in.
func (r Received) RecordV2(req *writev2.Request, extra labels.Labels) error {
	b := labels.NewScratchBuilder(8)
	for i, ts := range req.Timeseries {
		if len(ts.Samples) > 0 && len(ts.Histograms) > 0 {
			return fmt.Errorf("timeseries %d has both samples and histograms", i)
		}
		got, err := ts.ToLabels(&b, req.Symbols)
		if err != nil {
			return fmt.Errorf("timeseries %d: %w", i, err)
		}
		if err := checkLabels(got); err != nil {
			return fmt.Errorf("timeseries %d %s: %w", i, got, err)
		}
		b.Reset()
		got.Range(func(l labels.Label) { b.Add(l.Name, l.Value) })
		ls, err := withExtra(&b, extra)
		if err != nil {
			return err
		}
		s := r.series(ls)
		for _, smp := range ts.Samples {
			s.Samples = append(s.Samples, renderSample(smp.Timestamp, smp.Value))
		}
		for _, h := range ts.Histograms {
			s.Histograms = append(s.Histograms, renderV2Histogram(h))
		}
		eb := labels.NewScratchBuilder(4)
		for _, e := range ts.Exemplars {
			ex, err := e.ToExemplar(&eb, req.Symbols)
			if err != nil {
				return fmt.Errorf("timeseries %d exemplar: %w", i, err)
			}
			s.Exemplars = append(s.Exemplars, renderExemplar(e.Timestamp, e.Value, ex.Labels))
		}
		md, err := renderV2Metadata(ts.Metadata, req.Symbols)
		if err != nil {
			return fmt.Errorf("timeseries %d: %w", i, err)
		}
		if md != "" && !slices.Contains(s.Metadata, md) {
			s.Metadata = append(s.Metadata, md)
		}
	}
	r.sort()
	return nil
}

// withExtra returns the labels in b plus extra (extra wins), sorted.
func withExtra(b *labels.ScratchBuilder, extra labels.Labels) (labels.Labels, error) {
	b.Sort()
	lb := labels.NewBuilder(b.Labels())
	extra.Range(func(l labels.Label) { lb.Set(l.Name, l.Value) })
	return lb.Labels(), nil
}

// checkLabels reports label sets that receivers reject: unsorted or
// duplicate names, no metric name, empty names.
func checkLabels(ls labels.Labels) error {
	var prev string
	var err error
	i := 0
	ls.Range(func(l labels.Label) {
		switch {
		case err != nil:
		case l.Name == "":
			err = fmt.Errorf("empty label name")
		case i > 0 && l.Name <= prev:
			err = fmt.Errorf("label %q after %q: names not sorted or duplicated", l.Name, prev)
		}
		prev = l.Name
		i++
	})
	if err == nil && ls.Get(labels.MetricName) == "" {
		err = fmt.Errorf("no %s label", labels.MetricName)
	}
	return err
}

// Sink is an in-process remote-write 2.0 upstream: it decodes every request,
// records it, and answers 204 with the written counts. Hold, if set, runs
// first in every request (e.g. to make the upstream slow). Its methods are
// safe for concurrent use.
type Sink struct {
	*httptest.Server
	Hold func(r *http.Request)

	t        testing.TB
	mu       sync.Mutex
	received Received
	requests int
	errs     []string
}

// NewSink starts a 2.0 sink, closed in t.Cleanup.
func NewSink(t testing.TB) *Sink {
	s := &Sink{t: t, received: Received{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *Sink) fail(w http.ResponseWriter, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.errs = append(s.errs, msg)
	s.mu.Unlock()
	http.Error(w, msg, code)
}

func (s *Sink) serve(w http.ResponseWriter, r *http.Request) {
	if s.Hold != nil {
		s.Hold(r)
	}
	if r.Method != http.MethodPost {
		s.fail(w, http.StatusMethodNotAllowed, "method %s", r.Method)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf;proto=io.prometheus.write.v2.Request" {
		s.fail(w, http.StatusUnsupportedMediaType, "Content-Type %q, want 2.0's", ct)
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "snappy" {
		s.fail(w, http.StatusUnsupportedMediaType, "Content-Encoding %q, want snappy", ce)
		return
	}
	if v := r.Header.Get("X-Prometheus-Remote-Write-Version"); !strings.HasPrefix(v, "2.") {
		s.fail(w, http.StatusBadRequest, "X-Prometheus-Remote-Write-Version %q, want 2.x", v)
		return
	}
	compressed, err := io.ReadAll(r.Body)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	raw, err := snappy.Decode(nil, compressed)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "decode snappy (%d bytes): %v", len(compressed), err)
		return
	}
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		s.fail(w, http.StatusBadRequest, "unmarshal 2.0 request: %v", err)
		return
	}
	if len(req.Symbols) == 0 || req.Symbols[0] != "" {
		s.fail(w, http.StatusBadRequest, "symbols must start with the empty string: %q", req.Symbols[:min(len(req.Symbols), 3)])
		return
	}
	var samples, histograms, exemplars int
	for _, ts := range req.Timeseries {
		samples += len(ts.Samples)
		histograms += len(ts.Histograms)
		exemplars += len(ts.Exemplars)
	}
	s.mu.Lock()
	err = s.received.RecordV2(&req, labels.EmptyLabels())
	s.requests++
	s.mu.Unlock()
	if err != nil {
		s.fail(w, http.StatusBadRequest, "record: %v", err)
		return
	}
	w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(samples))
	w.Header().Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.Itoa(histograms))
	w.Header().Set("X-Prometheus-Remote-Write-Exemplars-Written", strconv.Itoa(exemplars))
	w.WriteHeader(http.StatusNoContent)
}

// Received returns a deep copy of what the sink recorded so far, the number
// of requests, and the errors it answered with.
func (s *Sink) Received() (Received, int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(Received, len(s.received))
	for k, v := range s.received {
		out[k] = &Series{
			Samples:    slices.Clone(v.Samples),
			Histograms: slices.Clone(v.Histograms),
			Exemplars:  slices.Clone(v.Exemplars),
			Metadata:   slices.Clone(v.Metadata),
		}
	}
	return out, s.requests, slices.Clone(s.errs)
}

// Counts returns the samples, histograms and exemplars recorded so far.
func (r Received) Counts() (samples, histograms, exemplars int) {
	for _, s := range r {
		samples += len(s.Samples)
		histograms += len(s.Histograms)
		exemplars += len(s.Exemplars)
	}
	return
}
