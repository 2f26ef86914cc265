package prw_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

// decodeV2 decodes req with dec and returns the accepted series, the
// refused count, the first refusal and whether labels were sorted.
func decodeV2(t *testing.T, dec *prw.Decoder, req *writev2.Request) ([]prw.Series, int, string, bool) {
	t.Helper()
	msg, err := req.Marshal()
	require.NoError(t, err)
	d, err := dec.Decode(msg)
	require.NoError(t, err)
	defer dec.Release(d)
	series, _, err := rwtest.Decode(&d.Req)
	require.NoError(t, err)
	return series, d.Invalid.Count, d.Invalid.First, d.Sorted
}

func sample(v float64) []writev2.Sample { return []writev2.Sample{{Value: v, Timestamp: 1000}} }

// Series whose label names repeat those of the series before (as a
// sender's series of one metric do) are checked as fully as any other:
// each one's values, the order of its names, and each request's own
// symbols. Metadata read once per run of equal bytes still merges as
// protobuf does.
func TestDecodeV2RepeatedNamesAndMetadata(t *testing.T) {
	dec := prw.NewV2Decoder()
	syms := []string{"", "__name__", "up", "job", "a", "b", "\xff", "help", "unit"}
	md := writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: 7}
	req := &writev2.Request{Symbols: syms, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: sample(1), Metadata: md},
		{LabelsRefs: []uint32{1, 2}, Samples: sample(2)},                     // other names between
		{LabelsRefs: []uint32{1, 0, 3, 4}, Samples: sample(2), Metadata: md}, // empty __name__
		{LabelsRefs: []uint32{1, 2, 3, 6}, Samples: sample(3), Metadata: md}, // value not UTF-8
		{LabelsRefs: []uint32{1, 2, 3, 5}, Samples: sample(4), Metadata: md},
		{LabelsRefs: []uint32{3, 5, 1, 2}, Samples: sample(5)},               // out of order
		{LabelsRefs: []uint32{1, 2, 3, 5, 3, 4}, Samples: sample(6)},         // duplicate name
		{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: sample(7), Metadata: md}, // names as the first
		{LabelsRefs: []uint32{1, 2, 3, 9}, Samples: sample(8)},               // and a value outside the symbols
	}}
	msg, err := req.Marshal()
	require.NoError(t, err)
	d, err := dec.Decode(msg)
	require.NoError(t, err)
	require.Equal(t, 4, d.Invalid.Count)
	require.True(t, d.Sorted)
	series, _, err := rwtest.Decode(&d.Req)
	require.NoError(t, err)
	dec.Release(d)
	require.Len(t, series, 5)
	series = append(series[:1], series[2:]...) // up, checked with the others
	want := []labels.Labels{
		labels.FromStrings("__name__", "up", "job", "a"),
		labels.FromStrings("__name__", "up", "job", "b"),
		labels.FromStrings("__name__", "up", "job", "b"),
		labels.FromStrings("__name__", "up", "job", "a"),
	}
	for i, s := range series {
		require.Equal(t, want[i], s.Labels, i)
	}
	gauge := prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "help"}
	require.Equal(t, gauge, series[0].Metadata)
	require.Equal(t, gauge, series[1].Metadata)
	require.True(t, series[2].Metadata.Empty())
	require.Equal(t, gauge, series[3].Metadata)

	// The next request's symbols are its own: the same references name
	// other labels there.
	syms2 := []string{"", "__name__", "up", "__name__", "a"}
	got, refused, first, _ := decodeV2(t, dec, &writev2.Request{Symbols: syms2, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: sample(1)},
	}})
	require.Empty(t, got)
	require.Equal(t, 1, refused)
	require.Contains(t, first, "duplicate label name")

	// So are its metadata's: the same references, other help.
	syms3 := []string{"", "__name__", "up", "job", "a", "b", "c", "other help"}
	got, _, _, _ = decodeV2(t, dec, &writev2.Request{Symbols: syms3, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: sample(1), Metadata: md},
		{LabelsRefs: []uint32{1, 2, 3, 5}, Samples: sample(1), Metadata: md},
	}})
	other := prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "other help"}
	require.Equal(t, other, got[0].Metadata)
	require.Equal(t, other, got[1].Metadata)

	// Bytes read before from none still merge into a metadata message
	// before them.
	mdBytes, err := md.Marshal()
	require.NoError(t, err)
	unit, err := (&writev2.Metadata{UnitRef: 8}).Marshal()
	require.NoError(t, err)
	ts := func(extra ...[]byte) []byte {
		b, err := (&writev2.TimeSeries{LabelsRefs: []uint32{1, 2}, Samples: sample(1)}).Marshal()
		require.NoError(t, err)
		for _, m := range append(extra, mdBytes) {
			b = append(append(b, 0x2a, byte(len(m))), m...) // field 5
		}
		return b
	}
	body, err := (&writev2.Request{Symbols: syms}).Marshal()
	require.NoError(t, err)
	for _, s := range [][]byte{ts(), ts(unit)} {
		body = append(append(body, 0x2a, byte(len(s))), s...) // Request field 5
	}
	d, err = dec.Decode(body)
	require.NoError(t, err)
	series, _, err = rwtest.Decode(&d.Req)
	require.NoError(t, err)
	dec.Release(d)
	require.Len(t, series, 2)
	require.Equal(t, gauge, series[0].Metadata)
	require.Equal(t, prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "help", Unit: "unit"}, series[1].Metadata)
}

// decodeFormAndPlain decodes the 2.0 message msg into the form and as 1.0
// data; both are released at the end of the test.
func decodeFormAndPlain(t *testing.T, msg []byte) (form, plain *prw.Decoded) {
	t.Helper()
	formDec, plainDec := prw.NewV2Decoder(), prw.NewPlainV2Decoder()
	form, err := formDec.Decode(msg)
	require.NoError(t, err)
	t.Cleanup(func() { formDec.Release(form) })
	plain, err = plainDec.Decode(msg)
	require.NoError(t, err)
	t.Cleanup(func() { plainDec.Release(plain) })
	return form, plain
}

// seriesOfBoth decodes the 2.0 message msg into the form and as 1.0 data,
// and returns the series of each.
func seriesOfBoth(t *testing.T, msg []byte) [2][]prw.Series {
	t.Helper()
	form, plain := decodeFormAndPlain(t, msg)
	var out [2][]prw.Series
	for i, d := range []*prw.Decoded{form, plain} {
		series, _, err := rwtest.Decode(&d.Req)
		require.NoError(t, err)
		out[i] = series
	}
	return out
}

// The plain 2.0 decoder makes what the form becomes for 1.0: each series
// with points as AppendV1 writes it, and each family's metadata once, from
// its first series, after the series. It refuses what the form decoder
// refuses, and its client body never stands for the result.
func TestPlainV2DecoderIsTheFormFor1(t *testing.T) {
	req := rwtest.V2Request(30, 2)
	st := writev2.NewSymbolTable()
	for _, s := range req.Symbols {
		st.Symbolize(s)
	}
	h := writev2.FromIntHistogram(5000, 5, &histogram.Histogram{Count: 1, Sum: 1, ZeroThreshold: 0.001, ZeroCount: 1})
	h.StartTimestamp = 100
	req.Timeseries[0].Histograms = []writev2.Histogram{h}
	req.Timeseries[1].Exemplars = []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("trace_id", "t"), nil), Value: 1, Timestamp: 5}}
	req.Timeseries[2].Samples[0].StartTimestamp = 0
	gauge := writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: st.Symbolize("Temperature."), UnitRef: st.Symbolize("celsius")}
	req.Timeseries = append(req.Timeseries,
		writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "temp_celsius", "job", "a"), nil), Metadata: gauge},
		writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("job", "b", "__name__", "temp_celsius"), nil), Samples: sample(3), Metadata: gauge},
		writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", ""), nil), Samples: sample(4)}, // refused
		writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "no_meta"), nil), Samples: sample(5)})
	req.Symbols = st.Symbols()
	msg, err := req.Marshal()
	require.NoError(t, err)

	form, plain := decodeFormAndPlain(t, msg)

	families := requirePlainOf(t, form, plain)
	require.Len(t, families, 2)

	var wr prompb.WriteRequest
	require.NoError(t, wr.Unmarshal(plain.Req.Raw.Msg), "a 1.0 request")
	require.Len(t, wr.Timeseries, len(plain.Req.Raw.Series))
	require.Equal(t, int64(5), wr.Timeseries[0].Histograms[0].Timestamp)
	require.Empty(t, wr.Timeseries[0].Histograms[0].XXX_unrecognized, "the histogram, without its start")
	require.Empty(t, wr.Timeseries[0].Samples[0].XXX_unrecognized, "the sample, without its start")

	require.Equal(t, 1, form.Invalid.Count)
	require.Equal(t, form.Invalid, plain.Invalid)
	require.True(t, form.Whole || form.Invalid.Count > 0)
	require.False(t, plain.Whole)
	require.False(t, plain.Req.Raw.Ext)
	require.Equal(t, form.Req.Raw.Samples, plain.Req.Raw.Samples)
}

// requirePlainOf requires plain, a 2.0 request decoded as 1.0 data, to
// be what the same request decoded into form makes for 1.0: each series
// with points as AppendV1 writes it, without 2.0 extensions, then each
// family's metadata once, from its first series. It returns the families.
func requirePlainOf(t *testing.T, form, plain *prw.Decoded) []prompb.MetricMetadata {
	t.Helper()
	want, families := plainOf(t, form)
	var got [][]byte
	for _, rs := range plain.Req.Raw.Series {
		got = append(got, rs.Bytes(plain.Req.Raw.Msg))
		require.False(t, rs.Ext)
	}
	require.Equal(t, want, got)
	require.Equal(t, families, familiesOf(t, plain))
	return families
}

// plainOf returns what the plain decoder makes of the 2.0 request decoded
// into form (see requirePlainOf).
func plainOf(t *testing.T, form *prw.Decoded) (series [][]byte, families []prompb.MetricMetadata) {
	t.Helper()
	seen := map[string]bool{}
	for _, rs := range form.Req.Raw.Series {
		ts := rs.Bytes(form.Req.Raw.Msg)
		b, v1, md, err := prw.AppendV1(nil, ts)
		require.NoError(t, err)
		require.Equal(t, [3]uint32{rs.Samples, rs.Histograms, rs.Exemplars}, [3]uint32{v1.Samples, v1.Histograms, v1.Exemplars}, "points counted by AppendV1")
		if rs.Points() > 0 {
			series = append(series, v1.Bytes(b))
		}
		if md != nil {
			m := prw.ReadMetadata(md)
			name := string(prw.SeriesFamily(ts, md))
			if !seen[name] {
				seen[name] = true
				families = append(families, prompb.MetricMetadata{Type: prompb.MetricMetadata_MetricType(m.Type), MetricFamilyName: name, Help: m.Help, Unit: m.Unit})
			}
		}
	}
	return series, families
}

// familiesOf returns the 1.0 family metadata of a plain decode.
func familiesOf(t *testing.T, plain *prw.Decoded) []prompb.MetricMetadata {
	t.Helper()
	var got []prompb.MetricMetadata
	for _, sp := range plain.Req.Raw.Metadata {
		var m prompb.MetricMetadata
		require.NoError(t, m.Unmarshal(sp.Bytes(plain.Req.Raw.Msg)))
		got = append(got, m)
	}
	return got
}

// Families whose series interleave, as in a request of a sender's many
// shards, are each written once, from their first series, however the
// plain decoder finds them again: a name of the same type, a histogram's
// other suffix, a name of another type, whose family differs or not.
// Metadata other than type, help and unit, or repeated, still merges. In
// the form, each series has its own metadata, however often the same one
// came before: of the same help, another type or unit is another.
func TestPlainV2FamiliesInterleaved(t *testing.T) {
	st := writev2.NewSymbolTable()
	meta := func(typ writev2.Metadata_MetricType, help string, unit ...string) writev2.Metadata {
		return writev2.Metadata{Type: typ, HelpRef: st.Symbolize(help), UnitRef: st.Symbolize(strings.Join(unit, ""))}
	}
	counter, gauge, hist := writev2.Metadata_METRIC_TYPE_COUNTER, writev2.Metadata_METRIC_TYPE_GAUGE, writev2.Metadata_METRIC_TYPE_HISTOGRAM
	req := &writev2.Request{}
	for i, s := range []struct {
		name string
		md   writev2.Metadata
	}{
		{"a_total", meta(counter, "A")},
		{"b", meta(gauge, "B")},
		{"a_total", meta(counter, "A")},
		{"x_bucket", meta(hist, "X")},
		{"b", meta(gauge, "B")},
		{"x_count", meta(hist, "X")},
		{"x_bucket", meta(hist, "X")},
		{"x_bucket", meta(counter, "X as a counter")},
		{"x_bucket", meta(hist, "X")},
		{"a_total", meta(gauge, "A as a gauge")},
		{"b", meta(gauge, "B")},
		{"d", meta(counter, "D")},
		{"d", meta(gauge, "D")},
		{"b", meta(gauge, "B")},
		{"d", meta(gauge, "D", "seconds")},
		{"d", meta(gauge, "D")},
		{"c", meta(counter, "C")}, // with more metadata below
	} {
		req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", s.name, "i", strconv.Itoa(i)), nil),
			Samples:    sample(float64(i)),
			Metadata:   s.md,
		})
	}
	req.Symbols = st.Symbols()
	// After c's type, help and unit: a field they are not, and its type
	// again, which protobuf merges (the last one kept): a gauge.
	odd := protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1)
	odd = protowire.AppendVarint(protowire.AppendTag(odd, 1, protowire.VarintType), uint64(gauge))
	req.Timeseries[len(req.Timeseries)-1].Metadata.XXX_unrecognized = odd
	msg, err := req.Marshal()
	require.NoError(t, err)
	form, plain := decodeFormAndPlain(t, msg)

	families := requirePlainOf(t, form, plain)
	var names []string
	for _, f := range families {
		names = append(names, f.MetricFamilyName)
	}
	require.Equal(t, []string{"a_total", "b", "x", "x_bucket", "d", "c"}, names)
	require.Equal(t, prompb.MetricMetadata_GAUGE, families[5].Type, "c's metadata merged")

	require.Len(t, form.Req.Raw.Series, len(req.Timeseries))
	for i, rs := range form.Req.Raw.Series {
		_, _, md, err := prw.AppendV1(nil, rs.Bytes(form.Req.Raw.Msg))
		require.NoError(t, err)
		sent := req.Timeseries[i].Metadata
		typ := sent.Type
		if i == len(req.Timeseries)-1 {
			typ = gauge // merged
		}
		want := prw.Metadata{Type: prw.MetricType(typ), Help: req.Symbols[sent.HelpRef], Unit: req.Symbols[sent.UnitRef]}
		require.Equal(t, want, prw.ReadMetadata(md), "series %d", i)
	}
}

// A Metadata message with a type, help or unit of another wire type than
// varint is refused, by either decoder, as protobuf would refuse it.
func TestDecodeV2MetadataOfWrongWireType(t *testing.T) {
	for _, num := range []protowire.Number{1, 3, 4} {
		req := &writev2.Request{Symbols: []string{"", "__name__", "up"}, Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 2}, Samples: sample(1), Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE}},
		}}
		req.Timeseries[0].Metadata.XXX_unrecognized = protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), []byte("x"))
		msg, err := req.Marshal()
		require.NoError(t, err)
		for _, dec := range []*prw.Decoder{prw.NewV2Decoder(), prw.NewPlainV2Decoder()} {
			_, err := dec.Decode(msg)
			require.ErrorContains(t, err, fmt.Sprintf("wrong wire type 2 for field %d", num))
		}
	}
}

// A sample's start fields are left out of its 1.0 form wherever they are:
// after its other fields (cut off), or anywhere else (written without).
func TestPlainV2SamplesOfAnyLayout(t *testing.T) {
	field := func(num protowire.Number, v uint64) []byte {
		if num == 1 {
			return protowire.AppendFixed64(protowire.AppendTag(nil, 1, protowire.Fixed64Type), v)
		}
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	value, ts := field(1, math.Float64bits(2.5)), field(2, 1000)
	start, zero := field(3, 500), field(3, 0)
	for name, smp := range map[string][][]byte{
		"start last":         {value, ts, start},
		"start first":        {start, value, ts},
		"start between":      {value, start, ts},
		"start twice, last":  {value, ts, zero, start},
		"start of 0":         {value, ts, zero},
		"only a start":       {start},
		"no start":           {value, ts},
		"start, then a zero": {value, ts, start, zero},
	} {
		t.Run(name, func(t *testing.T) {
			var ts []byte
			ts = protowire.AppendTag(ts, 1, protowire.BytesType)
			ts = protowire.AppendBytes(ts, []byte{1, 2})
			ts = protowire.AppendTag(ts, 2, protowire.BytesType)
			ts = protowire.AppendBytes(ts, bytes.Join(smp, nil))
			var msg []byte
			for _, s := range []string{"", "__name__", "x"} {
				msg = protowire.AppendString(protowire.AppendTag(msg, 4, protowire.BytesType), s)
			}
			msg = protowire.AppendBytes(protowire.AppendTag(msg, 5, protowire.BytesType), ts)

			form, plain := decodeFormAndPlain(t, msg)
			require.Len(t, plain.Req.Raw.Series, 1)
			fs := form.Req.Raw.Series[0]
			b, sp, _, err := prw.AppendV1(nil, fs.Bytes(form.Req.Raw.Msg))
			require.NoError(t, err)
			require.Equal(t, sp.Bytes(b), plain.Req.Raw.Series[0].Bytes(plain.Req.Raw.Msg))
			var wr prompb.WriteRequest
			require.NoError(t, wr.Unmarshal(plain.Req.Raw.Msg))
			require.Empty(t, wr.Timeseries[0].Samples[0].XXX_unrecognized, "no start field")
		})
	}
}

// A label is written once per request and copied after, alone or with the
// labels written with it: every series still gets exactly its own labels,
// whatever it shares with the series before it. The requests mix short
// series (whose length takes one byte) with long ones (three bytes), one
// value under several names, and series that leave nothing in 1.0
// (metadata only) between the others.
func TestDecodeV2CopiesLabelsExactly(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "cpu", "env", "instance", "job", "mode", "zone"}
	values := []string{"0", "1", "idle", "prod", "node", strings.Repeat("v", 200), strings.Repeat("w", 20000)}
	gauge := writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE}
	for round := range 200 {
		st := writev2.NewSymbolTable()
		req := &writev2.Request{}
		var want []labels.Labels
		for range 1 + rnd.IntN(12) {
			b := labels.NewScratchBuilder(0)
			b.Add("__name__", []string{"m", "n"}[rnd.IntN(2)])
			for _, n := range names {
				if rnd.IntN(3) > 0 {
					v := values[rnd.IntN(5)]
					if rnd.IntN(20) == 0 {
						v = values[5+rnd.IntN(2)]
					}
					b.Add(n, v)
				}
			}
			b.Sort()
			ls := b.Labels()
			ts := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(ls, nil), Metadata: gauge}
			if rnd.IntN(5) > 0 {
				ts.Samples = sample(1)
				want = append(want, ls)
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		req.Symbols = st.Symbols()
		msg, err := req.Marshal()
		require.NoError(t, err)
		for _, series := range seriesOfBoth(t, msg) {
			var got []labels.Labels
			for _, s := range series {
				if s.Samples != nil {
					got = append(got, s.Labels)
				}
			}
			require.Equal(t, want, got, "round %d", round)
		}
	}
}

// Label references of 128 and more take two bytes or more in a packed
// labels_refs field: both decoders resolve them as they do one-byte ones,
// whether packed or each a field of its own; one cut short is an error.
func TestDecodeV2ReferencesPast127(t *testing.T) {
	// The first 150 series' references take two bytes; the new ones of
	// the next 150 (other instances), three.
	of := func(i int) labels.Labels { return rwtest.SeriesLabels(i + i/150*1000) }
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	filler := 0
	for _, upTo := range []int{200, 20000} {
		for ; filler < upTo; filler++ {
			st.Symbolize("filler " + strconv.Itoa(filler))
		}
		for range 150 {
			ls := of(len(req.Timeseries))
			req.Timeseries = append(req.Timeseries, writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(ls, nil), Samples: sample(1)})
		}
	}
	require.Greater(t, slices.Max(req.Timeseries[299].LabelsRefs), uint32(1<<14))
	req.Symbols = st.Symbols()
	unpacked := req.Timeseries[len(req.Timeseries)-1]
	msg, err := req.Marshal()
	require.NoError(t, err)
	for _, series := range seriesOfBoth(t, msg) {
		require.Len(t, series, 300)
		for i, s := range series {
			require.Equal(t, of(i), s.Labels, "series %d", i)
		}
	}

	// The last series again, its references each a varint field.
	var ts []byte
	for _, r := range unpacked.LabelsRefs {
		ts = protowire.AppendVarint(protowire.AppendTag(ts, 1, protowire.VarintType), uint64(r))
	}
	ts = protowire.AppendBytes(protowire.AppendTag(ts, 2, protowire.BytesType),
		protowire.AppendVarint(protowire.AppendTag(protowire.AppendFixed64(protowire.AppendTag(nil, 1, protowire.Fixed64Type), math.Float64bits(1)), 2, protowire.VarintType), 1000))
	var body []byte
	for _, s := range req.Symbols {
		body = protowire.AppendString(protowire.AppendTag(body, 4, protowire.BytesType), s)
	}
	for _, series := range seriesOfBoth(t, protowire.AppendBytes(protowire.AppendTag(body, 5, protowire.BytesType), ts)) {
		require.Len(t, series, 1)
		require.Equal(t, of(299), series[0].Labels)
	}

	// A packed reference whose last byte says another follows.
	cut := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0, 0x81})
	for _, dec := range []*prw.Decoder{prw.NewV2Decoder(), prw.NewPlainV2Decoder()} {
		_, err := dec.Decode(protowire.AppendBytes(protowire.AppendTag(body, 5, protowire.BytesType), cut))
		require.ErrorContains(t, err, "labels_refs")
	}
}
