package prw_test

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

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
	}}
	msg, err := req.Marshal()
	require.NoError(t, err)
	d, err := dec.Decode(msg)
	require.NoError(t, err)
	require.Equal(t, 3, d.Invalid.Count)
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
