package forward

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// Version 1 records were written by earlier builds and are only read now.
// After the version byte, a snappy block holding, with uvarint (u), zigzag
// varint (v), little-endian fixed64 (f64) and length-prefixed strings
// (s = u length, bytes):
//
//	u append time, Unix milliseconds
//	u item count, then per item a kind byte:
//	  1 series: u label count, (s name, s value)…  (sorted, as labels.Labels)
//	            u sample count, (f64 value bits, v timestamp, v start timestamp)…
//	            u histogram count, (s writev2.Histogram protobuf)…
//	            u exemplar count, (u label count, (s, s)…, f64 value bits, v timestamp)…
//	            u metadata type, s help, s unit
//	  2 family: s family name, u metadata type, s help, s unit
const (
	itemSeries = 1
	itemFamily = 2
)

// decodeV1 decodes a version 1 record body (after its version byte) as
// decode does: series that the write handler would refuse are left out,
// their size in the record returned as skipped.
func (d *recordDecoder) decodeV1(b []byte) ([]item, time.Time, int, error) {
	raw, err := d.snappy(b)
	if err != nil {
		return nil, time.Time{}, 0, err
	}
	r := recordReader{buf: raw, str: string(raw), sb: &d.sb}
	if form, appended, skipped := r.body(); r.err == nil {
		return rawItems(form, d.maxN, d.maxB, true, false), appended, skipped, nil
	}
	return nil, time.Time{}, 0, r.err
}

// recordReader parses a version 1 body. Its strings are substrings of str,
// the body as one string, not allocations of their own.
type recordReader struct {
	buf []byte
	str string
	off int
	err error
	sb  *labels.ScratchBuilder
}

func (r *recordReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.off = len(r.buf)
}

func (r *recordReader) uvarint() uint64 { return r.advance(binary.Uvarint(r.buf[r.off:])) }

func (r *recordReader) varint() int64 { return protowire.DecodeZigZag(r.uvarint()) }

func (r *recordReader) fixed64() float64 {
	return math.Float64frombits(r.advance(protowire.ConsumeFixed64(r.buf[r.off:])))
}

// advance moves past a value of n bytes, or fails if n <= 0 (truncated or
// overflowing, as the decoding functions report it).
func (r *recordReader) advance(v uint64, n int) uint64 {
	if n <= 0 {
		r.fail(errRecordTruncated)
		return 0
	}
	r.off += n
	return v
}

// count reads a count of things that each take at least min bytes.
func (r *recordReader) count(minBytes int) int {
	n := r.uvarint()
	if n > uint64((len(r.buf)-r.off)/minBytes) {
		r.fail(fmt.Errorf("count %d exceeds the record", n))
		return 0
	}
	return int(n)
}

// span reads a length-prefixed string and returns its bounds.
func (r *recordReader) span() (lo, hi int) {
	n := r.count(1)
	r.off += n
	return r.off - n, r.off
}

func (r *recordReader) string() string { lo, hi := r.span(); return r.str[lo:hi] }

func (r *recordReader) labels() labels.Labels {
	n := r.count(2)
	r.sb.Reset()
	for range n {
		name := r.string()
		r.sb.Add(name, r.string())
	}
	return r.sb.Labels()
}

func (r *recordReader) metadata() prw.Metadata {
	return prw.Metadata{Type: prw.MetricType(r.uvarint()), Help: r.string(), Unit: r.string()}
}

// body returns the record's valid series and family metadata in the form.
func (r *recordReader) body() (raw *prw.RawV1, appended time.Time, skipped int) {
	var (
		series []prw.Series
		fams   []prw.FamilyMetadata
	)
	appended = time.UnixMilli(int64(r.uvarint()))
	n := r.count(2)
	for range n {
		if r.off >= len(r.buf) {
			r.fail(errRecordTruncated)
			break
		}
		start := r.off
		kind := r.buf[r.off]
		r.off++
		switch kind {
		case itemFamily:
			fams = append(fams, prw.FamilyMetadata{MetricFamilyName: r.string(), Metadata: r.metadata()})
		case itemSeries:
			var s prw.Series
			s.Labels = r.labels()
			if k := r.count(10); k > 0 {
				s.Samples = make([]prw.Sample, k)
				for j := range s.Samples {
					s.Samples[j] = prw.Sample{Value: r.fixed64(), Timestamp: r.varint(), StartTimestamp: r.varint()}
				}
			}
			if k := r.count(1); k > 0 {
				s.Histograms = make([]prw.Histogram, k)
				for j := range s.Histograms {
					lo, hi := r.span()
					if err := s.Histograms[j].Unmarshal(r.buf[lo:hi]); err != nil {
						r.fail(fmt.Errorf("unmarshal histogram: %w", err))
					}
				}
			}
			if k := r.count(10); k > 0 {
				s.Exemplars = make([]prw.Exemplar, k)
				for j := range s.Exemplars {
					s.Exemplars[j] = prw.Exemplar{Labels: r.labels(), Value: r.fixed64(), Timestamp: r.varint()}
				}
			}
			s.Metadata = r.metadata()
			if _, _, ok := prw.ValidateSeries(&s); r.err == nil && !ok {
				skipped += r.off - start
				continue
			}
			series = append(series, s)
		default:
			r.fail(fmt.Errorf("unknown item kind %d", kind))
		}
		if r.err != nil {
			break
		}
	}
	if r.err == nil && r.off != len(r.buf) {
		r.fail(fmt.Errorf("%d bytes after the last item", len(r.buf)-r.off))
	}
	return prw.NewRequest(prw.ProtoV1, series, fams).Raw, appended, skipped
}
