package prw

import (
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodeV1 reads a prometheus.WriteRequest into d. The form is msg as
// sent up to the first field the scan refuses, then the series it accepts
// as they are and the others repaired.
func decodeV1(d *Decoded, msg []byte) error {
	raw := &d.raw
	var b []byte // the form, once it is not msg
	asSent, off := true, 0
	for f, err := range fields(msg) {
		if err != nil {
			return err
		}
		if (f.num == 1 || f.num == 3) && f.typ != protowire.BytesType {
			return fmt.Errorf("wrong wire type %d for field %d", f.typ, f.num)
		}
		var rs RawSeries
		ok := false // whether f is in the form as it is
		switch f.num {
		case 1: // timeseries
			rs, ok = scanV1Series(d, f.v)
		case 3: // metadata
			if _, _, ok = metadataSchema.check(f.v); !ok {
				var md prompb.MetricMetadata
				if err := md.Unmarshal(f.v); err != nil {
					return fmt.Errorf("metadata %d: %w", len(raw.Metadata), err)
				}
			}
		}
		if asSent && !ok {
			// What precedes f is in the form as it is, spans included.
			asSent, b = false, append(d.form[:0], msg[:off]...)
		}
		sp := Span{Off: uint32(off + len(f.whole) - len(f.v)), Len: uint32(len(f.v))}
		off += len(f.whole)
		if !asSent && (ok || f.num == 3) {
			b, sp = appendField(b, f.num, f.v)
		}
		switch {
		case f.num == 3:
			raw.Metadata = append(raw.Metadata, sp)
		case f.num == 1 && ok:
			rs.Span = sp
			raw.Append(rs)
		case f.num == 1:
			idx := len(raw.Series) + d.Invalid.Count // the series before f
			if b, err = d.repairV1(b, idx, f.v); err != nil {
				return fmt.Errorf("timeseries %d: %w", idx, err)
			}
		}
	}
	if asSent {
		raw.Msg, raw.AsSent = msg, true
	} else {
		raw.Msg, d.form = b, b
	}
	return nil
}

// repairV1 decodes the TimeSeries ts, series number idx, with the
// generated code and appends it to b in the form or counts it refused.
func (d *Decoded) repairV1(b []byte, idx int, ts []byte) ([]byte, error) {
	m := &d.ts
	m.Reset()
	if err := m.Unmarshal(ts); err != nil {
		return b, err
	}
	var sb labels.ScratchBuilder
	s := Series{Labels: m.ToLabels(&sb, nil)}
	refuse := func(reason InvalidReason, detail string) ([]byte, error) {
		d.Invalid.add(reason, idx, len(ts), s.Labels, detail)
		return b, nil
	}
	if reason, detail, ok := ValidateLabels(s.Labels, true); !ok {
		return refuse(reason, detail)
	}
	// Prometheus 1.0 senders put exemplars in series of their own, with
	// no samples: those are valid.
	if len(m.Samples) == 0 && len(m.Histograms) == 0 && len(m.Exemplars) == 0 {
		return refuse(invalidNoSamples, "no samples, histograms or exemplars")
	}
	for _, h := range m.Histograms {
		s.Histograms = append(s.Histograms, HistogramFromV1(h))
		if msg := ValidateHistogram(&s.Histograms[len(s.Histograms)-1]); msg != "" {
			return refuse(invalidHistogram, fmt.Sprintf("histogram at %d: %s", h.Timestamp, msg))
		}
	}
	for _, x := range m.Samples {
		s.Samples = append(s.Samples, Sample{Value: x.Value, Timestamp: x.Timestamp})
	}
	for _, e := range m.Exemplars {
		s.Exemplars = append(s.Exemplars, Exemplar{Labels: e.ToExemplar(&sb, nil).Labels, Value: e.Value, Timestamp: e.Timestamp})
	}
	var rs RawSeries
	b, rs, d.scratch = AppendSeries(b, &s, d.scratch)
	d.raw.Append(rs)
	return b, nil
}
