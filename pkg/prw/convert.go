package prw

import (
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// HistogramFromV1 converts a 1.0 histogram to the model's form. Every field
// is carried over; StartTimestamp is 0 since 1.0 has none.
func HistogramFromV1(h prompb.Histogram) Histogram {
	out := writev2.Histogram{
		Sum:            h.Sum,
		Schema:         h.Schema,
		ZeroThreshold:  h.ZeroThreshold,
		NegativeSpans:  spansFromV1(h.NegativeSpans),
		NegativeDeltas: h.NegativeDeltas,
		NegativeCounts: h.NegativeCounts,
		PositiveSpans:  spansFromV1(h.PositiveSpans),
		PositiveDeltas: h.PositiveDeltas,
		PositiveCounts: h.PositiveCounts,
		ResetHint:      writev2.Histogram_ResetHint(h.ResetHint),
		Timestamp:      h.Timestamp,
		CustomValues:   h.CustomValues,
	}
	switch c := h.Count.(type) {
	case *prompb.Histogram_CountInt:
		out.Count = &writev2.Histogram_CountInt{CountInt: c.CountInt}
	case *prompb.Histogram_CountFloat:
		out.Count = &writev2.Histogram_CountFloat{CountFloat: c.CountFloat}
	}
	switch z := h.ZeroCount.(type) {
	case *prompb.Histogram_ZeroCountInt:
		out.ZeroCount = &writev2.Histogram_ZeroCountInt{ZeroCountInt: z.ZeroCountInt}
	case *prompb.Histogram_ZeroCountFloat:
		out.ZeroCount = &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: z.ZeroCountFloat}
	}
	return out
}

// HistogramToV1 converts a model histogram to 1.0. The start timestamp has
// no place in 1.0 and is dropped; everything else is carried over.
func HistogramToV1(h Histogram) prompb.Histogram {
	out := prompb.Histogram{
		Sum:            h.Sum,
		Schema:         h.Schema,
		ZeroThreshold:  h.ZeroThreshold,
		NegativeSpans:  spansToV1(h.NegativeSpans),
		NegativeDeltas: h.NegativeDeltas,
		NegativeCounts: h.NegativeCounts,
		PositiveSpans:  spansToV1(h.PositiveSpans),
		PositiveDeltas: h.PositiveDeltas,
		PositiveCounts: h.PositiveCounts,
		ResetHint:      prompb.Histogram_ResetHint(h.ResetHint),
		Timestamp:      h.Timestamp,
		CustomValues:   h.CustomValues,
	}
	switch c := h.Count.(type) {
	case *writev2.Histogram_CountInt:
		out.Count = &prompb.Histogram_CountInt{CountInt: c.CountInt}
	case *writev2.Histogram_CountFloat:
		out.Count = &prompb.Histogram_CountFloat{CountFloat: c.CountFloat}
	}
	switch z := h.ZeroCount.(type) {
	case *writev2.Histogram_ZeroCountInt:
		out.ZeroCount = &prompb.Histogram_ZeroCountInt{ZeroCountInt: z.ZeroCountInt}
	case *writev2.Histogram_ZeroCountFloat:
		out.ZeroCount = &prompb.Histogram_ZeroCountFloat{ZeroCountFloat: z.ZeroCountFloat}
	}
	return out
}

func spansFromV1(in []prompb.BucketSpan) []writev2.BucketSpan {
	if in == nil {
		return nil
	}
	out := make([]writev2.BucketSpan, len(in))
	for i, s := range in {
		out[i] = writev2.BucketSpan{Offset: s.Offset, Length: s.Length}
	}
	return out
}

func spansToV1(in []writev2.BucketSpan) []prompb.BucketSpan {
	if in == nil {
		return nil
	}
	out := make([]prompb.BucketSpan, len(in))
	for i, s := range in {
		out[i] = prompb.BucketSpan{Offset: s.Offset, Length: s.Length}
	}
	return out
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
