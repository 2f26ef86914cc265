package prw

import (
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodeV1 reads a prometheus.WriteRequest into d. A request the scan
// accepts (scanV1) is in the form as it was sent and is passed on as it
// is. Any other is read again one message at a time: the series the scan
// accepts are kept as they are, the others are decoded by the generated
// code, validated, and written in the form (sorted labels, nothing
// unknown) or refused; the result is a request of its own.
func decodeV1(d *Decoded, msg []byte) error {
	if scanV1(d, msg) {
		d.raw.Msg, d.raw.AsSent = msg, true
		return nil
	}
	raw := &d.raw
	*raw = RawV1{Series: raw.Series[:0], Metadata: raw.Metadata[:0]}
	b := d.form[:0]
	idx := 0
	for f, err := range fields(msg) {
		if err != nil {
			return err
		}
		if (f.num == 1 || f.num == 3) && f.typ != protowire.BytesType {
			return fmt.Errorf("wrong wire type %d for field %d", f.typ, f.num)
		}
		switch f.num {
		case 1: // timeseries
			if rs, ok := scanV1Series(d, f.v); ok {
				b, rs.Span = appendField(b, fieldLabels, f.v)
				raw.Append(rs)
			} else if b, err = d.repairV1(b, idx, f.v); err != nil {
				return fmt.Errorf("timeseries %d: %w", idx, err)
			}
			idx++
		case 3: // metadata
			var md prompb.MetricMetadata
			if err := md.Unmarshal(f.v); err != nil {
				return fmt.Errorf("metadata %d: %w", len(raw.Metadata), err)
			}
			var sp Span
			b, sp = appendField(b, 3, f.v)
			raw.Metadata = append(raw.Metadata, sp)
		}
	}
	raw.Msg, d.form = b, b
	return nil
}

// repairV1 decodes the TimeSeries ts, series number idx, with the
// generated code and validates it: it appends it to b in the form, or
// counts it refused. An error means ts is not a TimeSeries message.
func (d *Decoded) repairV1(b []byte, idx int, ts []byte) ([]byte, error) {
	m := &d.ts
	m.Reset()
	if err := m.Unmarshal(ts); err != nil {
		return b, err
	}
	var sb labels.ScratchBuilder
	v1Labels := func(in []prompb.Label) labels.Labels {
		sb.Reset()
		for _, l := range in {
			sb.Add(l.Name, l.Value)
		}
		sb.Sort()
		return sb.Labels()
	}
	s := Series{Labels: v1Labels(m.Labels)}
	if reason, detail, ok := ValidateLabels(s.Labels, true); !ok {
		d.Invalid.add(reason, idx, len(ts), s.Labels, detail)
		return b, nil
	}
	// Prometheus 1.0 senders put exemplars in series of their own, with
	// no samples: those are valid.
	if len(m.Samples) == 0 && len(m.Histograms) == 0 && len(m.Exemplars) == 0 {
		d.Invalid.add(invalidNoSamples, idx, len(ts), s.Labels, "no samples, histograms or exemplars")
		return b, nil
	}
	for _, h := range m.Histograms {
		s.Histograms = append(s.Histograms, HistogramFromV1(h))
		if msg := ValidateHistogram(&s.Histograms[len(s.Histograms)-1]); msg != "" {
			d.Invalid.add(invalidHistogram, idx, len(ts), s.Labels, fmt.Sprintf("histogram at %d: %s", h.Timestamp, msg))
			return b, nil
		}
	}
	for _, x := range m.Samples {
		s.Samples = append(s.Samples, Sample{Value: x.Value, Timestamp: x.Timestamp})
	}
	for _, e := range m.Exemplars {
		s.Exemplars = append(s.Exemplars, Exemplar{Labels: v1Labels(e.Labels), Value: e.Value, Timestamp: e.Timestamp})
	}
	var rs RawSeries
	b, rs, d.scratch = AppendSeries(b, &s, d.scratch)
	d.raw.Append(rs)
	return b, nil
}
