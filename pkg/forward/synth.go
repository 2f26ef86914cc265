package forward

import (
	"sync"

	"github.com/prometheus/prometheus/model/labels"
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
	raw      prw.RawV1
	scratch  []byte
	families map[string]struct{}
	pending  []prw.FamilyMetadata
}

var synthesizers = sync.Pool{New: func() any { return &synthesizer{families: map[string]struct{}{}} }}

// synthesize returns req, a decoded request, in the form: its series, and
// its 1.0 family metadata as MetricMetadata fields. With v1 set the series
// are written without the form's extensions, as 1.0 upstreams are sent
// them, and the metadata of 2.0 series becomes 1.0 family metadata, one
// entry per family.
func (sy *synthesizer) synthesize(req *prw.Request, v1 bool) *prw.RawV1 {
	raw := &sy.raw
	*raw = prw.RawV1{Msg: raw.Msg[:0], Series: raw.Series[:0], Metadata: raw.Metadata[:0]}
	b := raw.Msg
	appendSeries := prw.AppendSeries
	if v1 {
		appendSeries = prw.AppendSeriesV1
	}
	for i := range req.Series {
		var rs prw.RawSeries
		b, rs, sy.scratch = appendSeries(b, &req.Series[i], sy.scratch)
		raw.Append(rs)
	}
	for _, fm := range req.Metadata {
		b = sy.appendFamily(b, raw, fm.MetricFamilyName, fm.Metadata)
	}
	if v1 {
		clear(sy.families)
		for _, fm := range req.Metadata {
			sy.families[fm.MetricFamilyName] = struct{}{}
		}
		for i := range req.Series {
			s := &req.Series[i]
			if s.Metadata.Empty() {
				continue
			}
			name := prw.FamilyName(s.Labels.Get(labels.MetricName), s.Metadata.Type)
			if _, ok := sy.families[name]; !ok {
				sy.families[name] = struct{}{}
				b = sy.appendFamily(b, raw, name, s.Metadata)
			}
		}
	}
	raw.Msg = b
	return raw
}

// strip returns raw, a request in the form, as 1.0 upstreams are sent it:
// without the form's extensions, its series' metadata as 1.0 family
// metadata, one entry per family, after the request's own.
func (sy *synthesizer) strip(raw *prw.RawV1) *prw.RawV1 {
	out := &sy.raw
	*out = prw.RawV1{Msg: out.Msg[:0], Series: out.Series[:0], Metadata: out.Metadata[:0]}
	b := out.Msg
	clear(sy.families)
	sy.pending = sy.pending[:0]
	for _, rs := range raw.Series {
		ts := rs.Bytes(raw.Msg)
		start := len(b)
		var (
			md  prw.Metadata
			ok  bool
			err error
		)
		if b, md, ok, sy.scratch, err = prw.AppendV1(b, ts, sy.scratch); err != nil {
			b = b[:start] // the form was validated: not reached
			continue
		}
		cur := rs
		cur.Span, cur.Ext = fieldSpan(b, start), false
		out.Append(cur)
		if ok {
			sy.pending = append(sy.pending, prw.FamilyMetadata{MetricFamilyName: prw.FamilyName(prw.MetricName(ts), md.Type), Metadata: md})
		}
	}
	for _, sp := range raw.Metadata {
		start := len(b)
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, sp.Bytes(raw.Msg))
		out.Metadata = append(out.Metadata, fieldSpan(b, start))
		var md prompb.MetricMetadata
		if md.Unmarshal(sp.Bytes(raw.Msg)) == nil {
			sy.families[md.MetricFamilyName] = struct{}{}
		}
	}
	for _, fm := range sy.pending {
		if _, ok := sy.families[fm.MetricFamilyName]; !ok {
			sy.families[fm.MetricFamilyName] = struct{}{}
			b = sy.appendFamily(b, out, fm.MetricFamilyName, fm.Metadata)
		}
	}
	out.Msg = b
	return out
}

// appendFamily appends 1.0 family metadata to b as a MetricMetadata field
// of raw.
func (sy *synthesizer) appendFamily(b []byte, raw *prw.RawV1, name string, m prw.Metadata) []byte {
	md := prompb.MetricMetadata{Type: prw.MetricTypeToV1(m.Type), MetricFamilyName: name, Help: m.Help, Unit: m.Unit}
	n := md.Size()
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	raw.Metadata = append(raw.Metadata, prw.Span{Off: uint32(len(b)), Len: uint32(n)})
	b = append(b, make([]byte, n)...)
	// Size was computed just above: MarshalToSizedBuffer cannot fail.
	_, _ = md.MarshalToSizedBuffer(b[len(b)-n:])
	return b
}

// fieldSpan returns the span of the message of the length-delimited field
// that starts at b[start:] and ends b.
func fieldSpan(b []byte, start int) prw.Span {
	_, _, k := protowire.ConsumeTag(b[start:])
	_, m := protowire.ConsumeVarint(b[start+k:])
	return prw.Span{Off: uint32(start + k + m), Len: uint32(len(b) - start - k - m)}
}
