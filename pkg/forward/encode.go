package forward

import (
	"fmt"
	"slices"
	"strings"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// batchStats counts what one encoded batch carries.
type batchStats struct {
	samples, histograms, exemplars, metadata int
}

// points is what the dropped and failed counters count: samples,
// histograms and exemplars.
func (s batchStats) points() int { return s.samples + s.histograms + s.exemplars }

// encoder turns a batch of items into a snappy-compressed protobuf message.
// Each shard owns one and reuses its buffers from batch to batch; it is not
// safe for concurrent use. The bytes encode returns stay valid until the
// next call.
type encoder struct {
	v1         prompb.WriteRequest
	v1Labels   [][]prompb.Label
	v1Samples  [][]prompb.Sample
	v1Hists    [][]prompb.Histogram
	v1Exemplar [][]prompb.Exemplar
	v1ExLabels []prompb.Label
	families   map[string]struct{}

	v2         writev2.Request
	symbols    writev2.SymbolsTable
	v2Refs     [][]uint32
	v2Samples  [][]writev2.Sample
	v2Exemplar [][]writev2.Exemplar
	v2ExRefs   []uint32

	pbuf []byte // marshaled protobuf
	sbuf []byte // snappy output
}

func newEncoder() *encoder {
	return &encoder{families: map[string]struct{}{}, symbols: writev2.NewSymbolTable()}
}

// encode marshals items in proto and compresses the result.
func (e *encoder) encode(proto prw.Protocol, items []item) ([]byte, batchStats, error) {
	var (
		st  batchStats
		err error
	)
	if proto == prw.ProtoV2 {
		st, err = e.marshalV2(items)
	} else {
		st, err = e.marshalV1(items)
	}
	if err != nil {
		return nil, st, err
	}
	e.sbuf = snappy.Encode(e.sbuf[:cap(e.sbuf)], e.pbuf)
	return e.sbuf, st, nil
}

// grow returns s[i] from a slice of reusable slices, extending s as needed.
func grow[T any](s *[][]T, i int) []T {
	for len(*s) <= i {
		*s = append(*s, nil)
	}
	return (*s)[i][:0]
}

// marshalV1 writes items as a prometheus.WriteRequest into e.pbuf, series
// in order: a raw item's bytes as they are, other series marshalled one by
// one with the generated code, then the family metadata.
func (e *encoder) marshalV1(items []item) (batchStats, error) {
	var st batchStats
	clear(e.families)
	md := e.v1.Metadata[:0]
	e.v1ExLabels = e.v1ExLabels[:0]
	addFamily := func(name string, m prw.Metadata) {
		if _, ok := e.families[name]; ok {
			return
		}
		e.families[name] = struct{}{}
		md = append(md, prompb.MetricMetadata{
			Type:             prw.MetricTypeToV1(m.Type),
			MetricFamilyName: name,
			Help:             m.Help,
			Unit:             m.Unit,
		})
	}
	b := e.pbuf[:0]
	for i := range items {
		it := &items[i]
		if it.family != nil {
			addFamily(it.family.MetricFamilyName, it.family.Metadata)
			continue
		}
		if it.chunk {
			b = append(b, it.raw...)
			st.samples += int(it.rawSamples)
			st.histograms += int(it.rawHists)
			st.exemplars += int(it.rawExemplars)
			continue
		}
		if it.raw != nil {
			b = append(b, 0x0a)
			b = protowire.AppendVarint(b, uint64(len(it.raw)))
			b = append(b, it.raw...)
			st.samples += int(it.rawSamples)
			st.histograms += int(it.rawHists)
			st.exemplars += int(it.rawExemplars)
			continue
		}
		var (
			c   batchStats
			err error
		)
		if b, c, err = e.appendSeriesV1(b, it); err != nil {
			return st, err
		}
		st.samples += c.samples
		st.histograms += c.histograms
		st.exemplars += c.exemplars
		if !it.metadata.Empty() {
			addFamily(familyName(it.labels.Get(labels.MetricName), it.metadata.Type), it.metadata)
		}
	}
	for i := range md {
		var err error
		if b, err = appendMessage(b, 3, &md[i]); err != nil {
			return st, fmt.Errorf("marshal 1.0 metadata: %w", err)
		}
	}
	st.metadata = len(md)
	e.v1.Metadata = md
	e.pbuf = b
	return st, nil
}

// appendSeriesV1 appends the structured item it to b as a TimeSeries field
// of a 1.0 WriteRequest, and returns what it holds.
func (e *encoder) appendSeriesV1(b []byte, it *item) ([]byte, batchStats, error) {
	var st batchStats
	lbls := grow(&e.v1Labels, 0)
	it.labels.Range(func(l labels.Label) { lbls = append(lbls, prompb.Label{Name: l.Name, Value: l.Value}) })
	e.v1Labels[0] = lbls

	ss := grow(&e.v1Samples, 0)
	for _, s := range it.samples {
		ss = append(ss, prompb.Sample{Value: s.Value, Timestamp: s.Timestamp})
	}
	e.v1Samples[0] = ss

	hs := grow(&e.v1Hists, 0)
	for j := range it.histograms {
		hs = append(hs, prw.HistogramToV1(it.histograms[j]))
	}
	e.v1Hists[0] = clearTail(hs)

	es := grow(&e.v1Exemplar, 0)
	e.v1ExLabels = e.v1ExLabels[:0]
	for _, ex := range it.exemplars {
		start := len(e.v1ExLabels)
		ex.Labels.Range(func(l labels.Label) {
			e.v1ExLabels = append(e.v1ExLabels, prompb.Label{Name: l.Name, Value: l.Value})
		})
		end := len(e.v1ExLabels)
		es = append(es, prompb.Exemplar{Labels: e.v1ExLabels[start:end:end], Value: ex.Value, Timestamp: ex.Timestamp})
	}
	e.v1Exemplar[0] = es

	ts := prompb.TimeSeries{Labels: lbls, Samples: ss, Histograms: hs, Exemplars: es}
	var err error
	if b, err = appendMessage(b, 1, &ts); err != nil {
		return b, st, fmt.Errorf("marshal 1.0 series: %w", err)
	}
	st.samples += len(ss)
	st.histograms += len(hs)
	st.exemplars += len(es)
	return b, st, nil
}

// clearTail drops what the spare capacity of s points to.
func clearTail[S ~[]E, E any](s S) S {
	clear(s[len(s):cap(s)])
	return s
}

// sizedMarshaler is a gogo-generated message.
type sizedMarshaler interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

// appendMessage appends m as field num of the enclosing message.
func appendMessage(b []byte, num protowire.Number, m sizedMarshaler) ([]byte, error) {
	size := m.Size()
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = slices.Grow(b, size)[:len(b)+size]
	if _, err := m.MarshalToSizedBuffer(b[len(b)-size:]); err != nil {
		return b, err
	}
	return b, nil
}

func (e *encoder) marshalV2(items []item) (batchStats, error) {
	var st batchStats
	// Raw series and chunks are queued for 1.0 upstreams only; these were
	// read back from a disk queue of a former configuration.
	items, err := expandRaw(items)
	if err != nil {
		return st, err
	}
	e.symbols.Reset()
	ts := e.v2.Timeseries[:0]
	e.v2ExRefs = e.v2ExRefs[:0]
	for i := range items {
		it := &items[i]
		if it.family != nil {
			// 2.0 has no family metadata: prepare attached it to the
			// family's series.
			continue
		}
		n := len(ts)
		refs := e.symbols.SymbolizeLabels(it.labels, grow(&e.v2Refs, n))
		e.v2Refs[n] = refs

		ss := grow(&e.v2Samples, n)
		for _, s := range it.samples {
			ss = append(ss, writev2.Sample{Value: s.Value, Timestamp: s.Timestamp, StartTimestamp: s.StartTimestamp})
		}
		e.v2Samples[n] = ss

		es := grow(&e.v2Exemplar, n)
		for _, ex := range it.exemplars {
			start := len(e.v2ExRefs)
			ex.Labels.Range(func(l labels.Label) {
				e.v2ExRefs = append(e.v2ExRefs, e.symbols.Symbolize(l.Name), e.symbols.Symbolize(l.Value))
			})
			end := len(e.v2ExRefs)
			es = append(es, writev2.Exemplar{LabelsRefs: e.v2ExRefs[start:end:end], Value: ex.Value, Timestamp: ex.Timestamp})
		}
		e.v2Exemplar[n] = es

		var md writev2.Metadata
		if !it.metadata.Empty() {
			md = writev2.Metadata{
				Type:    it.metadata.Type,
				HelpRef: e.symbols.Symbolize(it.metadata.Help),
				UnitRef: e.symbols.Symbolize(it.metadata.Unit),
			}
			st.metadata++
		}
		// Histograms are already in the 2.0 form and are never mutated:
		// they are sent from the queue's own slice.
		ts = append(ts, writev2.TimeSeries{LabelsRefs: refs, Samples: ss, Histograms: it.histograms, Exemplars: es, Metadata: md})
		st.samples += len(ss)
		st.histograms += len(it.histograms)
		st.exemplars += len(es)
	}
	e.v2.Timeseries = ts
	e.v2.Symbols = e.symbols.Symbols()
	b, err := e.v2.OptimizedMarshal(e.pbuf)
	if err != nil {
		return st, fmt.Errorf("marshal 2.0 request: %w", err)
	}
	e.pbuf = b
	return st, nil
}

// familyName returns the 1.0 metric family name for a series named name
// whose metadata says typ: the _bucket, _count and _sum series of
// histograms and summaries belong to the family without the suffix.
func familyName(name string, typ prw.MetricType) string {
	switch typ {
	case writev2.Metadata_METRIC_TYPE_HISTOGRAM, writev2.Metadata_METRIC_TYPE_GAUGEHISTOGRAM, writev2.Metadata_METRIC_TYPE_SUMMARY:
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				return base
			}
		}
	}
	return name
}

// familyCandidates returns the family names a series named name may belong
// to, most specific first: the name itself, then the name without a
// _bucket, _count, _sum or _total suffix.
func familyCandidates(name string) (string, string) {
	for _, suffix := range []string{"_bucket", "_count", "_sum", "_total"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			return name, base
		}
	}
	return name, ""
}
