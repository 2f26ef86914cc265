//go:build !race

// The race detector makes sync.Pool drop entries at random: allocation
// counts are only meaningful without it.

package receiver

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

// The decoders allocate nothing per request once their pooled buffers have
// grown: the 1.0 scan of a request in the form, and the 2.0 decoder of any
// valid request without histograms, also as 1.0 data.
func TestDecodeAllocs(t *testing.T) {
	v1 := rwtest.V1Request(50, 2)
	v1.Timeseries[0].Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 1, Timestamp: 5}}
	v1.Metadata = []prompb.MetricMetadata{{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "x", Help: "h", Unit: "u"}}
	v2 := rwtest.V2Request(50, 2)
	st := writev2.NewSymbolTable()
	for _, s := range v2.Symbols {
		st.Symbolize(s)
	}
	v2.Timeseries[0].Exemplars = []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("trace_id", "abc"), nil), Value: 1, Timestamp: 5}}
	v2.Symbols = st.Symbols()
	for _, tc := range []struct {
		name string
		dec  *prw.Decoder
		msg  rwtest.Marshaler
	}{
		{"v1", prw.NewV1Decoder(), v1},
		{"v2", prw.NewV2Decoder(), v2},
		{"v2 plain", prw.NewPlainV2Decoder(), v2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := tc.msg.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			decode := func() {
				d, err := tc.dec.Decode(msg)
				if err != nil {
					t.Fatal(err)
				}
				if d.Invalid.Count != 0 || len(d.Req.Raw.Series) != 50 {
					t.Fatalf("%d invalid, %d series", d.Invalid.Count, len(d.Req.Raw.Series))
				}
				if tc.name == "v1" && !d.Req.Raw.AsSent {
					t.Fatal("the scan did not accept the request")
				}
				tc.dec.Release(d)
			}
			decode()
			if n := testing.AllocsPerRun(20, decode); n != 0 {
				t.Errorf("%v allocations per decode", n)
			}
		})
	}
}
