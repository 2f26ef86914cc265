package forward

import (
	"bytes"
	"sync"

	"github.com/rwgateway/gateway/pkg/prw"
)

// stripper strips the form's extensions for 1.0 upstreams. The RawV1 it
// returns is valid until it is put back in the pool; what outlives Enqueue
// is copied.
type stripper struct {
	raw      prw.RawV1
	families map[string]struct{}
	pending  []pendingFamily
	// compressed holds the stripped request compressed (see
	// request.wholeFor), which whole items and records copy.
	compressed []byte
}

// pendingFamily is a series' metadata, whose family strip has yet to see.
type pendingFamily struct{ series, md []byte }

// familyRun tells the series whose family is worth looking up: series of
// one family mostly come together, so a series of the same name and
// metadata as the last one told is not.
type familyRun struct{ md, name []byte }

// next reports whether the series ts, of metadata md, starts a new run.
func (r *familyRun) next(ts, md []byte) bool {
	name := prw.MetricNameBytes(ts)
	if bytes.Equal(md, r.md) && bytes.Equal(name, r.name) {
		return false
	}
	r.md, r.name = md, name
	return true
}

var strippers = sync.Pool{New: func() any { return &stripper{families: map[string]struct{}{}} }}

// strip returns raw, in the form, as 1.0 upstreams take it: without the
// extensions, series metadata as 1.0 family metadata after the request's.
func (sy *stripper) strip(raw *prw.RawV1) *prw.RawV1 {
	out := &sy.raw
	*out = prw.RawV1{Msg: out.Msg[:0], Series: out.Series[:0], Metadata: out.Metadata[:0]}
	clear(sy.families)
	sy.pending = sy.pending[:0]
	var run familyRun
	for _, rs := range raw.Series {
		ts := rs.Bytes(raw.Msg)
		start := len(out.Msg)
		var (
			sp  prw.Span
			md  []byte
			err error
		)
		if out.Msg, sp, md, err = prw.AppendV1(out.Msg, ts); err != nil {
			continue // the form was validated: not reached
		}
		if rs.Points() > 0 {
			rs.Span, rs.Ext = sp, false
			out.Append(rs)
		} else {
			out.Msg = out.Msg[:start] // metadata only: a family metadata entry in 1.0
		}
		if md != nil && run.next(ts, md) {
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
