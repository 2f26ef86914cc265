package forward

import (
	"sync"

	"github.com/rwgateway/gateway/pkg/prw"
)

// stripper strips the form's extensions for 1.0 upstreams. The RawV1 it
// returns is valid until it is put back in the pool; what outlives Enqueue
// is copied.
type stripper struct {
	raw      prw.RawV1
	scratch  []byte
	families map[string]struct{}
	pending  []pendingFamily
}

// pendingFamily is a series' metadata, whose family strip has yet to see.
type pendingFamily struct{ series, md []byte }

var strippers = sync.Pool{New: func() any { return &stripper{families: map[string]struct{}{}} }}

// strip returns raw, in the form, as 1.0 upstreams take it: without the
// extensions, series metadata as 1.0 family metadata after the request's.
func (sy *stripper) strip(raw *prw.RawV1) *prw.RawV1 {
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
			n := len(sy.scratch) // the message, at the end of out.Msg
			rs.Span, rs.Ext = prw.Span{Off: uint32(len(out.Msg) - n), Len: uint32(n)}, false
			out.Append(rs)
		} else {
			out.Msg = out.Msg[:start] // metadata only: a family metadata entry in 1.0
		}
		if md != nil {
			sy.pending = append(sy.pending, pendingFamily{series: ts, md: md})
		}
	}
	out.CopyMetadata(raw)
	rangeFamilies(raw, func(fm *prw.FamilyMetadata) { sy.families[fm.MetricFamilyName] = struct{}{} })
	for _, p := range sy.pending {
		name := prw.SeriesFamily(p.series, p.md)
		if _, ok := sy.families[string(name)]; !ok {
			sy.families[string(name)] = struct{}{}
			out.AppendFamily(string(name), prw.ReadMetadata(p.md))
		}
	}
	return out
}
