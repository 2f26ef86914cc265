package prw

import (
	"fmt"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// v1Decoder decodes remote write 1.0, prometheus.WriteRequest.
type v1Decoder struct {
	states *statePool
}

func NewV1Decoder() *v1Decoder {
	dec := &v1Decoder{states: newStatePool(func() any { return new(prompb.WriteRequest) })}
	return dec
}

// decode scans msg (see scanV1) and, if the request can be passed on raw,
// leaves its Series and Metadata to Materialize; otherwise, or when
// Materialize is called, it decodes and validates it in full.
func (dec *v1Decoder) Decode(msg []byte) (*Decoded, error) {
	d := dec.states.get(len(msg))
	if scanV1(d, msg) {
		d.Req.Proto = ProtoV1
		d.Req.Raw = &d.raw
		d.msg = msg
		if d.fill == nil {
			d.fill = func() { d.materializeV1() }
		}
		d.Req.SetLazy(d.fill)
		return d, nil
	}
	d.raw = RawV1{Series: d.raw.Series[:0], Metadata: d.raw.Metadata[:0]}
	wr := d.wire.(*prompb.WriteRequest)
	if err := unmarshalV1(wr, msg, &d.sizes); err != nil {
		dec.Release(d)
		return nil, err
	}
	d.Req.Proto = ProtoV1
	convertV1(d, wr)
	return d, nil
}

func (dec *v1Decoder) Release(d *Decoded) {
	dec.states.put(d)
}

// materializeV1 fills d.Req.Series and Metadata from d.Req.Raw: the
// message that scanV1 accepted, or one written in the form from it (see
// Relabel). The full decoder finds every series valid.
func (d *Decoded) materializeV1() {
	wr := d.wire.(*prompb.WriteRequest)
	if err := unmarshalV1(wr, d.Req.Raw.Msg, &d.sizes); err != nil {
		// scanV1 accepted only what unmarshalV1 reads.
		panic(fmt.Sprintf("materialize a scanned 1.0 request: %v", err))
	}
	convertV1(d, wr)
}

// unmarshalV1 decodes msg into m with the generated code and records each
// series' size in sizes. Only requests the scan does not accept get here
// (an invalid or unsorted series, an unknown field): the gateway's own
// senders and Prometheus's never do, so this path favours brevity over
// reusing memory.
func unmarshalV1(m *prompb.WriteRequest, msg []byte, sizes *[]int) error {
	m.Reset()
	if err := m.Unmarshal(msg); err != nil {
		return err
	}
	*sizes = (*sizes)[:0]
	for i := range m.Timeseries {
		*sizes = append(*sizes, m.Timeseries[i].Size())
	}
	return nil
}

// convertV1 validates wr's series into d.Req and d.Invalid.
func convertV1(d *Decoded, wr *prompb.WriteRequest) {
	d.Invalid.sizes = d.sizes
	for i := range wr.Timeseries {
		ts := &wr.Timeseries[i]
		ls := v1Labels(&d.sb, ts.Labels)
		if reason, detail, ok := ValidateLabels(ls, true); !ok {
			d.Invalid.add(reason, i, ls, detail)
			continue
		}
		// Prometheus 1.0 senders put exemplars in series of their own, with
		// no samples: those are valid.
		if len(ts.Samples) == 0 && len(ts.Histograms) == 0 && len(ts.Exemplars) == 0 {
			d.Invalid.add(invalidNoSamples, i, ls, "no samples, histograms or exemplars")
			continue
		}

		s := nextSeries(&d.Req)
		if detail := appendV1Histograms(s, ts.Histograms); detail != "" {
			d.Req.Series = d.Req.Series[:len(d.Req.Series)-1]
			d.Invalid.add(invalidHistogram, i, ls, detail)
			continue
		}
		s.Labels = ls
		for _, smp := range ts.Samples {
			s.Samples = append(s.Samples, Sample{Value: smp.Value, Timestamp: smp.Timestamp})
		}
		for _, ex := range ts.Exemplars {
			s.Exemplars = append(s.Exemplars, Exemplar{
				Labels:    v1Labels(&d.sb, ex.Labels),
				Value:     ex.Value,
				Timestamp: ex.Timestamp,
			})
		}
	}
	for _, md := range wr.Metadata {
		d.Req.Metadata = append(d.Req.Metadata, FamilyMetadata{
			MetricFamilyName: md.MetricFamilyName,
			Metadata: Metadata{
				Type: MetricTypeFromV1(md.Type),
				Help: md.Help,
				Unit: md.Unit,
			},
		})
	}
}

// appendV1Histograms converts and validates hs into s, and returns what is
// wrong with the first invalid histogram, or "".
func appendV1Histograms(s *Series, hs []prompb.Histogram) string {
	for _, h := range hs {
		s.Histograms = append(s.Histograms, HistogramFromV1(h))
		if msg := ValidateHistogram(&s.Histograms[len(s.Histograms)-1]); msg != "" {
			return fmt.Sprintf("histogram at %d: %s", h.Timestamp, msg)
		}
	}
	return ""
}

// v1Labels returns the sorted label set of pairs.
func v1Labels(sb *labels.ScratchBuilder, pairs []prompb.Label) labels.Labels {
	sb.Reset()
	for _, l := range pairs {
		sb.Add(l.Name, l.Value)
	}
	sb.Sort()
	return sb.Labels()
}
