// Package prw is everything the gateway knows about remote-write bytes:
// the protocols' decoders and validation, labels, and the form of a request
// (see AppendSeries) that the receiver makes and the forwarders read. The
// model is the superset of 1.0 and 2.0, so a request re-encodes in either
// without loss. It imports no package of the gateway.
package prw

import (
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// Sample is a float sample. StartTimestamp (2.0) is 0 if unknown.
type Sample struct {
	Value          float64
	Timestamp      int64
	StartTimestamp int64
}

// Exemplar is one exemplar with resolved labels.
type Exemplar struct {
	Labels    labels.Labels
	Value     float64
	Timestamp int64
}

// Histogram is a native histogram sample: the 2.0 message, the 1.0 one
// plus StartTimestamp (see HistogramFromV1 and HistogramToV1).
type Histogram = writev2.Histogram

// HistogramFromV1 converts a 1.0 histogram to the model's.
func HistogramFromV1(h prompb.Histogram) Histogram {
	var out Histogram
	convertHistogram(&h, &out)
	return out
}

// HistogramToV1 converts a histogram to 1.0, without its StartTimestamp.
func HistogramToV1(h Histogram) prompb.Histogram {
	h.StartTimestamp = 0
	var out prompb.Histogram
	convertHistogram(&h, &out)
	return out
}

// convertHistogram decodes the bytes of from into to: 2.0's Histogram is
// 1.0's plus field 17, and an in-memory round trip cannot fail.
func convertHistogram(from interface{ Marshal() ([]byte, error) }, to interface{ Unmarshal([]byte) error }) {
	b, _ := from.Marshal()
	_ = to.Unmarshal(b)
}

// MetricType is the 2.0 metric type, numbered as 1.0's.
type MetricType = writev2.Metadata_MetricType

// Metadata is a series' metric metadata; the zero value means none.
type Metadata struct {
	Type MetricType
	Help string
	Unit string
}

// Empty reports whether m carries nothing.
func (m Metadata) Empty() bool { return m == Metadata{} }

// Series is one time series with its data points.
type Series struct {
	Labels     labels.Labels
	Samples    []Sample
	Histograms []Histogram
	Exemplars  []Exemplar
	Metadata   Metadata
}

// FamilyMetadata is 1.0 metadata, sent per metric family.
type FamilyMetadata struct {
	MetricFamilyName string
	Metadata
}

// Request is one validated write request. It may be backed by buffers the
// receiver reuses: a consumer copies what it keeps past Enqueue.
type Request struct {
	// Proto is the protocol the client spoke.
	Proto Protocol
	// Series holds the accepted series, in the order they were sent.
	Series []Series
	// Metadata holds 1.0 family metadata (2.0 has it per series).
	Metadata []FamilyMetadata

	// Raw, if not nil, is the request in the form, as the decoders make
	// it; Series and Metadata are then empty until Materialize.
	Raw *RawV1
	// lazy is set until Series and Metadata are decoded from Raw.
	lazy bool
}

// SetRaw sets the request to raw, in the form, for Materialize to decode.
func (r *Request) SetRaw(raw *RawV1) {
	r.Raw, r.lazy = raw, raw != nil
	r.Series, r.Metadata = r.Series[:0], r.Metadata[:0]
}

// Materialize fills Series and Metadata from Raw once, to be called before
// using them (the gateway forwards the form). Not safe for concurrent use.
func (r *Request) Materialize() {
	if !r.lazy {
		return
	}
	r.lazy = false
	raw := r.Raw
	var sb labels.ScratchBuilder
	for _, rs := range raw.Series {
		s, err := readSeries(rs.Bytes(raw.Msg), &sb)
		if err == nil { // the form was validated: always
			r.Series = append(r.Series, s)
		}
	}
	for _, sp := range raw.Metadata {
		var md prompb.MetricMetadata
		if md.Unmarshal(sp.Bytes(raw.Msg)) == nil {
			r.Metadata = append(r.Metadata, FamilyMetadata{MetricFamilyName: md.MetricFamilyName,
				Metadata: Metadata{Type: MetricType(md.Type), Help: md.Help, Unit: md.Unit}})
		}
	}
}

// readSeries decodes a series in the form, extensions included.
func readSeries(ts []byte, sb *labels.ScratchBuilder) (s Series, err error) {
	if s.Labels, err = SeriesLabels(ts, sb); err != nil {
		return s, err
	}
	for f, err := range fields(ts) {
		if err != nil {
			return s, err
		}
		switch f.num {
		case fieldSamples:
			var x writev2.Sample
			err = x.Unmarshal(f.v)
			s.Samples = append(s.Samples, Sample{Value: x.Value, Timestamp: x.Timestamp, StartTimestamp: x.StartTimestamp})
		case fieldHistograms:
			var h Histogram
			err = h.Unmarshal(f.v)
			s.Histograms = append(s.Histograms, h)
		case fieldExemplars:
			var e prompb.Exemplar
			err = e.Unmarshal(f.v)
			s.Exemplars = append(s.Exemplars, Exemplar{Labels: e.ToExemplar(sb, nil).Labels, Value: e.Value, Timestamp: e.Timestamp})
		case fieldMetadata:
			if f.typ == protowire.BytesType {
				s.Metadata = ReadMetadata(f.v)
			}
		}
		if err != nil {
			return s, err
		}
	}
	return s, nil
}

// Lazy reports whether Series and Metadata await Materialize.
func (r *Request) Lazy() bool { return r.lazy }

// NumSeries returns the number of series, without materializing.
func (r *Request) NumSeries() int {
	if r.lazy {
		return len(r.Raw.Series)
	}
	return len(r.Series)
}

// Counts returns the numbers of samples, histograms and exemplars in r.
func (r *Request) Counts() (samples, histograms, exemplars int) {
	if r.lazy {
		return r.Raw.Samples, r.Raw.Histograms, r.Raw.Exemplars
	}
	for i := range r.Series {
		samples += len(r.Series[i].Samples)
		histograms += len(r.Series[i].Histograms)
		exemplars += len(r.Series[i].Exemplars)
	}
	return samples, histograms, exemplars
}

// EachLabel calls fn with each label of each series until fn returns false,
// without materializing; the bytes are fn's to read during the call only.
func (r *Request) EachLabel(fn func(series int, name, value []byte) bool) {
	for i := range r.NumSeries() {
		more := true
		each := func(name, value []byte) { more = more && fn(i, name, value) }
		if r.lazy {
			_ = RangeRawLabels(r.Raw.Series[i].Bytes(r.Raw.Msg), each)
		} else {
			r.Series[i].Labels.Range(func(l labels.Label) { each(stringBytes(l.Name), stringBytes(l.Value)) })
		}
		if !more {
			return
		}
	}
}

// SeriesLabels returns the labels of series i, from Raw while r is lazy.
func (r *Request) SeriesLabels(i int) labels.Labels {
	if r.lazy {
		var sb labels.ScratchBuilder
		ls, _ := SeriesLabels(r.Raw.Series[i].Bytes(r.Raw.Msg), &sb)
		return ls
	}
	return r.Series[i].Labels
}

// stringBytes returns s's bytes without copying; they must not be changed.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
