package prw

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// InvalidReason is the reason label of gateway_receiver_invalid_series_total.
type InvalidReason int

const (
	invalidLabelRefs         InvalidReason = iota // 2.0: odd number of label refs, or a ref outside the symbols
	invalidMetadataRefs                           // 2.0: help or unit ref outside the symbols
	invalidExemplarLabelRefs                      // 2.0: an exemplar's label refs are odd or outside the symbols
	invalidEmptyLabels                            // no labels at all
	invalidEmptyLabelName                         // a label with an empty name
	invalidUTF8                                   // a label name or value that is not valid UTF-8
	invalidDuplicateLabel                         // two labels with the same name
	invalidMetricName                             // no __name__ label, or an empty one
	invalidNoSamples                              // no samples, histograms or exemplars (2.0: nor metadata)
	invalidHistogram                              // a native histogram whose buckets do not add up
	NumInvalidReasons
)

var invalidReasonNames = [NumInvalidReasons]string{
	invalidLabelRefs:         "label_refs",
	invalidMetadataRefs:      "metadata_refs",
	invalidExemplarLabelRefs: "exemplar_label_refs",
	invalidEmptyLabels:       "empty_labels",
	invalidEmptyLabelName:    "empty_label_name",
	invalidUTF8:              "invalid_utf8",
	invalidDuplicateLabel:    "duplicate_label_name",
	invalidMetricName:        "missing_metric_name",
	invalidNoSamples:         "no_samples",
	invalidHistogram:         "invalid_histogram",
}

func (r InvalidReason) String() string { return invalidReasonNames[r] }

// InvalidSeries tallies the refused series of one request.
type InvalidSeries struct {
	Count    int
	ByReason [NumInvalidReasons]int
	// Bytes is the size of the refused series' messages on the wire.
	Bytes int
	// First describes the first refused series, for the response body.
	First string
}

// add records a refused series: number idx, size bytes, labels ls if known.
func (v *InvalidSeries) add(reason InvalidReason, idx, size int, ls labels.Labels, detail string) {
	if v.Count == 0 {
		if ls.IsEmpty() {
			v.First = fmt.Sprintf("series #%d: %s", idx, detail)
		} else {
			v.First = fmt.Sprintf("series #%d %s: %s", idx, Truncate(ls.String(), 512), detail)
		}
	}
	v.Count++
	v.ByReason[reason]++
	v.Bytes += size
}

// labelPair is one label as the decoders read it, in the message's bytes.
type labelPair struct{ name, value []byte }

// ValidateSeries says why the write handler refuses the series s, with
// sorted labels, if it does: its labels (see validatePairs), no points, or
// a native histogram (see ValidateHistogram).
func ValidateSeries(s *Series) (reason InvalidReason, detail string, ok bool) {
	var pairs []labelPair
	s.Labels.Range(func(l labels.Label) {
		pairs = append(pairs, labelPair{name: stringBytes(l.Name), value: stringBytes(l.Value)})
	})
	if reason, detail, ok := validatePairs(pairs, true); !ok {
		return reason, detail, false
	}
	// Prometheus 1.0 senders put exemplars in series of their own, with
	// no samples: those are valid.
	if len(s.Samples)+len(s.Histograms)+len(s.Exemplars) == 0 {
		return invalidNoSamples, "no samples, histograms or exemplars", false
	}
	for i := range s.Histograms {
		if msg := ValidateHistogram(&s.Histograms[i]); msg != "" {
			return invalidHistogram, fmt.Sprintf("histogram at %d: %s", s.Histograms[i].Timestamp, msg), false
		}
	}
	return 0, "", true
}

// validatePairs checks sorted labels: some, no empty or duplicate names,
// valid UTF-8 if checkUTF8 (2.0 checks symbols once), a non-empty __name__.
func validatePairs(pairs []labelPair, checkUTF8 bool) (reason InvalidReason, detail string, ok bool) {
	if len(pairs) == 0 {
		return invalidEmptyLabels, "no labels", false
	}
	hasName := false
	for i, l := range pairs {
		switch {
		case len(l.name) == 0:
			return invalidEmptyLabelName, "empty label name", false
		case checkUTF8 && !utf8.Valid(l.name):
			return invalidUTF8, "label name " + strconv.Quote(string(l.name)) + " is not valid UTF-8", false
		case checkUTF8 && !utf8.Valid(l.value):
			return invalidUTF8, "value of label " + strconv.Quote(string(l.name)) + " is not valid UTF-8", false
		case i > 0 && bytes.Equal(l.name, pairs[i-1].name):
			return invalidDuplicateLabel, "duplicate label name " + strconv.Quote(string(l.name)), false
		case string(l.name) == labels.MetricName && len(l.value) > 0:
			hasName = true
		}
	}
	if !hasName {
		return invalidMetricName, "missing or empty " + labels.MetricName, false
	}
	return 0, "", true
}

// refsValid reports whether refs are pairs of indexes into n symbols.
func refsValid(refs []uint32, n int) bool {
	if len(refs)%2 != 0 {
		return false
	}
	for _, r := range refs {
		if uint64(r) >= uint64(n) {
			return false
		}
	}
	return true
}

// floatCountTolerance is the relative difference allowed between a float
// histogram's count and its buckets' sum, which is not exact.
const floatCountTolerance = 1e-6

// ValidateHistogram says what is wrong with a native histogram, or "": its
// spans must cover its buckets, none negative, which hold the count with the
// zero bucket (none for custom buckets), or less if the sum is NaN.
func ValidateHistogram(h *Histogram) string {
	// A count or zero count left unset takes the kind of the other.
	_, countIsFloat := h.Count.(*writev2.Histogram_CountFloat)
	_, zeroIsFloat := h.ZeroCount.(*writev2.Histogram_ZeroCountFloat)
	if h.Count == nil {
		countIsFloat = zeroIsFloat
	}
	if h.ZeroCount == nil {
		zeroIsFloat = countIsFloat
	}
	if countIsFloat != zeroIsFloat {
		return "histogram mixes integer and float counts"
	}
	custom := h.Schema == histogram.CustomBucketsSchema

	if countIsFloat {
		if len(h.PositiveDeltas) > 0 || len(h.NegativeDeltas) > 0 {
			return "float histogram has integer bucket deltas"
		}
		pos, posErr := sumCounts("positive", h.PositiveSpans, h.PositiveCounts)
		neg, negErr := sumCounts("negative", h.NegativeSpans, h.NegativeCounts)
		if msg := cmp.Or(posErr, negErr); msg != "" {
			return msg
		}
		total, count := pos+neg, h.GetCountFloat()
		if !custom {
			z := h.GetZeroCountFloat()
			if z < 0 || math.IsNaN(z) {
				return "zero bucket count is negative or NaN"
			}
			total += z
		}
		tol := floatCountTolerance * max(1, math.Abs(count))
		return countMismatch(h, total, count, !(total <= count+tol), !(math.Abs(total-count) <= tol))
	}

	if len(h.PositiveCounts) > 0 || len(h.NegativeCounts) > 0 {
		return "integer histogram has float bucket counts"
	}
	pos, posErr := sumDeltas("positive", h.PositiveSpans, h.PositiveDeltas)
	neg, negErr := sumDeltas("negative", h.NegativeSpans, h.NegativeDeltas)
	if msg := cmp.Or(posErr, negErr); msg != "" {
		return msg
	}
	total, count := pos+neg, h.GetCountInt()
	if !custom {
		total += h.GetZeroCountInt()
	}
	return countMismatch(h, total, count, total > count, total != count)
}

// countMismatch says what is wrong if the buckets' total is more than the
// count, or, unless the sum is NaN, differs from it.
func countMismatch[T uint64 | float64](h *Histogram, total, count T, more, differs bool) string {
	switch {
	case math.IsNaN(h.Sum) && more:
		return fmt.Sprintf("buckets hold %v observations, more than the count %v", total, count)
	case !math.IsNaN(h.Sum) && differs:
		return fmt.Sprintf("buckets hold %v observations, count is %v", total, count)
	}
	return ""
}

func spanBuckets(spans []writev2.BucketSpan) uint64 {
	var n uint64
	for _, s := range spans {
		n += uint64(s.Length)
	}
	return n
}

// sumDeltas totals the bucket counts deltas encode, or says what is wrong.
func sumDeltas(side string, spans []writev2.BucketSpan, deltas []int64) (uint64, string) {
	if n := spanBuckets(spans); n != uint64(len(deltas)) {
		return 0, fmt.Sprintf("%s buckets: spans cover %d buckets, %d deltas sent", side, n, len(deltas))
	}
	var cur int64
	var total uint64
	for _, d := range deltas {
		cur += d
		if cur < 0 {
			return 0, side + " buckets: negative bucket count"
		}
		total += uint64(cur)
	}
	return total, ""
}

// sumCounts totals float bucket counts, or says what is wrong.
func sumCounts(side string, spans []writev2.BucketSpan, counts []float64) (float64, string) {
	if n := spanBuckets(spans); n != uint64(len(counts)) {
		return 0, fmt.Sprintf("%s buckets: spans cover %d buckets, %d counts sent", side, n, len(counts))
	}
	var total float64
	for _, c := range counts {
		if c < 0 || math.IsNaN(c) {
			return 0, side + " buckets: bucket count is negative or NaN"
		}
		total += c
	}
	return total, ""
}
