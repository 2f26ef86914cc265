package forward

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

// v2TestRequest is rwtest.V2Request with a native histogram and an
// exemplar on its first series, and a second metric family.
func v2TestRequest(series int) *writev2.Request {
	req := rwtest.V2Request(series, 2)
	ref := func(s string) uint32 {
		if i := slices.Index(req.Symbols, s); i >= 0 {
			return uint32(i)
		}
		req.Symbols = append(req.Symbols, s)
		return uint32(len(req.Symbols) - 1)
	}
	ts := &req.Timeseries[0]
	h := &histogram.Histogram{
		Count: 5, ZeroCount: 1, Sum: 10, ZeroThreshold: 0.001,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{2, 0},
	}
	ts.Histograms = []writev2.Histogram{writev2.FromIntHistogram(0, rwtest.SampleTimestamp(5), h)}
	ts.Exemplars = []writev2.Exemplar{{LabelsRefs: []uint32{ref("trace_id"), ref("abc")}, Value: 1, Timestamp: rwtest.SampleTimestamp(0)}}
	// A gauge family: its own metadata entry.
	last := &req.Timeseries[series-1]
	last.LabelsRefs = []uint32{ref("__name__"), ref("temperature_celsius"), ref("job"), ref("j")}
	last.Metadata = writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: ref("Temperature."), UnitRef: ref("celsius")}
	return req
}

func postV2(t *testing.T, m *Manager, wr *writev2.Request, opts receiver.Options) {
	t.Helper()
	h := receiver.NewHandler(nil, registry.NewReceiverMetrics(prometheus.NewRegistry()), allUpstreams{m}, opts)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, rwtest.NewHTTPRequest(prw.ProtoV2, rwtest.Encode(wr)))
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
}

// received summarises what an upstream got: every series with its points,
// and the family metadata, each sorted.
func received(u *fakeUpstream) (series, metadata []string) {
	for _, r := range u.requests() {
		for _, s := range r.series {
			series = append(series, fmt.Sprintf("%s %v %d %v", s.Labels, s.Samples, len(s.Histograms), s.Exemplars))
			for _, h := range s.Histograms {
				series = append(series, fmt.Sprintf("%s histogram %d %v %v", s.Labels, h.Timestamp, h.Sum, h.PositiveDeltas))
			}
		}
		for _, md := range r.metadata {
			metadata = append(metadata, fmt.Sprintf("%s %v %q %q", md.MetricFamilyName, md.Type, md.Help, md.Unit))
		}
	}
	slices.Sort(series)
	slices.Sort(metadata)
	return series, metadata
}

// A 2.0 request reaches a 1.0 upstream that changes nothing (its form
// shared with every such upstream) as it reaches an upstream that
// relabels: the same series, samples, histograms, exemplars and family
// metadata; and the same whether it was read into the form or as 1.0
// data (receiver.Options.PlainV2).
func TestSynthesizedV2(t *testing.T) {
	var first []string // what the first case received
	for _, c := range []struct{ disk, plain bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		disk := c.disk
		t.Run(fmt.Sprintf("disk=%v,plain=%v", c.disk, c.plain), func(t *testing.T) {
			fast, general := newFakeUpstream(t, nil), newFakeUpstream(t, nil)
			uf := testUpstream(t, "fast", fast.srv.URL, false)
			ug := testUpstream(t, "general", general.srv.URL, false)
			for _, u := range []*config.UpstreamConfig{uf, ug} {
				u.SendNativeHistograms, u.SendExemplars = true, true
			}
			ug.WriteRelabelConfigs = relabelConfigs(t, `
- action: keep
  source_labels: [__name__]
  regex: .+
`)
			var opts Options
			if disk {
				opts.StoragePath = t.TempDir()
			}
			m, _, _, _ := newTestManagerOpts(t, testConfig(uf, ug), opts)

			const n = 150
			postV2(t, m, v2TestRequest(n), receiver.Options{PlainV2: c.plain})
			want := 2*n + 1 + 1 // samples, the histogram, the exemplar
			for _, u := range []*fakeUpstream{fast, general} {
				require.Eventually(t, func() bool {
					s, h, e := pointCounts(u.series())
					return s+h+e >= want
				}, waitFor, time.Millisecond)
			}
			fs, fm := received(fast)
			gs, gm := received(general)
			require.Len(t, fs, n+1)
			require.Equal(t, gs, fs)
			// A family's entry goes with every batch that has its series,
			// the same on every path.
			fm, gm = slices.Compact(fm), slices.Compact(gm)
			require.Equal(t, gm, fm)
			require.Len(t, fm, 2, "two families: %v", fm)
			if first == nil {
				first = append(fs, fm...)
			}
			require.Equal(t, first, append(fs, fm...), "as in the first case")
			for _, s := range fast.series() {
				for _, x := range s.Samples {
					require.Zero(t, x.StartTimestamp, "1.0 has no start timestamps")
				}
			}
		})
	}
}

// A request of series written in the form is the 1.0 message of its
// series, with the shard hash of their labels.
func TestNewRequestSpans(t *testing.T) {
	var series []prw.Series
	odd := []prw.Sample{
		{Value: 0, Timestamp: 0}, {Value: math.Copysign(0, -1), Timestamp: -5},
		{Value: math.Float64frombits(value.StaleNaN), Timestamp: math.MaxInt64},
		{Value: -1e300, Timestamp: 1}, {Value: 1, Timestamp: 1 << 40},
	}
	for i := range 5 {
		series = append(series, prw.Series{
			Labels:  rwtest.SeriesLabels(i),
			Samples: []prw.Sample{{Value: float64(i), Timestamp: 1000, StartTimestamp: 1}, odd[i]},
		})
	}
	raw := prw.NewRequest(prw.ProtoV2, series, nil).Raw
	require.Len(t, raw.Series, 5)
	require.Equal(t, 10, raw.Samples)
	for i, rs := range raw.Series {
		scanned, err := prw.SeriesPoints(rs.Bytes(raw.Msg))
		require.NoError(t, err)
		want := rwtest.HashLabels(rwtest.SeriesLabels(i))
		require.Equal(t, want, rs.Hash)
		hash, _, err := prw.HashSeries(rs.Bytes(raw.Msg), nil)
		require.NoError(t, err)
		require.Equal(t, want, hash)
		require.Equal(t, uint32(2), scanned.Samples)
		require.True(t, rs.Ext, "start timestamps are extensions")
		requireV1Series(t, &series[i], rs.Bytes(raw.Msg))
	}
}

// Float series of random label sets and values (any bit pattern, any
// timestamp) are written in the form byte for byte as the generated code marshals
// them, and hash as their labels.
func TestNewRequestRandomFloatSeries(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	str := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.IntN(256))
		}
		return string(b)
	}
	for range 300 {
		var series []prw.Series
		for range 1 + rnd.IntN(20) {
			sb := labels.NewScratchBuilder(0)
			sb.Add(labels.MetricName, str(1+rnd.IntN(200)))
			for range rnd.IntN(12) {
				sb.Add(str(1+rnd.IntN(140)), str(rnd.IntN(300)))
			}
			sb.Sort()
			s := prw.Series{Labels: sb.Labels()}
			special := []float64{0, math.Copysign(0, -1), math.NaN(), math.Float64frombits(value.StaleNaN), math.Inf(-1), 1}
			for range 1 + rnd.IntN(4) {
				v := math.Float64frombits(rnd.Uint64())
				if rnd.IntN(3) == 0 {
					v = special[rnd.IntN(len(special))]
				}
				// Timestamps of every sign and size, 0 and -1 included.
				s.Samples = append(s.Samples, prw.Sample{Value: v, Timestamp: int64(rnd.Uint64()) >> rnd.IntN(64)})
			}
			series = append(series, s)
		}
		raw := prw.NewRequest(prw.ProtoV2, series, nil).Raw
		require.Len(t, raw.Series, len(series))
		for i, rs := range raw.Series {
			s := &series[i]
			requireV1Series(t, s, rs.Bytes(raw.Msg))
			h := rwtest.HashLabels(s.Labels)
			require.Equal(t, h, rs.Hash)
			require.Equal(t, uint32(len(s.Samples)), rs.Samples)
		}
	}
}

// requireV1Series checks that the series form, in the form, reaches a 1.0
// upstream as s: labels, and samples bit for bit (-0 and NaN payloads
// included); and, when no value is -0 (which the generated code writes as
// +0), byte for byte as the generated code marshals it.
func requireV1Series(t *testing.T, s *prw.Series, form []byte) {
	t.Helper()
	b, _, _, err := prw.AppendV1(nil, form)
	require.NoError(t, err)
	v, n := protowire.ConsumeBytes(b[1:])
	require.Equal(t, len(b)-1, n)
	var got prompb.TimeSeries
	require.NoError(t, got.Unmarshal(v))
	require.Equal(t, prompb.FromLabels(s.Labels, nil), got.Labels)
	require.Len(t, got.Samples, len(s.Samples))
	negZero := false
	ts := prompb.TimeSeries{Labels: prompb.FromLabels(s.Labels, nil)}
	for j, x := range s.Samples {
		require.Equal(t, math.Float64bits(x.Value), math.Float64bits(got.Samples[j].Value))
		require.Equal(t, x.Timestamp, got.Samples[j].Timestamp)
		negZero = negZero || math.Float64bits(x.Value) == 1<<63
		ts.Samples = append(ts.Samples, prompb.Sample{Value: x.Value, Timestamp: x.Timestamp})
	}
	if !negZero {
		want, err := ts.Marshal()
		require.NoError(t, err)
		require.Equal(t, want, v)
	}
}

// -0 stays -0, and start timestamps reach 2.0 upstreams, whichever
// protocol the client and the upstream speak. The generated code writes a
// -0 sample as +0 (it leaves out a value equal to 0), so the client's
// message is written here field by field, as encoders that keep the bits
// write it.
func TestNegativeZeroAndStartTimestamps(t *testing.T) {
	negZero := math.Copysign(0, -1)
	h := writev2.FromIntHistogram(300, 3000, &histogram.Histogram{Count: 1, Sum: 1, ZeroThreshold: 0.001, ZeroCount: 1})
	h.StartTimestamp = 300
	hb, err := h.Marshal()
	require.NoError(t, err)
	sample := func(v float64, ts, start int64) []byte {
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v))
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(ts))
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(start))
	}
	var ts []byte
	ts = protowire.AppendTag(ts, 1, protowire.BytesType)
	ts = protowire.AppendBytes(ts, []byte{1, 2, 3, 4}) // __name__=neg_zero, job=j
	for _, s := range [][]byte{sample(negZero, 1000, 500), sample(1.5, 2000, 500)} {
		ts = protowire.AppendTag(ts, 2, protowire.BytesType)
		ts = protowire.AppendBytes(ts, s)
	}
	ts = protowire.AppendTag(ts, 3, protowire.BytesType)
	ts = protowire.AppendBytes(ts, hb)
	var msg []byte
	for _, s := range []string{"", "__name__", "neg_zero", "job", "j"} {
		msg = protowire.AppendTag(msg, 4, protowire.BytesType)
		msg = protowire.AppendString(msg, s)
	}
	msg = protowire.AppendTag(msg, 5, protowire.BytesType)
	msg = protowire.AppendBytes(msg, ts)

	for _, disk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			v1, v2, plain, rec := postV2ToV1AndV2(t, disk, snappy.Encode(nil, msg))
			require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
			require.Equal(t, "2", rec.Header().Get(prw.HeaderSamplesWritten))
			require.Equal(t, "1", rec.Header().Get(prw.HeaderHistogramsWritten))
			for _, u := range []*fakeUpstream{v1, v2, plain} {
				require.Eventually(t, func() bool { return u.samples() == 2 }, waitFor, tick)
				s := u.series()[0]
				require.Equal(t, math.Float64bits(negZero), math.Float64bits(s.Samples[0].Value), "-0 stays -0")
				require.Equal(t, 1.5, s.Samples[1].Value)
				if u == v2 {
					require.Equal(t, []int64{500, 500}, []int64{s.Samples[0].StartTimestamp, s.Samples[1].StartTimestamp})
					require.Equal(t, int64(300), s.Histograms[0].StartTimestamp)
				} else {
					require.Zero(t, s.Samples[0].StartTimestamp, "1.0 has no start timestamps")
					require.Zero(t, s.Histograms[0].StartTimestamp)
				}
			}
		})
	}
}

// 2.0 series of exemplars only, or of metadata only, reach a 2.0 upstream
// as they came, and a 1.0 upstream as 1.0 has them: exemplars on a series
// of their own, metadata as family metadata.
func TestExemplarAndMetadataOnlySeries(t *testing.T) {
	st := writev2.NewSymbolTable()
	exOnly := writev2.TimeSeries{
		LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "requests_total", "job", "a"), nil),
		Exemplars:  []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("trace_id", "t1"), nil), Value: 1, Timestamp: 1000}},
	}
	mdOnly := writev2.TimeSeries{
		LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "temperature_celsius", "job", "a"), nil),
		Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: st.Symbolize("Temperature."), UnitRef: st.Symbolize("celsius")},
	}
	wr := &writev2.Request{Symbols: st.Symbols(), Timeseries: []writev2.TimeSeries{exOnly, mdOnly}}
	for _, disk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			v1, v2, plain, rec := postV2ToV1AndV2(t, disk, rwtest.Encode(wr))
			require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
			require.Equal(t, "1", rec.Header().Get(prw.HeaderExemplarsWritten))

			require.Eventually(t, func() bool { return len(v2.series()) == 2 }, waitFor, tick)
			got := v2.series()
			if got[0].Labels.Get("__name__") != "requests_total" {
				got[0], got[1] = got[1], got[0] // they may leave in two requests, in either order
			}
			require.Equal(t, "requests_total", got[0].Labels.Get("__name__"))
			require.Equal(t, []prw.Exemplar{{Labels: labels.FromStrings("trace_id", "t1"), Value: 1, Timestamp: 1000}}, got[0].Exemplars)
			require.Empty(t, got[0].Samples)
			require.Equal(t, labels.FromStrings("__name__", "temperature_celsius", "job", "a"), got[1].Labels)
			require.Equal(t, prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "Temperature.", Unit: "celsius"}, got[1].Metadata)
			require.Empty(t, got[1].Samples)

			for _, u := range []*fakeUpstream{v1, plain} {
				// The series and the family metadata may leave in one
				// request or in two.
				var series []prw.Series
				var families []prw.FamilyMetadata
				require.Eventually(t, func() bool {
					series, families = nil, nil
					for _, r := range u.requests() {
						series = append(series, r.series...)
						families = append(families, r.metadata...)
					}
					return len(series) > 0 && len(families) > 0
				}, waitFor, tick)
				require.Len(t, series, 1, "a series of metadata only is family metadata in 1.0")
				require.Equal(t, got[0].Exemplars, series[0].Exemplars)
				require.Contains(t, families, prw.FamilyMetadata{MetricFamilyName: "temperature_celsius",
					Metadata: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "Temperature.", Unit: "celsius"}})
			}
		})
	}
}

// postV2ToV1AndV2 posts body, a 2.0 request, to a write handler in front of
// a 1.0 and a 2.0 upstream, and to one that reads it as 1.0 data (see
// receiver.Options.PlainV2) in front of a 1.0 upstream (plain), with memory
// or disk queues. rec is the first handler's answer; the second's is the
// same.
func postV2ToV1AndV2(t *testing.T, disk bool, body []byte) (v1, v2, plain *fakeUpstream, rec *httptest.ResponseRecorder) {
	t.Helper()
	v1, v2, plain = newFakeUpstream(t, nil), newFakeUpstream(t, nil), newFakeUpstream(t, nil)
	post := func(cfg *config.Config, ropts receiver.Options) *httptest.ResponseRecorder {
		var opts Options
		if disk {
			opts = diskOpts(t.TempDir())
		}
		m, _, _, _ := newTestManagerOpts(t, cfg, opts)
		hd := receiver.NewHandler(nil, registry.NewReceiverMetrics(prometheus.NewRegistry()), allUpstreams{m}, ropts)
		rec := httptest.NewRecorder()
		hd.ServeHTTP(rec, rwtest.NewHTTPRequest(prw.ProtoV2, body))
		return rec
	}
	rec = post(testConfig(testUpstream(t, "v1", v1.srv.URL, false), testUpstream(t, "v2", v2.srv.URL, true)), receiver.Options{})
	recPlain := post(testConfig(testUpstream(t, "v1", plain.srv.URL, false)), receiver.Options{PlainV2: true})
	require.Equal(t, rec.Code, recPlain.Code)
	require.Equal(t, rec.Header(), recPlain.Header())
	return v1, v2, plain, rec
}
