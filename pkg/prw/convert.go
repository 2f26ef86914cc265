package prw

import (
	"github.com/prometheus/prometheus/prompb"
)

// HistogramFromV1 converts a 1.0 histogram to the model's form, whose
// StartTimestamp is then 0.
func HistogramFromV1(h prompb.Histogram) Histogram {
	var out Histogram
	convertHistogram(&h, &out)
	return out
}

// HistogramToV1 converts a model histogram to 1.0, dropping its
// StartTimestamp.
func HistogramToV1(h Histogram) prompb.Histogram {
	h.StartTimestamp = 0
	var out prompb.Histogram
	convertHistogram(&h, &out)
	return out
}

// convertHistogram decodes the bytes of from into to. The 2.0 message is
// the 1.0 one plus field 17, so every field carries over, and marshalling
// and unmarshalling in memory cannot fail.
func convertHistogram(from interface{ Marshal() ([]byte, error) }, to interface{ Unmarshal([]byte) error }) {
	b, _ := from.Marshal()
	_ = to.Unmarshal(b)
}
