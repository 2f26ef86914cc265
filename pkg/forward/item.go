package forward

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwgateway/gateway/pkg/prw"
)

// item is one queued entry: a series with its final labels and a run of its
// data points, or (when family is set) one 1.0 family metadata entry.
//
// An item and everything it points to is owned by the forwarder and never
// mutated once queued: the point slices may be shared between the items of
// several upstreams, and splitting an item takes sub-slices.
type item struct {
	labels     labels.Labels
	samples    []prw.Sample
	histograms []prw.Histogram
	exemplars  []prw.Exemplar
	metadata   prw.Metadata

	// family is set for a 1.0 family metadata entry, which has no labels
	// and no points.
	family *prw.FamilyMetadata

	// raw, when set, is the whole series as a 1.0 TimeSeries message with
	// its final labels, sent as it is (the fast path: see prepareRaw);
	// labels, samples, histograms, exemplars and metadata are empty then,
	// and hash and the raw counts describe it. It is read-only and may be
	// shared by the items of several upstreams.
	raw                                []byte
	hash                               uint64
	rawSamples, rawHists, rawExemplars uint32
	// chunk is set when raw is not one series but a run of them, as
	// TimeSeries fields of a 1.0 WriteRequest (see chunkRaw); hash is then
	// the chunk's shard.
	chunk bool

	// size is the estimated encoded size in bytes.
	size int

	// rec is the disk queue record the item was read from, nil in memory
	// mode.
	rec *pendingRecord
}

// count is what the item weighs in the queue: its samples, histograms and
// exemplars, or 1 for a family metadata entry.
func (it *item) count() int {
	if it.family != nil {
		return 1
	}
	if it.raw != nil {
		return int(it.rawSamples + it.rawHists + it.rawExemplars)
	}
	return len(it.samples) + len(it.histograms) + len(it.exemplars)
}

// Estimated encoded sizes, close to the protobuf wire size: a field tag and
// length per message, fixed64 values and varint timestamps.
const (
	sampleBytes       = 20 // value 9, timestamp ≤ 11
	startTSBytes      = 11
	histogramBaseSize = 60
	bucketBytes       = 9
	seriesOverhead    = 8
	labelOverhead     = 6
	metadataOverhead  = 8
)

func labelsSize(ls labels.Labels) int {
	n := 0
	ls.Range(func(l labels.Label) { n += len(l.Name) + len(l.Value) + labelOverhead })
	return n
}

func histogramSize(h *prw.Histogram) int {
	return histogramBaseSize +
		bucketBytes*(len(h.NegativeSpans)+len(h.PositiveSpans)+len(h.NegativeDeltas)+len(h.PositiveDeltas)+
			len(h.NegativeCounts)+len(h.PositiveCounts)+len(h.CustomValues))
}

// estimateSize returns the estimated encoded size of it.
func estimateSize(it *item) int {
	if it.family != nil {
		return metadataOverhead + len(it.family.MetricFamilyName) + len(it.family.Help) + len(it.family.Unit)
	}
	if it.chunk {
		return len(it.raw)
	}
	if it.raw != nil {
		return len(it.raw) + 4
	}
	n := seriesOverhead + labelsSize(it.labels)
	for i := range it.samples {
		n += sampleBytes
		if it.samples[i].StartTimestamp != 0 {
			n += startTSBytes
		}
	}
	for i := range it.histograms {
		n += histogramSize(&it.histograms[i])
	}
	for i := range it.exemplars {
		n += sampleBytes + labelsSize(it.exemplars[i].Labels)
	}
	if !it.metadata.Empty() {
		n += metadataOverhead + len(it.metadata.Help) + len(it.metadata.Unit)
	}
	return n
}

// split returns the first n points of it (samples first, then histograms,
// then exemplars) and the rest. The metadata goes with the head.
// 0 < n < it.count().
func (it *item) split(n int) (head, tail item) {
	if it.chunk {
		if series, err := it.chunkSeries(); err == nil && len(series) == 1 {
			return series[0].split(n)
		}
		return it.splitChunk(n)
	}
	if it.raw != nil {
		if st, err := it.structured(); err == nil {
			return st.split(n)
		}
		return *it, item{rec: it.rec} // malformed: sent whole, and refused
	}
	head = item{labels: it.labels, metadata: it.metadata, rec: it.rec}
	tail = item{labels: it.labels, rec: it.rec}
	take := func(total int) int { k := min(n, total); n -= k; return k }
	k := take(len(it.samples))
	head.samples, tail.samples = it.samples[:k:k], it.samples[k:]
	k = take(len(it.histograms))
	head.histograms, tail.histograms = it.histograms[:k:k], it.histograms[k:]
	k = take(len(it.exemplars))
	head.exemplars, tail.exemplars = it.exemplars[:k:k], it.exemplars[k:]
	head.size = estimateSize(&head)
	tail.size = estimateSize(&tail)
	return head, tail
}

// ownedSeries is a copy of a request series that the forwarders may keep:
// nothing in it aliases the receiver's buffers. It is shared read-only by
// every upstream's items.
type ownedSeries struct {
	labels     labels.Labels
	samples    []prw.Sample
	histograms []prw.Histogram
	exemplars  []prw.Exemplar
	metadata   prw.Metadata
	name       string // __name__, for 1.0 family metadata lookups
}

// copySeries copies the parts of req that the queues keep.
func copySeries(req *prw.Request) []ownedSeries {
	out := make([]ownedSeries, len(req.Series))
	for i := range req.Series {
		s := &req.Series[i]
		o := &out[i]
		o.labels = s.Labels.Copy()
		o.name = o.labels.Get(labels.MetricName)
		o.samples = slices.Clone(s.Samples)
		if len(s.Histograms) > 0 {
			o.histograms = make([]prw.Histogram, len(s.Histograms))
			for j := range s.Histograms {
				o.histograms[j] = cloneHistogram(&s.Histograms[j])
			}
		}
		if len(s.Exemplars) > 0 {
			o.exemplars = make([]prw.Exemplar, len(s.Exemplars))
			for j, e := range s.Exemplars {
				o.exemplars[j] = prw.Exemplar{Labels: e.Labels.Copy(), Value: e.Value, Timestamp: e.Timestamp}
			}
		}
		o.metadata = cloneMetadata(s.Metadata)
	}
	return out
}

func cloneMetadata(m prw.Metadata) prw.Metadata {
	return prw.Metadata{Type: m.Type, Help: strings.Clone(m.Help), Unit: strings.Clone(m.Unit)}
}

// cloneHistogram deep-copies h. The count oneofs are small values; they are
// re-allocated so that nothing points into the request.
func cloneHistogram(h *prw.Histogram) prw.Histogram {
	out := *h
	out.NegativeSpans = slices.Clone(h.NegativeSpans)
	out.NegativeDeltas = slices.Clone(h.NegativeDeltas)
	out.NegativeCounts = slices.Clone(h.NegativeCounts)
	out.PositiveSpans = slices.Clone(h.PositiveSpans)
	out.PositiveDeltas = slices.Clone(h.PositiveDeltas)
	out.PositiveCounts = slices.Clone(h.PositiveCounts)
	out.CustomValues = slices.Clone(h.CustomValues)
	out.XXX_unrecognized = nil
	switch c := h.Count.(type) {
	case *writev2.Histogram_CountInt:
		out.Count = &writev2.Histogram_CountInt{CountInt: c.CountInt}
	case *writev2.Histogram_CountFloat:
		out.Count = &writev2.Histogram_CountFloat{CountFloat: c.CountFloat}
	}
	switch z := h.ZeroCount.(type) {
	case *writev2.Histogram_ZeroCountInt:
		out.ZeroCount = &writev2.Histogram_ZeroCountInt{ZeroCountInt: z.ZeroCountInt}
	case *writev2.Histogram_ZeroCountFloat:
		out.ZeroCount = &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: z.ZeroCountFloat}
	}
	return out
}

// shardHash is the hash that picks the item's shard: the same for a series
// in raw and in structured form (see prw.HashLabels).
func (it *item) shardHash(scratch []byte) (uint64, []byte) {
	if it.raw != nil {
		return it.hash, scratch
	}
	return prw.HashLabels(it.labels, scratch)
}

// rawItem returns the item of a raw series: ts, a validated 1.0
// TimeSeries message, described by rs.
func rawItem(ts []byte, rs prw.RawSeries) item {
	it := item{raw: ts, hash: rs.Hash, rawSamples: rs.Samples, rawHists: rs.Histograms, rawExemplars: rs.Exemplars}
	it.size = estimateSize(&it)
	return it
}

// structured returns a raw item decoded, for the rare uses that need its
// points one by one: splitting an oversized series, the age limit, a 2.0
// encoding. Anything else is returned as it is.
func (it *item) structured() (item, error) {
	if it.raw == nil || it.chunk {
		return *it, nil
	}
	var ts prompb.TimeSeries
	out := item{rec: it.rec}
	if err := ts.Unmarshal(it.raw); err != nil {
		return out, fmt.Errorf("decode a queued series: %w", err)
	}
	sb := labels.NewScratchBuilder(len(ts.Labels))
	for _, l := range ts.Labels {
		sb.Add(l.Name, l.Value)
	}
	sb.Sort()
	out.labels = sb.Labels()
	if len(ts.Samples) > 0 {
		out.samples = make([]prw.Sample, len(ts.Samples))
		for i, s := range ts.Samples {
			out.samples[i] = prw.Sample{Value: s.Value, Timestamp: s.Timestamp}
		}
	}
	for _, h := range ts.Histograms {
		out.histograms = append(out.histograms, prw.HistogramFromV1(h))
	}
	for _, e := range ts.Exemplars {
		sb.Reset()
		for _, l := range e.Labels {
			sb.Add(l.Name, l.Value)
		}
		sb.Sort()
		out.exemplars = append(out.exemplars, prw.Exemplar{Labels: sb.Labels(), Value: e.Value, Timestamp: e.Timestamp})
	}
	out.size = estimateSize(&out)
	return out, nil
}
