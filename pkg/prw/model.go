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
// plus StartTimestamp (see HistogramFromV1).
type Histogram = writev2.Histogram

// HistogramFromV1 converts a 1.0 histogram to the model's: 2.0's Histogram
// is 1.0's plus field 17, and an in-memory round trip cannot fail.
func HistogramFromV1(h prompb.Histogram) Histogram {
	var out Histogram
	b, _ := h.Marshal()
	_ = out.Unmarshal(b)
	return out
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

// Request is one validated write request, in the form. It may be backed by
// buffers the receiver reuses: a consumer copies what it keeps past Enqueue.
type Request struct {
	// Proto is the protocol the client spoke.
	Proto Protocol
	// Raw is the request in the form, as the decoders make it.
	Raw *RawV1
}

// NewRequest writes series, valid with sorted labels, and 1.0 family
// metadata in the form, as version 1 queue records hold them.
func NewRequest(p Protocol, series []Series, md []FamilyMetadata) *Request {
	raw := &RawV1{}
	var scratch []byte
	for i := range series {
		var rs RawSeries
		raw.Msg, rs, scratch = AppendSeries(raw.Msg, &series[i], scratch)
		raw.Append(rs)
	}
	for _, fm := range md {
		AppendFamily(raw, fm.MetricFamilyName, int64(fm.Type), fm.Help, fm.Unit)
	}
	return &Request{Proto: p, Raw: raw}
}

// stringBytes returns s's bytes without copying; they must not be changed.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
