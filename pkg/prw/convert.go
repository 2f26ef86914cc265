package prw

import (
	"github.com/prometheus/prometheus/prompb"
)

// HistogramFromV1 converts a 1.0 histogram to the model's form. On the
// wire the 2.0 message is the 1.0 one with a start timestamp (field 17)
// added, so the conversion goes through the 1.0 message's bytes: every
// field is carried over, and StartTimestamp is 0 since 1.0 has none.
func HistogramFromV1(h prompb.Histogram) Histogram {
	var out Histogram
	convertHistogram(&h, &out)
	return out
}

// HistogramToV1 converts a model histogram to 1.0: everything but the
// start timestamp, which 1.0 has no place for.
func HistogramToV1(h Histogram) prompb.Histogram {
	h.StartTimestamp = 0
	var out prompb.Histogram
	convertHistogram(&h, &out)
	return out
}

// convertHistogram decodes the bytes of from into to. Marshalling a
// message in memory and decoding its bytes as a message with the same
// fields cannot fail.
func convertHistogram(from interface{ Marshal() ([]byte, error) }, to interface{ Unmarshal([]byte) error }) {
	b, _ := from.Marshal()
	_ = to.Unmarshal(b)
}

// MetricTypeFromV1 converts a 1.0 metadata type to the model's enumeration.
// The two enumerations share their numbering.
func MetricTypeFromV1(t prompb.MetricMetadata_MetricType) MetricType {
	return MetricType(t)
}

// MetricTypeToV1 converts a model metadata type to 1.0.
func MetricTypeToV1(t MetricType) prompb.MetricMetadata_MetricType {
	return prompb.MetricMetadata_MetricType(t)
}
