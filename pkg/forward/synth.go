package forward

import (
	"encoding/binary"
	"math"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// A remote write 2.0 request reaches the Manager decoded, without the raw
// form the receiver gives a plain 1.0 request. For the 1.0 upstreams that
// change nothing (see takesRaw) it is encoded once, here, into the 1.0
// message those upstreams are sent, and takes the fast path from there:
// chunks, the handoff, batches of whole chunks. The general path would copy
// every series, build an item per series and upstream, write a version 1
// queue record of label strings, read it back and marshal every batch
// series by series: about three quarters of the CPU a 2.0 sample cost.
//
// What is encoded is what the general path sends a 1.0 upstream: the
// labels, the samples without their start timestamps, the histograms and
// exemplars, and one family metadata entry per metric family and request
// (the general path repeats it in every batch of the family; from the
// first series of the family that has metadata), after the series.

// synthesizer holds the buffers of one request's 1.0 form. The Manager
// pools them: a synthesized RawV1 is valid until the synthesizer is put
// back, and everything that outlives Enqueue is copied from it.
type synthesizer struct {
	raw      prw.RawV1
	enc      *encoder
	hashBuf  []byte
	families map[string]struct{}
	meta     []prompb.MetricMetadata
}

var synthesizers = sync.Pool{New: func() any {
	return &synthesizer{enc: newEncoder(), families: map[string]struct{}{}}
}}

// synthesize returns req, a decoded request, in the 1.0 wire form, or nil
// if a series could not be encoded (the general path then takes it).
func (sy *synthesizer) synthesize(req *prw.Request) *prw.RawV1 {
	raw := &sy.raw
	*raw = prw.RawV1{Msg: raw.Msg[:0], Series: raw.Series[:0], Metadata: raw.Metadata[:0]}
	clear(sy.families)
	sy.meta = sy.meta[:0]
	b := raw.Msg
	for i := range req.Series {
		s := &req.Series[i]
		start := len(b)
		var (
			c  batchStats
			rs prw.RawSeries
		)
		if len(s.Histograms) == 0 && len(s.Exemplars) == 0 {
			b, rs.Hash = sy.appendFloatSeries(b, s)
			c.samples = len(s.Samples)
		} else {
			it := item{labels: s.Labels, samples: s.Samples, histograms: s.Histograms, exemplars: s.Exemplars}
			var err error
			if b, c, err = sy.enc.appendSeriesV1(b, &it); err != nil {
				return nil
			}
			rs.Hash, sy.hashBuf = prw.HashLabels(s.Labels, sy.hashBuf)
		}
		rs.Span = fieldSpan(b, start)
		rs.Samples, rs.Histograms, rs.Exemplars = uint32(c.samples), uint32(c.histograms), uint32(c.exemplars)
		raw.Series = append(raw.Series, rs)
		raw.Samples += c.samples
		raw.Histograms += c.histograms
		raw.Exemplars += c.exemplars
		if !s.Metadata.Empty() {
			name := familyName(s.Labels.Get(labels.MetricName), s.Metadata.Type)
			if _, ok := sy.families[name]; !ok {
				sy.families[name] = struct{}{}
				sy.meta = append(sy.meta, prompb.MetricMetadata{
					Type:             prw.MetricTypeToV1(s.Metadata.Type),
					MetricFamilyName: name,
					Help:             s.Metadata.Help,
					Unit:             s.Metadata.Unit,
				})
			}
		}
	}
	for i := range sy.meta {
		start := len(b)
		var err error
		if b, err = appendMessage(b, 3, &sy.meta[i]); err != nil {
			return nil
		}
		raw.Metadata = append(raw.Metadata, fieldSpan(b, start))
	}
	raw.Msg = b
	return raw
}

// appendFloatSeries appends s, which has only float samples, as a
// TimeSeries field, and returns the hash of its labels. It writes what
// the generated Marshal writes (labels, then each sample's value unless it
// is zero and timestamp unless it is zero, lengths as minimal varints),
// without building prompb values: for the usual series it is several times
// cheaper, and the label bytes it writes are the ones HashLabels hashes.
func (sy *synthesizer) appendFloatSeries(b []byte, s *prw.Series) ([]byte, uint64) {
	body := prw.AppendLabels(sy.hashBuf[:0], s.Labels)
	h := xxhash.Sum64(body)
	for _, x := range s.Samples {
		n := 0
		if x.Value != 0 {
			n += 9
		}
		if x.Timestamp != 0 {
			n += 1 + protowire.SizeVarint(uint64(x.Timestamp))
		}
		body = append(body, 0x12)
		body = protowire.AppendVarint(body, uint64(n))
		if x.Value != 0 {
			body = append(body, 0x09)
			body = binary.LittleEndian.AppendUint64(body, math.Float64bits(x.Value))
		}
		if x.Timestamp != 0 {
			body = append(body, 0x10)
			body = protowire.AppendVarint(body, uint64(x.Timestamp))
		}
	}
	sy.hashBuf = body
	b = append(b, 0x0a)
	b = protowire.AppendVarint(b, uint64(len(body)))
	return append(b, body...), h
}

// fieldSpan returns the span of the message of the length-delimited field
// that starts at b[start:] and ends b.
func fieldSpan(b []byte, start int) prw.Span {
	_, _, k := protowire.ConsumeTag(b[start:])
	_, m := protowire.ConsumeVarint(b[start+k:])
	return prw.Span{Off: uint32(start + k + m), Len: uint32(len(b) - start - k - m)}
}

// mayTakeRaw reports whether the upstream could take a request raw: what
// takesRaw checks that does not depend on the request.
func (f *forwarder) mayTakeRaw() bool {
	c := f.cfg
	return f.proto() == prw.ProtoV1 && len(c.WriteRelabelConfigs) == 0 && c.QueueConfig.SampleAgeLimit <= 0
}
