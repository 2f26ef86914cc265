package receiver

import (
	"testing"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// A 1.0 request the scan accepts only in part is written anew: the series
// and metadata it accepts as they were sent, the others repaired or
// refused, unknown fields dropped, everything in the order sent.
func TestDecodeV1Mixed(t *testing.T) {
	marshal := func(m interface{ Marshal() ([]byte, error) }) []byte {
		b, err := m.Marshal()
		require.NoError(t, err)
		return b
	}
	series := func(kv ...string) []byte {
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: 1, Timestamp: 1}}}
		for i := 0; i < len(kv); i += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: kv[i], Value: kv[i+1]})
		}
		return marshal(&ts)
	}
	field := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	a := series("__name__", "a", "job", "x")
	m1 := marshal(&prompb.MetricMetadata{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "a", Help: "A."})
	unsorted, sorted := series("job", "x", "__name__", "b"), series("__name__", "b", "job", "x")
	c := series("__name__", "c")
	m2 := protowire.AppendVarint(protowire.AppendTag(marshal(&prompb.MetricMetadata{MetricFamilyName: "c"}), 9, protowire.VarintType), 1)
	nameless := series("job", "x")
	// Out of order after their first byte, which the scan compares first.
	late, early := series("__name__", "a", "jb", "1", "ja", "2"), series("__name__", "a", "ja", "2", "jb", "1")

	unknown := protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 7)
	for _, tc := range []struct {
		name     string
		msg      []byte
		form     []byte // raw.Msg
		asSent   bool
		series   [][]byte
		metadata [][]byte
		refused  string
	}{
		{name: "as sent", msg: field(field(nil, 1, a), 3, m1), form: field(field(nil, 1, a), 3, m1), asSent: true, series: [][]byte{a}, metadata: [][]byte{m1}},
		{
			name:     "mixed",
			msg:      field(field(append(field(field(field(field(nil, 1, a), 3, m1), 1, unsorted), 1, c), unknown...), 3, m2), 1, nameless),
			form:     field(field(field(field(field(nil, 1, a), 3, m1), 1, sorted), 1, c), 3, m2),
			series:   [][]byte{a, sorted, c},
			metadata: [][]byte{m1, m2},
			refused:  `series #3 {job="x"}: missing or empty __name__`,
		},
		{name: "unsorted after the first byte", msg: field(nil, 1, late), form: field(nil, 1, early), series: [][]byte{early}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec := prw.NewV1Decoder()
			d, err := dec.Decode(tc.msg)
			require.NoError(t, err)
			defer dec.Release(d)
			raw := d.Req.Raw
			require.Equal(t, tc.asSent, raw.AsSent)
			require.Equal(t, tc.refused, d.Invalid.First)
			require.Equal(t, tc.form, raw.Msg)
			require.Len(t, raw.Series, len(tc.series))
			for i, rs := range raw.Series {
				require.Equal(t, tc.series[i], rs.Bytes(raw.Msg))
			}
			require.Len(t, raw.Metadata, len(tc.metadata))
			for i, sp := range raw.Metadata {
				require.Equal(t, tc.metadata[i], sp.Bytes(raw.Msg))
			}
			copyRequest(t, &d.Req)
		})
	}
}
