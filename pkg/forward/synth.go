package forward

import (
	"sync"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// A request reaches the Manager in the form (see prw.AppendSeries) when
// the receiver's scan accepted its 1.0 bytes as they are; otherwise it is
// decoded into prw.Series (a 2.0 request, a 1.0 one the scan left to the
// full decoder, one whose labels a tenant changed). synthesize is the one
// conversion from that decoded form to the form every upstream is
// prepared, queued and encoded from.

// synthesizer holds the buffers of one request's form. The Manager pools
// them: a synthesized RawV1 is valid until the synthesizer is put back,
// and everything that outlives Enqueue is copied from it.
type synthesizer struct {
	raw     prw.RawV1
	scratch []byte
}

var synthesizers = sync.Pool{New: func() any { return &synthesizer{} }}

// synthesize returns req, a decoded request, in the form: its series, and
// its 1.0 family metadata as MetricMetadata fields.
func (sy *synthesizer) synthesize(req *prw.Request) *prw.RawV1 {
	raw := &sy.raw
	*raw = prw.RawV1{Msg: raw.Msg[:0], Series: raw.Series[:0], Metadata: raw.Metadata[:0]}
	b := raw.Msg
	for i := range req.Series {
		var rs prw.RawSeries
		b, rs, sy.scratch = prw.AppendSeries(b, &req.Series[i], sy.scratch)
		raw.Series = append(raw.Series, rs)
		raw.Samples += int(rs.Samples)
		raw.Histograms += int(rs.Histograms)
		raw.Exemplars += int(rs.Exemplars)
		raw.Ext = raw.Ext || rs.Ext
	}
	for _, fm := range req.Metadata {
		md := prompb.MetricMetadata{
			Type:             prw.MetricTypeToV1(fm.Type),
			MetricFamilyName: fm.MetricFamilyName,
			Help:             fm.Help,
			Unit:             fm.Unit,
		}
		n := md.Size()
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		raw.Metadata = append(raw.Metadata, prw.Span{Off: uint32(len(b)), Len: uint32(n)})
		b = append(b, make([]byte, n)...)
		// Size was computed just above: MarshalToSizedBuffer cannot fail.
		_, _ = md.MarshalToSizedBuffer(b[len(b)-n:])
	}
	raw.Msg = b
	return raw
}
