package forward

import (
	"slices"
	"sync"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// synthesizer writes a request of decoded series (as tests and version 1
// queue records make them) in the form (see prw.AppendSeries), and strips
// the form's extensions for 1.0 upstreams. The RawV1 it returns is valid
// until it is put back in the pool; what outlives Enqueue is copied.
type synthesizer struct {
	raw      prw.RawV1
	scratch  []byte
	families map[string]struct{}
	pending  []pendingFamily
}

// pendingFamily is a series' metadata, whose family strip has yet to see.
type pendingFamily struct{ series, md []byte }

var synthesizers = sync.Pool{New: func() any { return &synthesizer{families: map[string]struct{}{}} }}

// synthesize returns req, a request of decoded series, in the form: its
// series, and its 1.0 family metadata as MetricMetadata fields.
func (sy *synthesizer) synthesize(req *prw.Request) *prw.RawV1 {
	raw := &sy.raw
	*raw = prw.RawV1{Msg: raw.Msg[:0], Series: raw.Series[:0], Metadata: raw.Metadata[:0]}
	for i := range req.Series {
		var rs prw.RawSeries
		raw.Msg, rs, sy.scratch = prw.AppendSeries(raw.Msg, &req.Series[i], sy.scratch)
		raw.Append(rs)
	}
	for _, fm := range req.Metadata {
		appendMetadata(raw, fm.MetricFamilyName, fm.Metadata)
	}
	return raw
}

// strip returns raw, in the form, as 1.0 upstreams take it: without the
// extensions, series metadata as 1.0 family metadata after the request's.
func (sy *synthesizer) strip(raw *prw.RawV1) *prw.RawV1 {
	out := &sy.raw
	*out = prw.RawV1{Msg: out.Msg[:0], Series: out.Series[:0], Metadata: out.Metadata[:0]}
	clear(sy.families)
	sy.pending = sy.pending[:0]
	for _, rs := range raw.Series {
		ts := rs.Bytes(raw.Msg)
		start := len(out.Msg)
		var md []byte
		var err error
		if out.Msg, md, sy.scratch, err = prw.AppendV1(out.Msg, ts, sy.scratch); err != nil {
			out.Msg = out.Msg[:start] // the form was validated: not reached
			continue
		}
		if rs.Points() > 0 {
			rs.Span, rs.Ext = fieldSpan(out.Msg, start), false
			out.Append(rs)
		} else {
			out.Msg = out.Msg[:start] // metadata only: a family metadata entry in 1.0
		}
		if md != nil {
			sy.pending = append(sy.pending, pendingFamily{series: ts, md: md})
		}
	}
	copyMetadata(out, raw)
	rangeFamilies(raw, func(fm *prw.FamilyMetadata) { sy.families[fm.MetricFamilyName] = struct{}{} })
	for _, p := range sy.pending {
		name := prw.SeriesFamily(p.series, p.md)
		if _, ok := sy.families[string(name)]; !ok {
			sy.families[string(name)] = struct{}{}
			appendMetadata(out, string(name), prw.ReadMetadata(p.md))
		}
	}
	return out
}

// appendMetadata appends 1.0 family metadata to raw as a MetricMetadata
// field of its WriteRequest.
func appendMetadata(raw *prw.RawV1, name string, m prw.Metadata) {
	md := prompb.MetricMetadata{Type: prompb.MetricMetadata_MetricType(m.Type), MetricFamilyName: name, Help: m.Help, Unit: m.Unit}
	n := md.Size()
	b := protowire.AppendVarint(protowire.AppendTag(raw.Msg, 3, protowire.BytesType), uint64(n))
	raw.Metadata = append(raw.Metadata, prw.Span{Off: uint32(len(b)), Len: uint32(n)})
	raw.Msg = slices.Grow(b, n)[:len(b)+n]
	// Size was computed just above: MarshalToSizedBuffer cannot fail.
	_, _ = md.MarshalToSizedBuffer(raw.Msg[len(b):])
}

// copyMetadata appends the MetricMetadata fields of src to dst.
func copyMetadata(dst, src *prw.RawV1) {
	for _, sp := range src.Metadata {
		var md prw.Span
		dst.Msg, md = appendSpan(dst.Msg, 3, sp.Bytes(src.Msg))
		dst.Metadata = append(dst.Metadata, md)
	}
}

// fieldSpan returns the span of the message of the field b[start:].
func fieldSpan(b []byte, start int) prw.Span {
	_, _, k := protowire.ConsumeTag(b[start:])
	_, m := protowire.ConsumeVarint(b[start+k:])
	return prw.Span{Off: uint32(start + k + m), Len: uint32(len(b) - start - k - m)}
}
