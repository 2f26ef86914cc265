package prw

import (
	"github.com/prometheus/prometheus/model/labels"
)

// Append adds the series rs, whose message is in r.Msg, to r's series and
// totals.
func (r *RawV1) Append(rs RawSeries) {
	r.Series = append(r.Series, rs)
	r.Samples += int(rs.Samples)
	r.Histograms += int(rs.Histograms)
	r.Exemplars += int(rs.Exemplars)
	r.Ext = r.Ext || rs.Ext
}

// Relabel returns raw with the labels of each series passed through fn:
// fn gets a builder holding them and reports whether to keep the series.
// The series it drops, or leaves without labels, are left out and their
// points returned as dropped. When no series changes, raw itself is
// returned; otherwise a request of its own, holding raw's metadata too,
// without a compressed body. This is the one relabeling of series in the
// form: external labels, write relabeling and tenant labels use it.
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
