package prw

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

func testHistogram(ts, start int64) Histogram {
	return writev2.Histogram{
		Count:          &writev2.Histogram_CountInt{CountInt: 5},
		Sum:            12.5,
		Schema:         1,
		ZeroThreshold:  0.001,
		ZeroCount:      &writev2.Histogram_ZeroCountInt{ZeroCountInt: 1},
		PositiveSpans:  []writev2.BucketSpan{{Offset: 0, Length: 2}},
		PositiveDeltas: []int64{2, 0},
		Timestamp:      ts,
		StartTimestamp: start,
	}
}

// convertHistogram decodes the bytes of from into to: 2.0's Histogram is
// 1.0's plus field 17, and an in-memory round trip cannot fail.
func convertHistogram(from interface{ Marshal() ([]byte, error) }, to interface{ Unmarshal([]byte) error }) {
	b, _ := from.Marshal()
	_ = to.Unmarshal(b)
}

// formSeries are series of every shape the form holds.
func formSeries() []Series {
	negZero := math.Copysign(0, -1)
	return []Series{
		{ // plain 1.0: no extensions
			Labels:  labels.FromStrings("__name__", "up", "job", "a"),
			Samples: []Sample{{Value: 1, Timestamp: 1000}, {Value: 2.5, Timestamp: 2000}},
		},
		{ // 2.0: start timestamps, -0, stale markers, NaN payloads, metadata
			Labels: labels.FromStrings("__name__", "requests_total", "path", "/ä"),
			Samples: []Sample{
				{Value: negZero, Timestamp: 1000, StartTimestamp: 500},
				{Value: math.Float64frombits(value.StaleNaN), Timestamp: 2000, StartTimestamp: 500},
				{Value: math.Float64frombits(0x7ff8000000000abc), Timestamp: -5},
				{Value: 0, Timestamp: 0},
			},
			Exemplars: []Exemplar{{Labels: labels.FromStrings("trace_id", "abc"), Value: 1.5, Timestamp: 1000}},
			Metadata:  Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: "Requests.", Unit: "requests"},
		},
		{ // histograms, one with a start timestamp
			Labels:     labels.FromStrings("__name__", "latency_seconds"),
			Histograms: []Histogram{testHistogram(1000, 0), testHistogram(2000, 100)},
			Metadata:   Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM},
		},
		{ // exemplars only
			Labels:    labels.FromStrings("__name__", "x"),
			Exemplars: []Exemplar{{Labels: labels.EmptyLabels(), Value: 3, Timestamp: 7}},
		},
		{ // lengths of two bytes and more: labels, exemplar, metadata
			Labels:    labels.FromStrings("__name__", "long", "path", strings.Repeat("p", 200)),
			Samples:   []Sample{{Value: 1, Timestamp: 1000, StartTimestamp: 500}},
			Exemplars: []Exemplar{{Labels: labels.FromStrings("trace_id", strings.Repeat("t", 130)), Value: 3, Timestamp: 7}},
			Metadata:  Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: strings.Repeat("h", 20000)},
		},
	}
}

func appendForm(t *testing.T, ss []Series) ([]byte, []RawSeries) {
	t.Helper()
	var (
		b       []byte
		scratch []byte
		rss     []RawSeries
	)
	for i := range ss {
		var rs RawSeries
		b, rs, scratch = AppendSeries(b, &ss[i], scratch)
		h := hashCanonical(AppendLabels(nil, ss[i].Labels))
		require.Equal(t, h, rs.Hash, "the form's hash is the shard hash of the labels")
		rss = append(rss, rs)
	}
	return b, rss
}

// A series in the form reaches a 1.0 upstream as 1.0 has it (no start
// timestamps, metadata on the side) and a 2.0 upstream with everything,
// -0 and NaN payloads included.
func TestFormRoundTrip(t *testing.T) {
	ss := formSeries()
	msg, rss := appendForm(t, ss)
	require.False(t, rss[0].Ext)
	require.True(t, rss[1].Ext)
	require.True(t, rss[2].Ext)
	require.False(t, rss[3].Ext)
	require.True(t, rss[4].Ext)

	// 1.0.
	var v1 []byte
	var mds []Metadata
	for _, rs := range rss {
		var md []byte
		var err error
		v1, _, md, err = AppendV1(v1, rs.Bytes(msg))
		require.NoError(t, err)
		if md != nil {
			mds = append(mds, ReadMetadata(md))
		}
	}
	require.Equal(t, []Metadata{ss[1].Metadata, ss[2].Metadata, ss[4].Metadata}, mds)
	var wr prompb.WriteRequest
	require.NoError(t, wr.Unmarshal(v1))
	require.Len(t, wr.Timeseries, len(ss))
	for i, ts := range wr.Timeseries {
		require.Empty(t, ts.XXX_unrecognized, "series %d", i)
		var sb labels.ScratchBuilder
		for _, l := range ts.Labels {
			sb.Add(l.Name, l.Value)
		}
		require.Equal(t, ss[i].Labels, sb.Labels())
		require.Len(t, ts.Samples, len(ss[i].Samples))
		for j, smp := range ts.Samples {
			require.Empty(t, smp.XXX_unrecognized, "no start timestamp in 1.0")
			require.Equal(t, math.Float64bits(ss[i].Samples[j].Value), math.Float64bits(smp.Value))
			require.Equal(t, ss[i].Samples[j].Timestamp, smp.Timestamp)
		}
		require.Len(t, ts.Histograms, len(ss[i].Histograms))
		for j, h := range ts.Histograms {
			require.Empty(t, h.XXX_unrecognized)
			want := ss[i].Histograms[j]
			want.StartTimestamp = 0
			var v1 prompb.Histogram
			want.StartTimestamp = 0
			convertHistogram(&want, &v1)
			require.Equal(t, v1, h)
		}
		require.Len(t, ts.Exemplars, len(ss[i].Exemplars))
	}
	// A plain series is sent as it is.
	plain, _, _, err := AppendV1(nil, rss[0].Bytes(msg))
	require.NoError(t, err)
	want, err := (&prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "a"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: 1000}, {Value: 2.5, Timestamp: 2000}}}).Marshal()
	require.NoError(t, err)
	require.Equal(t, append([]byte{0x0a, byte(len(want))}, want...), plain, "what the generated code writes")

	// 2.0.
	enc := NewV2Encoder()
	for _, rs := range rss {
		_, err := enc.Add(rs.Bytes(msg), true)
		require.NoError(t, err)
	}
	var req writev2.Request
	require.NoError(t, req.Unmarshal(enc.AppendRequest(nil)))
	require.Equal(t, "", req.Symbols[0])
	require.Len(t, req.Timeseries, len(ss))
	for i, ts := range req.Timeseries {
		s := ss[i]
		var sb labels.ScratchBuilder
		got, err := ts.ToLabels(&sb, req.Symbols)
		require.NoError(t, err)
		require.Equal(t, s.Labels, got)
		require.Len(t, ts.Samples, len(s.Samples))
		for j, smp := range ts.Samples {
			require.Equal(t, math.Float64bits(s.Samples[j].Value), math.Float64bits(smp.Value), "sample %d of %s", j, s.Labels)
			require.Equal(t, s.Samples[j].Timestamp, smp.Timestamp)
			require.Equal(t, s.Samples[j].StartTimestamp, smp.StartTimestamp)
		}
		require.Len(t, ts.Histograms, len(s.Histograms))
		for j := range ts.Histograms {
			require.Equal(t, s.Histograms[j], ts.Histograms[j])
		}
		require.Len(t, ts.Exemplars, len(s.Exemplars))
		for j, ex := range ts.Exemplars {
			require.Equal(t, s.Exemplars[j].Value, ex.Value)
			require.Equal(t, s.Exemplars[j].Timestamp, ex.Timestamp)
			el, err := ex.ToExemplar(&sb, req.Symbols)
			require.NoError(t, err)
			require.Equal(t, s.Exemplars[j].Labels, el.Labels)
		}
		require.Equal(t, s.Metadata.Type, ts.Metadata.Type)
		require.Equal(t, s.Metadata.Help, req.Symbols[ts.Metadata.HelpRef])
		require.Equal(t, s.Metadata.Unit, req.Symbols[ts.Metadata.UnitRef])
	}
	enc.Reset()
	require.Equal(t, []byte{0x22, 0}, enc.AppendRequest(nil), "reset leaves the empty symbol only")
}

// TestV2EncoderSharedLabels covers the 2.0 encoder's reuse of the last
// series' references for a label at the same place: equal values under
// other names, fewer and more labels, and a new request after Reset, whose
// symbols are numbered anew.
func TestV2EncoderSharedLabels(t *testing.T) {
	sets := [][]labels.Labels{{
		labels.FromStrings("__name__", "a", "x", "1", "z", "2"),
		labels.FromStrings("__name__", "a", "y", "1", "z", "2"),
		labels.FromStrings("__name__", "a", "x", "2"),
		labels.FromStrings("__name__", "b", "x", "2", "z", "2", "zz", "3"),
		labels.FromStrings("__name__", "a", "x", "2"),
		labels.FromStrings("__name__", "a", "x", "2"),
	}, {
		labels.FromStrings("__name__", "a", "x", "2"),
		labels.FromStrings("__name__", "a", "long", strings.Repeat("v", 200), "x", "2"),
		labels.FromStrings("__name__", "c", "w", "2"),
	}}
	enc := NewV2Encoder()
	for _, set := range sets {
		var ss []Series
		for _, ls := range set {
			ss = append(ss, Series{Labels: ls, Samples: []Sample{{Value: 1, Timestamp: 1}}})
		}
		msg, rss := appendForm(t, ss)
		enc.Reset()
		for _, rs := range rss {
			_, err := enc.Add(rs.Bytes(msg), false)
			require.NoError(t, err)
		}
		var req writev2.Request
		require.NoError(t, req.Unmarshal(enc.AppendRequest(nil)))
		require.Len(t, req.Timeseries, len(set))
		for i, ts := range req.Timeseries {
			var sb labels.ScratchBuilder
			got, err := ts.ToLabels(&sb, req.Symbols)
			require.NoError(t, err)
			require.Equal(t, set[i], got, "series %d", i)
		}
	}

	// Labels after the samples, as a 1.0 client may send them.
	smp, err := (&prompb.Sample{Value: 1, Timestamp: 1}).Marshal()
	require.NoError(t, err)
	ts, _ := AppendField(nil, fieldSamples, smp)
	ts = AppendLabel(AppendLabel(ts, "__name__", "late"), "x", "1")
	enc.Reset()
	_, err = enc.Add(ts, false)
	require.NoError(t, err)
	var req writev2.Request
	require.NoError(t, req.Unmarshal(enc.AppendRequest(nil)))
	var sb labels.ScratchBuilder
	got, err := req.Timeseries[0].ToLabels(&sb, req.Symbols)
	require.NoError(t, err)
	require.Equal(t, labels.FromStrings("__name__", "late", "x", "1"), got)
	require.Len(t, req.Timeseries[0].Samples, 1)
}

// AddLabels gives what Relabel gives with a function that adds external
// labels as the forwarders do: the same bytes, descriptors and metadata,
// and raw itself when nothing changes. Series lack an external label, have
// it, have it empty, sort before or after it, or have labels too long for
// SmallLabel, an empty label of another name, or an exemplar.
func TestAddLabelsIsRelabel(t *testing.T) {
	sample := []prompb.Sample{{Value: 1, Timestamp: 1}}
	long := strings.Repeat("v", 200)
	series := func(ls ...string) prompb.TimeSeries {
		var pl []prompb.Label
		for i := 0; i < len(ls); i += 2 {
			pl = append(pl, prompb.Label{Name: ls[i], Value: ls[i+1]})
		}
		return prompb.TimeSeries{Labels: pl, Samples: sample}
	}
	wr := &prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			series("__name__", "a", "job", "x"),
			series("__name__", "a", "cluster", "own", "job", "x"),
			series("__name__", "a", "cluster", "", "job", "x"),
			series("__name__", "b", "zzz", "1"),
			series("__name__", "c", "aaa", "", "job", "y"),
			series("__name__", "d", "cluster", "own", "long", long, "replica", "own"),
			series("__name__", "e", "cluster", long, "job", "x", "replica", "r9"),
		},
		Metadata: []prompb.MetricMetadata{{MetricFamilyName: "a", Type: prompb.MetricMetadata_GAUGE, Help: "h"}},
	}
	wr.Timeseries[0].Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "t"}}, Value: 1, Timestamp: 1}}
	msg, err := wr.Marshal()
	require.NoError(t, err)
	dec := NewV1Decoder()
	for _, ext := range []labels.Labels{
		labels.FromStrings("cluster", "c", "replica", "r"),
		labels.FromStrings("a", "1"),
		labels.FromStrings("zzzz", "1"),
		labels.FromStrings("__name__", "x", "job", "j"),
		labels.FromStrings("cluster", long),
	} {
		for _, only := range []int{-1, 1, 6} { // every series; one that has each label
			d, err := dec.Decode(slices.Clone(msg))
			require.NoError(t, err)
			raw := d.Req.Raw
			if only >= 0 {
				one := &RawV1{Msg: raw.Msg}
				one.Append(raw.Series[only])
				raw = one
			}
			want, dropped, err := Relabel(raw, labels.NewBuilder(labels.EmptyLabels()), func(lb *labels.Builder) bool {
				ext.Range(func(l labels.Label) {
					if lb.Get(l.Name) == "" {
						lb.Set(l.Name, l.Value)
					}
				})
				return true
			})
			require.NoError(t, err)
			require.Zero(t, dropped)
			got, err := AddLabels(raw, ext, nil)
			require.NoError(t, err)
			require.Equal(t, want == raw, got == raw, "%s, series %d: unchanged", ext, only)
			require.Equal(t, want, got, "%s, series %d", ext, only)
			dec.Release(d)
		}
	}
}

// Relabel keeps, changes or drops each series as its function says, in
// order, copying the series before the first change as they are; it
// returns raw itself, without allocating per series, when nothing changes.
func TestRelabel(t *testing.T) {
	var ts []prompb.TimeSeries
	for i := range 6 {
		ts = append(ts, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "i", Value: strconv.Itoa(i)}, {Name: "z", Value: "x"}},
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: int64(i)}},
		})
	}
	msg, err := (&prompb.WriteRequest{Timeseries: ts, Metadata: []prompb.MetricMetadata{{MetricFamilyName: "m", Type: prompb.MetricMetadata_GAUGE}}}).Marshal()
	require.NoError(t, err)
	d, err := NewV1Decoder().Decode(msg)
	require.NoError(t, err)
	raw := d.Req.Raw
	lb := labels.NewBuilder(labels.EmptyLabels())
	for _, tc := range []struct {
		name    string
		fn      func(lb *labels.Builder) bool
		want    []string // the i label of each series sent, with z's value
		dropped int
	}{
		{"none", func(*labels.Builder) bool { return true }, nil, 0},
		{"drop first", func(lb *labels.Builder) bool { return lb.Get("i") != "0" }, []string{"1x", "2x", "3x", "4x", "5x"}, 1},
		{"drop two", func(lb *labels.Builder) bool { return lb.Get("i") != "3" && lb.Get("i") != "5" }, []string{"0x", "1x", "2x", "4x"}, 2},
		{"change one", func(lb *labels.Builder) bool {
			if lb.Get("i") == "4" {
				lb.Set("z", "y")
			}
			return true
		}, []string{"0x", "1x", "2x", "3x", "4y", "5x"}, 0},
		{"drop a label", func(lb *labels.Builder) bool { lb.Del("z"); return true }, []string{"0", "1", "2", "3", "4", "5"}, 0},
		{"drop all", func(*labels.Builder) bool { return false }, []string{}, 6},
	} {
		out, dropped, err := Relabel(raw, lb, tc.fn)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.dropped, dropped, tc.name)
		if tc.want == nil {
			require.Same(t, raw, out, tc.name)
			continue
		}
		var wr prompb.WriteRequest
		require.NoError(t, wr.Unmarshal(out.Msg), tc.name)
		got := []string{}
		for i, s := range wr.Timeseries {
			ls := s.ToLabels(&labels.ScratchBuilder{}, nil)
			got = append(got, ls.Get("i")+ls.Get("z"))
			require.Equal(t, "m", ls.Get("__name__"), tc.name)
			require.Equal(t, s.Samples, ts[must(strconv.Atoi(ls.Get("i")))].Samples, tc.name)
			require.Equal(t, out.Series[i].Bytes(out.Msg), must(s.Marshal()), tc.name)
		}
		require.Equal(t, tc.want, got, tc.name)
		require.Len(t, out.Series, len(tc.want), tc.name)
		require.Equal(t, []prompb.MetricMetadata{{MetricFamilyName: "m", Type: prompb.MetricMetadata_GAUGE}}, wr.Metadata, tc.name)
	}
	if !raceEnabled {
		keep := func(lb *labels.Builder) bool { return lb.Get("i") != "" }
		allocs := testing.AllocsPerRun(20, func() { _, _, _ = Relabel(raw, lb, keep) })
		// A few per call (buffers), none per series: reading the 6 series'
		// labels as strings took 7 allocations each.
		require.LessOrEqual(t, allocs, 8.0, "allocations when nothing changes")
	}
}

// withLabels copies what follows a series' leading labels in one piece
// (see RawSeries.labels) and writes what a field-by-field copy writes; the
// result's descriptor hashes its new labels, also when ShardHash does.
func TestReplaceLabelsLeading(t *testing.T) {
	msg, rss := appendForm(t, formSeries())
	ls := labels.FromStrings("__name__", "new", "a", "b")
	for i, rs := range rss {
		require.NotZero(t, rs.labels, "series %d: AppendSeries' labels lead", i)
		ts := rs.Bytes(msg)
		fast, fastRS, _, err := replaceLabels(nil, ts, rs, ls, nil)
		require.NoError(t, err)
		walked := rs
		walked.labels = 0
		slow, slowRS, _, err := replaceLabels(nil, ts, walked, ls, nil)
		require.NoError(t, err)
		require.Equal(t, slow, fast, "series %d", i)
		require.Equal(t, slowRS, fastRS, "series %d", i)
		require.Equal(t, uint32(len(AppendLabels(nil, ls))), fastRS.labels)
		unhashed := fastRS
		unhashed.Hash = 0
		require.Equal(t, fastRS.Hash, unhashed.ShardHash(fast), "series %d", i)
	}
}

// Rewrite writes series given new labels through a buffer of its own,
// which keeps what it grows to: with many points per series, a changed
// series costs the one allocation of its new labels (lb.Labels), not a
// second for its bytes.
func TestRewriteAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("-race: allocation counts differ")
	}
	raw := &RawV1{}
	var scratch []byte
	for i := range 100 {
		s := Series{Labels: labels.FromStrings("__name__", "m", "i", strconv.Itoa(i), "rack", "r")}
		for j := range 50 {
			s.Samples = append(s.Samples, Sample{Value: 1, Timestamp: int64(j)})
		}
		var rs RawSeries
		raw.Msg, rs, scratch = AppendSeries(raw.Msg, &s, scratch)
		raw.Append(rs)
	}
	fn := Relabeler(labels.NewBuilder(labels.EmptyLabels()), func(lb *labels.Builder) bool { lb.Del("rack"); return true })
	allocs := testing.AllocsPerRun(20, func() { _, _, _ = Rewrite(raw, fn, nil) })
	require.Less(t, allocs, 1.5*100, "allocations for 100 changed series")
}

// replaceLabels is withLabels with the labels ls, as Rewrite writes a
// series a SeriesFunc gives new labels.
func replaceLabels(b, ts []byte, rs RawSeries, ls labels.Labels, scratch []byte) ([]byte, RawSeries, []byte, error) {
	scratch = AppendLabels(scratch[:0], ls)
	b, rs, err := withLabels(b, ts, rs, scratch)
	return b, rs, scratch, err
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestFilterPoints(t *testing.T) {
	ss := formSeries()
	msg, rss := appendForm(t, ss)
	// Keep what is at or after 1000 ms: of series 1, the samples at 1000
	// and 2000 and the exemplar.
	b, rs, dropped, _, err := FilterPoints(nil, rss[1].Bytes(msg), rss[1], func(_ int, ts int64, _ int) bool { return ts >= 1000 }, nil)
	require.NoError(t, err)
	require.Equal(t, 2, dropped)
	require.Equal(t, RawSeries{Span: rs.Span, Hash: rss[1].Hash, labels: rss[1].labels, Samples: 2, Exemplars: 1, Ext: true, Meta: true}, rs)
	var ts prompb.TimeSeries
	require.NoError(t, ts.Unmarshal(rs.Bytes(b)))
	require.Len(t, ts.Samples, 2)
	md, ok, err := seriesMetadata(rs.Bytes(b))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, ss[1].Metadata, md)

	// The first n points by index: a split.
	_, head, dropped, _, err := FilterPoints(nil, rss[2].Bytes(msg), rss[2], func(_ int, _ int64, i int) bool { return i < 1 }, nil)
	require.NoError(t, err)
	require.Equal(t, 1, dropped)
	require.Equal(t, uint32(1), head.Histograms)

	// Malformed bytes are an error.
	_, _, _, _, err = FilterPoints(nil, []byte{0x12, 0x05, 0x01}, RawSeries{}, func(int, int64, int) bool { return true }, nil)
	require.ErrorIs(t, err, ErrMalformed)
}

func TestWithMetadata(t *testing.T) {
	ss := formSeries()
	msg, rss := appendForm(t, ss)
	md := Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "Up."}
	b, sp, err := WithMetadata(nil, rss[0].Bytes(msg), md)
	require.NoError(t, err)
	got, ok, err := seriesMetadata(sp.Bytes(b))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, md, got)
	_, n := protowire.ConsumeBytes(b[1:])
	require.Equal(t, len(b)-1, n, "one TimeSeries field")

	// A series with metadata of its own keeps it.
	b, sp, err = WithMetadata(nil, rss[1].Bytes(msg), md)
	require.NoError(t, err)
	got, _, err = seriesMetadata(sp.Bytes(b))
	require.NoError(t, err)
	require.Equal(t, ss[1].Metadata, got)
}

// A field written before its length is measured is encoded as protowire
// encodes it, whatever the length.
func TestOpenCloseField(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 1 << 21} {
		msg := []byte(strings.Repeat("m", n))
		want := protowire.AppendBytes(protowire.AppendTag([]byte("x"), 7, protowire.BytesType), msg)
		for room := 1; room <= 3; room++ {
			b, at := openField([]byte("x"), 7, room)
			require.Equal(t, want, closeField(append(b, msg...), at, room), "length %d, room %d", n, room)
		}
	}
}

func TestReplaceLabels(t *testing.T) {
	ss := formSeries()
	msg, rss := appendForm(t, ss)
	ls := labels.FromStrings("__name__", "requests_total", "env", "prod")
	b, rs, _, err := replaceLabels(nil, rss[1].Bytes(msg), rss[1], ls, nil)
	require.NoError(t, err)
	var sb labels.ScratchBuilder
	got, err := SeriesLabels(rs.Bytes(b), &sb)
	require.NoError(t, err)
	require.Equal(t, ls, got)
	h := hashCanonical(AppendLabels(nil, ls))
	require.Equal(t, h, rs.Hash)
	want := ss[1]
	want.Labels = ls
	wantB, wantRS, _ := AppendSeries(nil, &want, nil)
	require.Equal(t, wantRS.Bytes(wantB), rs.Bytes(b), "as if the series had come with those labels")
}

// The rewriters allocate nothing once their buffers have grown.
func TestRewritersAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("-race: append of make allocates (see raceEnabled)")
	}
	ss := formSeries()
	msg, rss := appendForm(t, ss)
	ls := labels.FromStrings("__name__", "requests_total", "env", "prod")
	md := Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "Up."}
	keep := func(_ int, ts int64, _ int) bool { return ts >= 1000 }
	var b, scratch []byte
	allocs := testing.AllocsPerRun(10, func() {
		b = b[:0]
		for i, rs := range rss {
			ts := rs.Bytes(msg)
			b, _, scratch = AppendSeries(b, &ss[i], scratch)
			b, _, _, _ = AppendV1(b, ts)
			b, _, _, scratch, _ = FilterPoints(b, ts, rs, keep, scratch)
			b, _, scratch, _ = replaceLabels(b, ts, rs, ls, scratch)
			b, _, _ = WithMetadata(b, ts, md)
		}
	})
	require.Zero(t, allocs)
}

// Malformed bytes are an error, the series then appended as it is.
func TestWithMetadataMalformed(t *testing.T) {
	ts := []byte{0x12, 0x05, 0x01}
	b, sp, err := WithMetadata([]byte("x"), ts, Metadata{Help: "h"})
	require.ErrorIs(t, err, ErrMalformed)
	require.Equal(t, ts, sp.Bytes(b))
	_, _, err = seriesMetadata(ts)
	require.ErrorIs(t, err, ErrMalformed)
}

// seriesMetadata returns the series' metadata extension, if any.
func seriesMetadata(ts []byte) (Metadata, bool, error) {
	m, ok, err := metadataExt(ts)
	return ReadMetadata(m), ok, err
}

// field.read reads any bytes as protowire does: its fast path of one-byte
// tags and one- or two-byte lengths included, the same field or the same
// refusal.
func TestFieldReadAsProtowire(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	inputs := [][]byte{{0x02, 0x00}, {0x0a, 0x05, 1, 2}, {0x0a, 0x7f}, {0x0a, 0x00}, {0x82, 0x01, 0x01, 9}, {0x0a, 0x80, 0x01}}
	for range 200000 {
		b := make([]byte, rnd.IntN(8))
		for i := range b {
			b[i] = byte(rnd.IntN(256))
			if rnd.IntN(2) == 0 {
				b[i] = byte(rnd.IntN(16)) // small tags and lengths
			}
		}
		inputs = append(inputs, b)
	}
	// Length-delimited fields of two-byte lengths (a series' are), minimal
	// or not, that fit what follows or not, and longer varints.
	for range 20000 {
		l := 100 + rnd.IntN(400)
		// Followed by the bytes of other fields, or cut short.
		b := make([]byte, max(3, 3+l+rnd.IntN(1200)-100))
		b[0] = byte(rnd.IntN(16))<<3 | byte(protowire.BytesType)
		b[1], b[2] = byte(l)|0x80, byte(l>>7)
		if rnd.IntN(4) == 0 {
			b[2] |= 0x80
		}
		inputs = append(inputs, b)
	}
	for range 200 { // three-byte lengths: 16 KiB and more
		l := 1<<14 + rnd.IntN(300)
		b := protowire.AppendVarint([]byte{0x0a}, uint64(l))
		inputs = append(inputs, append(b, make([]byte, l+rnd.IntN(400)-100)...))
	}
	for _, b := range inputs {
		var f field
		rest, err := f.read(b)
		num, typ, n := protowire.ConsumeTag(b)
		m := -1
		if n >= 0 {
			m = protowire.ConsumeFieldValue(num, typ, b[n:])
		}
		if n < 0 || m < 0 {
			require.Error(t, err, "% x", b)
			continue
		}
		require.NoError(t, err, "% x", b)
		require.Equal(t, num, f.num, "% x", b)
		require.Equal(t, typ, f.typ, "% x", b)
		require.Equal(t, b[:n+m], f.whole, "% x", b)
		require.Equal(t, b[n+m:], rest, "% x", b)
		if typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			require.Equal(t, v, f.v, "% x", b)
		}
	}
}

// TestScanV1SampleAsSchema checks scanV1Sample, whose common layout is read
// directly, against the schema read with protowire: at most one fixed64
// value (field 1) and one varint timestamp (field 2), nothing else.
func TestScanV1SampleAsSchema(t *testing.T) {
	want := func(b []byte) bool {
		var seen [3]bool
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 || num < 1 || num > 2 || seen[num] {
				return false
			}
			if (num == 1 && typ != protowire.Fixed64Type) || (num == 2 && typ != protowire.VarintType) {
				return false
			}
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return false
			}
			seen[num], b = true, b[n+m:]
		}
		return true
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	var inputs [][]byte
	for _, ts := range []int64{0, 1, 127, 128, 1 << 40, 1<<56 - 1, 1 << 56, 1<<63 - 1, -1, -1 << 40} {
		b := protowire.AppendTag(nil, 1, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, rnd.Uint64())
		b = protowire.AppendVarint(protowire.AppendTag(b, 2, protowire.VarintType), uint64(ts))
		inputs = append(inputs, b)
	}
	for range 200000 {
		b := slices.Clone(inputs[rnd.IntN(10)])
		switch rnd.IntN(4) {
		case 0: // a byte changed
			b[rnd.IntN(len(b))] = byte(rnd.IntN(256))
		case 1: // cut short
			b = b[:rnd.IntN(len(b))]
		case 2: // something after it
			b = append(b, byte(rnd.IntN(256)), byte(rnd.IntN(3)))
		case 3: // a varint byte's continuation bit flipped
			if len(b) > 10 {
				b[10+rnd.IntN(len(b)-10)] ^= 0x80
			}
		}
		inputs = append(inputs, b)
	}
	for _, b := range inputs {
		require.Equal(t, want(b), scanV1Sample(b), "% x", b)
	}
}

// SmallLabel reads a labels field only where protowire reads the same: a
// Label of a non-empty name and the value it returns, each field with a
// one-byte tag and length once. Fields as AppendLabels writes them, of
// lengths up to 127, it always reads; longer ones, other layouts and bytes
// changed at random it leaves to the general reading, or reads as
// protowire does.
func TestSmallLabelAsProtowire(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	str := func(n int) []byte { return []byte(strings.Repeat("n", n)) }
	for range 100000 {
		name, value := str(rnd.IntN(140)), str(rnd.IntN(140))
		if rnd.IntN(20) == 0 {
			value = str(1200 + rnd.IntN(300)) // a length whose second byte is 0x0a
		}
		b := AppendLabel(nil, name, value)
		small := len(name) > 0 && len(b) <= 2+0x7f
		if rnd.IntN(2) == 0 { // a byte of its head changed, or a field of another layout
			small = false
			switch i := rnd.IntN(8); {
			case i < len(b) && rnd.IntN(4) > 0:
				b[i] = byte(rnd.IntN(256))
			default:
				b = protowire.AppendBytes(protowire.AppendTag(nil, fieldLabels, protowire.BytesType),
					protowire.AppendBytes(protowire.AppendTag(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), name), 2, protowire.BytesType), value))
			}
		}
		b = append(b, 0x12, 0x01) // what follows, unread
		n, gotName, gotValue, ok := SmallLabel(b)
		if small {
			require.True(t, ok, "% x", b[:min(len(b), 8)])
		}
		if !ok {
			continue
		}
		// As protowire reads it: one labels field, of a name field and a
		// value field or none.
		num, typ, k := protowire.ConsumeTag(b)
		require.EqualValues(t, fieldLabels, num)
		require.Equal(t, protowire.BytesType, typ)
		msg, m := protowire.ConsumeBytes(b[k:])
		require.Positive(t, m)
		require.Equal(t, k+m, n)
		fields := map[protowire.Number][]byte{}
		for len(msg) > 0 {
			num, typ, k := protowire.ConsumeTag(msg)
			require.Positive(t, k)
			require.Equal(t, protowire.BytesType, typ)
			require.NotContains(t, fields, num)
			v, m := protowire.ConsumeBytes(msg[k:])
			require.Positive(t, m)
			fields[num], msg = v, msg[k+m:]
		}
		require.NotEmpty(t, fields[1])
		require.Equal(t, fields[1], gotName)
		require.Equal(t, string(fields[2]), string(gotValue))
		require.Subset(t, []protowire.Number{1, 2}, slices.Collect(maps.Keys(fields)))
	}
}

// appendWithoutRef is appendWithout written plainly: v's fields other than
// drop, in order, as field num, or v whole if it is malformed.
func appendWithoutRef(b []byte, num protowire.Number, v []byte, drop protowire.Number) []byte {
	kept := []byte{}
	for off := 0; off < len(v); {
		fnum, typ, k := protowire.ConsumeTag(v[off:])
		m := -1
		if k >= 0 {
			m = protowire.ConsumeFieldValue(fnum, typ, v[off+k:])
		}
		if m < 0 {
			kept = v
			break
		}
		if fnum != drop {
			kept = append(kept, v[off:off+k+m]...)
		}
		off += k + m
	}
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), kept)
}

// randomPointBytes returns bytes of the kind appendWithout takes: fields of
// every wire type, start fields among them, whose lengths take one to three
// bytes, dropped or not; or such a message cut short, changed or followed
// by a byte; or junk.
func randomPointBytes(rnd *rand.Rand) []byte {
	var b []byte
	nums := []protowire.Number{1, 2, fieldSampleStart, fieldHistogramTime, fieldHistogramStart, protowire.Number(rnd.IntN(40)), 1 << 20}
	for range rnd.IntN(8) {
		num := nums[rnd.IntN(len(nums))]
		switch rnd.IntN(6) {
		case 0:
			b = protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), rnd.Uint64()>>rnd.IntN(64))
		case 1:
			b = protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), rnd.Uint64())
		case 2:
			b = protowire.AppendFixed32(protowire.AppendTag(b, num, protowire.Fixed32Type), rnd.Uint32())
		case 3: // lengths about 128 and 16 KiB, where a length's size changes
			n := rnd.IntN(300)
			if rnd.IntN(50) == 0 {
				n = 1<<14 - 200 + rnd.IntN(400)
			}
			b = protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), make([]byte, n))
		case 4: // a group, empty or of one field
			b = protowire.AppendTag(b, num, protowire.StartGroupType)
			if rnd.IntN(2) == 0 {
				b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), 1)
			}
			b = protowire.AppendTag(b, num, protowire.EndGroupType)
		case 5: // a varint not minimally encoded
			b = append(protowire.AppendTag(b, num, protowire.VarintType), 0x81, 0x80, 0x00)
		}
	}
	switch rnd.IntN(8) {
	case 0: // cut short
		b = b[:rnd.IntN(len(b)+1)]
	case 1: // a byte changed
		if len(b) > 0 {
			b[rnd.IntN(len(b))] = byte(rnd.IntN(256))
		}
	case 2: // a byte after it
		b = append(b, byte(rnd.IntN(256)))
	case 3: // junk
		b = make([]byte, rnd.IntN(12))
		for i := range b {
			b[i] = byte(rnd.IntN(256))
		}
	}
	return b
}

// appendWithout writes what appendWithoutRef does, after whatever b holds,
// for well-formed, malformed and junk bytes alike.
func TestAppendWithoutAsPlain(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for range 100000 {
		v := randomPointBytes(rnd)
		num := protowire.Number(1 + rnd.IntN(20))
		drop := [...]protowire.Number{fieldSampleStart, fieldHistogramStart, 1, protowire.Number(1 + rnd.IntN(20))}[rnd.IntN(4)]
		prefix := make([]byte, rnd.IntN(6), 6+rnd.IntN(400))
		want := appendWithoutRef(slices.Clone(prefix), num, v, drop)
		require.Equal(t, want, appendWithout(prefix, num, v, drop), "field %d without %d: % x", num, drop, v)
	}
}

// FuzzAppendWithout checks appendWithout against appendWithoutRef on any
// bytes; its seeds are points with and without start fields, and
// malformed ones.
func FuzzAppendWithout(f *testing.F) {
	h := testHistogram(2000, 1000)
	hist, err := h.Marshal()
	require.NoError(f, err)
	smp := appendVarintField(appendVarintField(appendFloat(nil, 1, 1.5), 2, 2000), fieldSampleStart, 1000)
	long := protowire.AppendBytes(protowire.AppendTag(slices.Clone(smp), 4, protowire.BytesType), make([]byte, 120))
	for _, v := range [][]byte{nil, smp, smp[:len(smp)-1], long, hist, hist[:len(hist)-2], {0x18}, {0x00}, {0x1b, 0x1c}} {
		f.Add([]byte{0x0a}, v, uint8(fieldSampleStart))
		f.Add([]byte(nil), v, uint8(fieldHistogramStart))
	}
	f.Fuzz(func(t *testing.T, prefix, v []byte, drop uint8) {
		prefix = slices.Clip(prefix) // appended to: not into v's memory
		want := appendWithoutRef(slices.Clone(prefix), fieldSamples, v, protowire.Number(drop))
		require.Equal(t, want, appendWithout(prefix, fieldSamples, v, protowire.Number(drop)))
	})
}
