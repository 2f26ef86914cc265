package prw

import (
	"github.com/prometheus/prometheus/model/labels"
)

// Append adds rs, whose message is in r.Msg, to r's series and totals.
func (r *RawV1) Append(rs RawSeries) {
	r.Series = append(r.Series, rs)
	r.Samples += int(rs.Samples)
	r.Histograms += int(rs.Histograms)
	r.Exemplars += int(rs.Exemplars)
	r.Ext = r.Ext || rs.Ext
}

// Relabel passes each series' labels of raw through fn, which gets them in
// a builder and reports whether to keep the series. A series dropped or
// left without labels is left out, its points counted as dropped. If no
// series changes it returns raw, else a new request with raw's metadata
// and no compressed body. External labels, write relabeling and tenant
// labels all relabel series in the form with it.
func Relabel(raw *RawV1, lb *labels.Builder, fn func(*labels.Builder) bool) (out *RawV1, dropped int, err error) {
	out = &RawV1{}
	var (
		b, scratch []byte
		sb         labels.ScratchBuilder
		changed    bool
	)
	for _, rs := range raw.Series {
		ts := rs.Bytes(raw.Msg)
		ls, err := SeriesLabels(ts, &sb)
		if err != nil {
			return raw, 0, err
		}
		lb.Reset(ls)
		var next labels.Labels
		if fn(lb) {
			next = lb.Labels()
		}
		if next.IsEmpty() {
			dropped += rs.Points()
			changed = true
			continue
		}
		cur := rs
		if labels.Equal(ls, next) {
			b, cur.Span = appendField(b, fieldLabels, ts)
		} else {
			if b, cur, scratch, err = ReplaceLabels(b, ts, rs, next, scratch); err != nil {
				return raw, 0, err
			}
			changed = true
		}
		out.Append(cur)
	}
	if !changed {
		return raw, 0, nil
	}
	for _, sp := range raw.Metadata {
		var md Span
		b, md = appendField(b, 3, sp.Bytes(raw.Msg))
		out.Metadata = append(out.Metadata, md)
	}
	out.Msg = b
	return out, dropped, nil
}
