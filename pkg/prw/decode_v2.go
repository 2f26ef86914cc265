package prw

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// v2Decoder decodes remote write 2.0, io.prometheus.write.v2.Request.
type v2Decoder struct {
	states *statePool
}

// v2Wire is the v2 decoder's reused wire state.
type v2Wire struct {
	req writev2.Request
	// symbolOK[i] reports whether req.Symbols[i] is valid UTF-8: symbols
	// are shared between series, so each is checked once per request.
	symbolOK []bool
}

func NewV2Decoder() *v2Decoder {
	return &v2Decoder{states: newStatePool(func() any { return new(v2Wire) })}
}

func (dec *v2Decoder) Decode(msg []byte) (*Decoded, error) {
	d := dec.states.get(len(msg))
	w := d.wire.(*v2Wire)
	if err := unmarshalV2(&w.req, msg, &d.sizes); err != nil {
		dec.Release(d)
		return nil, err
	}
	w.symbolOK = w.symbolOK[:0]
	for _, s := range w.req.Symbols {
		w.symbolOK = append(w.symbolOK, utf8.ValidString(s))
	}
	d.Req.Proto = ProtoV2
	convertV2(d, &w.req, w.symbolOK)
	return d, nil
}

func (dec *v2Decoder) Release(d *Decoded) {
	dec.states.put(d)
}

// unmarshalV2 decodes msg into m, reusing m's memory; see unmarshalV1 for
// why the top level is walked here. TimeSeries is walked here too: the
// generated TimeSeries.Unmarshal allocates a new packed labels_refs array
// whenever the slice it appends to is empty, which a reused one always is.
// Symbols are copied into new strings (they end up in labels and metadata,
// which consumers may retain).
func unmarshalV2(m *writev2.Request, msg []byte, sizes *[]int) error {
	clear(m.Symbols)
	m.Symbols = m.Symbols[:0]
	m.Timeseries = m.Timeseries[:0]
	m.XXX_unrecognized = nil
	*sizes = (*sizes)[:0]
	r := wireReader{b: msg}
	for {
		num, typ, ok, err := r.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		switch num {
		case 4: // symbols
			v, err := r.bytes(num, typ)
			if err != nil {
				return err
			}
			m.Symbols = append(m.Symbols, string(v))
		case 5: // timeseries
			v, err := r.bytes(num, typ)
			if err != nil {
				return err
			}
			*sizes = append(*sizes, len(v))
			m.Timeseries = extend(m.Timeseries)
			ts := &m.Timeseries[len(m.Timeseries)-1]
			// Metadata is reset with the rest: its generated Unmarshal only
			// sets the fields present on the wire.
			*ts = writev2.TimeSeries{
				LabelsRefs: ts.LabelsRefs[:0],
				Samples:    ts.Samples[:0],
				Histograms: clearTruncate(ts.Histograms),
				Exemplars:  clearTruncate(ts.Exemplars),
			}
			if err := unmarshalV2Series(ts, v); err != nil {
				return fmt.Errorf("timeseries %d: %w", len(m.Timeseries)-1, err)
			}
		default:
			if err := r.skip(num, typ); err != nil {
				return err
			}
		}
	}
}

// unmarshalV2Series decodes one TimeSeries into the reset m, appending to its
// slices.
func unmarshalV2Series(m *writev2.TimeSeries, msg []byte) error {
	r := wireReader{b: msg}
	for {
		num, typ, ok, err := r.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		switch num {
		case 1: // labels_refs, packed or not
			switch typ {
			case protowire.VarintType:
				v, n := protowire.ConsumeVarint(r.b)
				if n < 0 {
					return fmt.Errorf("labels_refs: %w", protowire.ParseError(n))
				}
				r.b = r.b[n:]
				m.LabelsRefs = append(m.LabelsRefs, uint32(v))
			case protowire.BytesType:
				packed, err := r.bytes(num, typ)
				if err != nil {
					return err
				}
				for len(packed) > 0 {
					v, n := protowire.ConsumeVarint(packed)
					if n < 0 {
						return fmt.Errorf("labels_refs: %w", protowire.ParseError(n))
					}
					packed = packed[n:]
					m.LabelsRefs = append(m.LabelsRefs, uint32(v))
				}
			default:
				return fmt.Errorf("wrong wire type %d for field %d", typ, num)
			}
		case 2: // samples
			if err := appendMessage(&r, num, typ, &m.Samples, "sample"); err != nil {
				return err
			}
		case 3: // histograms
			if err := appendMessage(&r, num, typ, &m.Histograms, "histogram"); err != nil {
				return err
			}
		case 4: // exemplars
			if err := appendMessage(&r, num, typ, &m.Exemplars, "exemplar"); err != nil {
				return err
			}
		case 5: // metadata; repeated occurrences merge, as protobuf has it
			v, err := r.bytes(num, typ)
			if err != nil {
				return err
			}
			if err := m.Metadata.Unmarshal(v); err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
		default:
			if err := r.skip(num, typ); err != nil {
				return err
			}
		}
	}
}

// convertV2 resolves and validates wr's series into d.Req and d.Invalid.
// symbolOK tells which symbols are valid UTF-8.
func convertV2(d *Decoded, wr *writev2.Request, symbolOK []bool) {
	d.Invalid.sizes = d.sizes
	syms := wr.Symbols
	for i := range wr.Timeseries {
		ts := &wr.Timeseries[i]
		if !refsValid(ts.LabelsRefs, len(syms)) {
			d.Invalid.add(invalidLabelRefs, i, labels.EmptyLabels(),
				fmt.Sprintf("%d label refs, odd or outside the %d symbols", len(ts.LabelsRefs), len(syms)))
			continue
		}
		ls := v2Labels(&d.sb, ts.LabelsRefs, syms)
		if j := invalidUTF8Ref(ts.LabelsRefs, symbolOK); j >= 0 {
			what := "label name "
			if j%2 == 1 {
				what = "label value "
			}
			d.Invalid.add(invalidUTF8, i, ls, what+strconv.Quote(syms[ts.LabelsRefs[j]])+" is not valid UTF-8")
			continue
		}
		if reason, detail, ok := ValidateLabels(ls, false); !ok {
			d.Invalid.add(reason, i, ls, detail)
			continue
		}
		md := ts.Metadata
		if uint64(md.HelpRef) >= uint64(len(syms)) || uint64(md.UnitRef) >= uint64(len(syms)) {
			d.Invalid.add(invalidMetadataRefs, i, ls,
				fmt.Sprintf("metadata help ref %d or unit ref %d outside the %d symbols", md.HelpRef, md.UnitRef, len(syms)))
			continue
		}
		if j := invalidExemplarRefs(ts.Exemplars, len(syms)); j >= 0 {
			d.Invalid.add(invalidExemplarLabelRefs, i, ls,
				fmt.Sprintf("exemplar %d: %d label refs, odd or outside the %d symbols", j, len(ts.Exemplars[j].LabelsRefs), len(syms)))
			continue
		}
		// The 2.0 specification: "At least one element in samples or in
		// histograms MUST be provided." Prometheus's own 2.0 sender breaks
		// this with exemplar-only series, and its receiver refuses them
		// too; see https://github.com/prometheus/prometheus/issues/17857.
		if len(ts.Samples) == 0 && len(ts.Histograms) == 0 {
			d.Invalid.add(invalidNoSamples, i, ls, "no samples or histograms")
			continue
		}
		if detail := invalidHistogramDetail(ts.Histograms); detail != "" {
			d.Invalid.add(invalidHistogram, i, ls, detail)
			continue
		}

		s := nextSeries(&d.Req)
		s.Labels = ls
		s.Metadata = Metadata{Type: md.Type, Help: syms[md.HelpRef], Unit: syms[md.UnitRef]}
		for _, smp := range ts.Samples {
			s.Samples = append(s.Samples, Sample{Value: smp.Value, Timestamp: smp.Timestamp, StartTimestamp: smp.StartTimestamp})
		}
		s.Histograms = append(s.Histograms, ts.Histograms...)
		for _, ex := range ts.Exemplars {
			s.Exemplars = append(s.Exemplars, Exemplar{
				Labels:    v2Labels(&d.sb, ex.LabelsRefs, syms),
				Value:     ex.Value,
				Timestamp: ex.Timestamp,
			})
		}
	}
}

// v2Labels returns the sorted label set that refs, already checked with
// refsValid, point to.
func v2Labels(sb *labels.ScratchBuilder, refs []uint32, syms []string) labels.Labels {
	sb.Reset()
	for j := 0; j < len(refs); j += 2 {
		sb.Add(syms[refs[j]], syms[refs[j+1]])
	}
	sb.Sort()
	return sb.Labels()
}

// invalidUTF8Ref returns the index of the first of refs that points to a
// symbol that is not valid UTF-8, or -1.
func invalidUTF8Ref(refs []uint32, symbolOK []bool) int {
	for j, r := range refs {
		if !symbolOK[r] {
			return j
		}
	}
	return -1
}

// invalidExemplarRefs returns the index of the first exemplar whose label
// refs are invalid, or -1.
func invalidExemplarRefs(exs []writev2.Exemplar, nsyms int) int {
	for j := range exs {
		if !refsValid(exs[j].LabelsRefs, nsyms) {
			return j
		}
	}
	return -1
}

// invalidHistogramDetail returns what is wrong with the first invalid
// histogram of hs, or "".
func invalidHistogramDetail(hs []writev2.Histogram) string {
	for j := range hs {
		if msg := ValidateHistogram(&hs[j]); msg != "" {
			return fmt.Sprintf("histogram at %d: %s", hs[j].Timestamp, msg)
		}
	}
	return ""
}
