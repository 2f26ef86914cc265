package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// A disk queue record holds the items one request became for one upstream,
// after external labels, write relabeling and the send_* settings: what the
// upstream is sent, nothing else. Its first byte is the record format
// version; the rest depends on the version. Readers for every version ever
// written stay here (see pkg/queue/FORMAT.md for the rule).
//
// Version 1 is followed by a snappy block (the "block" format of
// github.com/golang/snappy) holding, with uvarint (u), zigzag varint (v),
// little-endian fixed64 (f64) and length-prefixed strings (s = u length,
// bytes):
//
//	u append time, Unix milliseconds
//	u item count, then per item a kind byte:
//	  1 series: u label count, (s name, s value)…  (sorted, as labels.Labels)
//	            u sample count, (f64 value bits, v timestamp, v start timestamp)…
//	            u histogram count, (s writev2.Histogram protobuf)…
//	            u exemplar count, (u label count, (s, s)…, f64 value bits, v timestamp)…
//	            u metadata type, s help, s unit
//	  2 family: s family name, u metadata type, s help, s unit
//
// Float values are stored as their bits, so every NaN (stale markers
// included) comes back identical.
//
// Version 2 is a remote write 1.0 request as the fast path queues it (see
// prepareRaw): a uvarint append time in Unix milliseconds, then a snappy
// block holding a prometheus.WriteRequest whose series the receiver
// validated, with their final labels. It is often the client's own body,
// as it was sent.
const (
	recordV1 = 1
	recordV2 = 2

	itemSeries = 1
	itemFamily = 2

	// maxRecordItemBytes is where a request's items are cut into several
	// records (appended together, all or nothing), by estimated size: a
	// record is decoded whole, so this bounds what one read holds.
	maxRecordItemBytes = 4 << 20
	// maxDecodedRecordBytes refuses a record whose snappy block claims more.
	maxDecodedRecordBytes = 256 << 20
)

var errRecordTruncated = errors.New("record truncated")

// recordEncoder turns items into queue records. It reuses its buffers: the
// records it returns are valid until its next use. Not safe for concurrent
// use; the Manager pools them.
type recordEncoder struct {
	raw  []byte
	out  []byte
	recs [][]byte
}

// encode returns items as one or more records, cut by maxRecordItemBytes,
// and their total size.
func (e *recordEncoder) encode(items []item, appended time.Time) ([][]byte, int64) {
	e.out, e.recs = e.out[:0], e.recs[:0]
	var offs []int
	for lo := 0; lo < len(items); {
		hi, size := lo, 0
		for hi < len(items) && (hi == lo || size+items[hi].size <= maxRecordItemBytes) {
			size += items[hi].size
			hi++
		}
		e.raw = appendRecordBody(e.raw[:0], items[lo:hi], appended)
		start := len(e.out)
		e.out = append(e.out, recordV1)
		n := snappy.MaxEncodedLen(len(e.raw))
		e.out = append(e.out, make([]byte, n)...)
		enc := snappy.Encode(e.out[start+1:], e.raw)
		e.out = e.out[:start+1+len(enc)]
		offs = append(offs, start)
		lo = hi
	}
	// e.out may have moved while growing: slice it once it is complete.
	for i, start := range offs {
		end := len(e.out)
		if i+1 < len(offs) {
			end = offs[i+1]
		}
		e.recs = append(e.recs, e.out[start:end:end])
	}
	return e.recs, int64(len(e.out))
}

// encodeRaw returns the request raw as version 2 records, its metadata
// included if withMeta, and their total size. The client's compressed body
// is the record when it holds exactly that.
func (e *recordEncoder) encodeRaw(raw *prw.RawV1, withMeta bool, appended time.Time) ([][]byte, int64) {
	e.out, e.recs = e.out[:0], e.recs[:0]
	var offs []int
	header := func() {
		offs = append(offs, len(e.out))
		e.out = append(e.out, recordV2)
		e.out = binary.AppendUvarint(e.out, uint64(appended.UnixMilli()))
	}
	if (withMeta || len(raw.Metadata) == 0) && len(raw.Msg) <= maxRecordItemBytes && raw.Compressed != nil {
		header()
		e.out = append(e.out, raw.Compressed...)
	} else {
		flush := func() {
			header()
			start := len(e.out)
			e.out = slices.Grow(e.out, snappy.MaxEncodedLen(len(e.raw)))
			enc := snappy.Encode(e.out[start:cap(e.out)], e.raw)
			e.out = e.out[:start+len(enc)]
			e.raw = e.raw[:0]
		}
		e.raw = e.raw[:0]
		add := func(num protowire.Number, m []byte) {
			if len(e.raw) > 0 && len(e.raw)+len(m) > maxRecordItemBytes {
				flush()
			}
			e.raw = protowire.AppendTag(e.raw, num, protowire.BytesType)
			e.raw = protowire.AppendBytes(e.raw, m)
		}
		for _, rs := range raw.Series {
			add(1, rs.Bytes(raw.Msg))
		}
		if withMeta {
			for _, md := range raw.Metadata {
				add(3, md.Bytes(raw.Msg))
			}
		}
		if len(e.raw) > 0 {
			flush()
		}
	}
	for i, start := range offs {
		end := len(e.out)
		if i+1 < len(offs) {
			end = offs[i+1]
		}
		e.recs = append(e.recs, e.out[start:end:end])
	}
	return e.recs, int64(len(e.out))
}

func appendRecordBody(b []byte, items []item, appended time.Time) []byte {
	b = binary.AppendUvarint(b, uint64(appended.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(len(items)))
	for i := range items {
		it := &items[i]
		if it.family != nil {
			b = append(b, itemFamily)
			b = appendString(b, it.family.MetricFamilyName)
			b = appendMetadata(b, it.family.Metadata)
			continue
		}
		b = append(b, itemSeries)
		b = appendLabels(b, it.labels)
		b = binary.AppendUvarint(b, uint64(len(it.samples)))
		for _, s := range it.samples {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.Value))
			b = binary.AppendVarint(b, s.Timestamp)
			b = binary.AppendVarint(b, s.StartTimestamp)
		}
		b = binary.AppendUvarint(b, uint64(len(it.histograms)))
		for j := range it.histograms {
			h := &it.histograms[j]
			n := h.Size()
			b = binary.AppendUvarint(b, uint64(n))
			b = append(b, make([]byte, n)...)
			// Size was computed just above: MarshalToSizedBuffer cannot fail.
			_, _ = h.MarshalToSizedBuffer(b[len(b)-n:])
		}
		b = binary.AppendUvarint(b, uint64(len(it.exemplars)))
		for _, e := range it.exemplars {
			b = appendLabels(b, e.Labels)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Value))
			b = binary.AppendVarint(b, e.Timestamp)
		}
		b = appendMetadata(b, it.metadata)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendLabels(b []byte, ls labels.Labels) []byte {
	b = binary.AppendUvarint(b, uint64(ls.Len()))
	ls.Range(func(l labels.Label) {
		b = appendString(b, l.Name)
		b = appendString(b, l.Value)
	})
	return b
}

func appendMetadata(b []byte, m prw.Metadata) []byte {
	b = binary.AppendUvarint(b, uint64(m.Type))
	b = appendString(b, m.Help)
	return appendString(b, m.Unit)
}

// recordDecoder reads records back. Not safe for concurrent use: the reader
// goroutine of a forwarder owns one.
type recordDecoder struct {
	raw    []byte
	sb     labels.ScratchBuilder
	hasher prw.LabelHasher

	// Version 2 records become chunks (see chunkRaw) for shards shards of
	// at most maxN points and maxB bytes; the zero value means one shard
	// and no limits.
	shards, maxN, maxB int
	series             []prw.RawSeries
}

// decode returns the items of rec, which it does not retain, and the time
// the record was appended. Strings in the items share one allocation per
// record.
func (d *recordDecoder) decode(rec []byte) ([]item, time.Time, error) {
	if len(rec) == 0 {
		return nil, time.Time{}, errRecordTruncated
	}
	switch rec[0] {
	case recordV1:
	case recordV2:
		return d.decodeV2(rec[1:])
	default:
		return nil, time.Time{}, fmt.Errorf("unknown record version %d", rec[0])
	}
	n, err := snappy.DecodedLen(rec[1:])
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("decode snappy: %w", err)
	}
	if n > maxDecodedRecordBytes {
		return nil, time.Time{}, fmt.Errorf("record of %d bytes decoded is over the %d limit", n, maxDecodedRecordBytes)
	}
	if cap(d.raw) < n {
		d.raw = make([]byte, n)
	}
	raw, err := snappy.Decode(d.raw[:n], rec[1:])
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("decode snappy: %w", err)
	}
	r := recordReader{buf: raw, str: string(raw), sb: &d.sb}
	items, appended := r.body()
	if r.err != nil {
		return nil, time.Time{}, r.err
	}
	return items, appended, nil
}

// recordReader parses a version 1 body. str is the body as one string, so
// that strings are substrings of it rather than allocations of their own.
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

func (r *recordReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 {
		r.fail(errRecordTruncated)
		return 0
	}
	r.off += n
	return v
}

func (r *recordReader) varint() int64 {
	v, n := binary.Varint(r.buf[r.off:])
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

func (r *recordReader) fixed64() float64 {
	if len(r.buf)-r.off < 8 {
		r.fail(errRecordTruncated)
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.buf[r.off:]))
	r.off += 8
	return v
}

func (r *recordReader) bytes() []byte {
	n := r.count(1)
	b := r.buf[r.off : r.off+n]
	r.off += n
	return b
}

func (r *recordReader) string() string {
	n := r.count(1)
	s := r.str[r.off : r.off+n]
	r.off += n
	return s
}

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

func (r *recordReader) body() ([]item, time.Time) {
	appended := time.UnixMilli(int64(r.uvarint()))
	n := r.count(2)
	items := make([]item, 0, n)
	for range n {
		if r.off >= len(r.buf) {
			r.fail(errRecordTruncated)
			break
		}
		kind := r.buf[r.off]
		r.off++
		var it item
		switch kind {
		case itemFamily:
			fm := &prw.FamilyMetadata{MetricFamilyName: r.string()}
			fm.Metadata = r.metadata()
			it.family = fm
		case itemSeries:
			it.labels = r.labels()
			if k := r.count(10); k > 0 {
				it.samples = make([]prw.Sample, k)
				for j := range it.samples {
					it.samples[j] = prw.Sample{Value: r.fixed64(), Timestamp: r.varint(), StartTimestamp: r.varint()}
				}
			}
			if k := r.count(1); k > 0 {
				it.histograms = make([]prw.Histogram, k)
				for j := range it.histograms {
					if err := it.histograms[j].Unmarshal(r.bytes()); err != nil {
						r.fail(fmt.Errorf("unmarshal histogram: %w", err))
					}
				}
			}
			if k := r.count(10); k > 0 {
				it.exemplars = make([]prw.Exemplar, k)
				for j := range it.exemplars {
					it.exemplars[j] = prw.Exemplar{Labels: r.labels(), Value: r.fixed64(), Timestamp: r.varint()}
				}
			}
			it.metadata = r.metadata()
		default:
			r.fail(fmt.Errorf("unknown item kind %d", kind))
		}
		if r.err != nil {
			break
		}
		it.size = estimateSize(&it)
		items = append(items, it)
	}
	if r.err == nil && r.off != len(r.buf) {
		r.fail(fmt.Errorf("%d bytes after the last item", len(r.buf)-r.off))
	}
	return items, appended
}

// decodeV2 returns the items of a version 2 record body: its series as
// chunks, which own their memory, and its metadata.
func (d *recordDecoder) decodeV2(rec []byte) ([]item, time.Time, error) {
	ms, k := binary.Uvarint(rec)
	if k <= 0 {
		return nil, time.Time{}, errRecordTruncated
	}
	rec = rec[k:]
	n, err := snappy.DecodedLen(rec)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("decode snappy: %w", err)
	}
	if n > maxDecodedRecordBytes {
		return nil, time.Time{}, fmt.Errorf("record of %d bytes decoded is over the %d limit", n, maxDecodedRecordBytes)
	}
	// Chunks are copies: the decoded message is the decoder's to reuse.
	if cap(d.raw) < n {
		d.raw = make([]byte, n)
	}
	msg, err := snappy.Decode(d.raw[:n], rec)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("decode snappy: %w", err)
	}
	var items []item
	series := d.series[:0]
	defer func() { d.series = series[:0] }()
	for b := msg; len(b) > 0; {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 || typ != protowire.BytesType {
			return nil, time.Time{}, fmt.Errorf("malformed 1.0 request in record")
		}
		v, m := protowire.ConsumeBytes(b[k:])
		if m < 0 {
			return nil, time.Time{}, errRecordTruncated
		}
		b = b[k+m:]
		switch num {
		case 1:
			rs, err := prw.ScanRawSeries(v, &d.hasher)
			if err != nil {
				return nil, time.Time{}, err
			}
			rs.Span = prw.Span{Off: uint32(len(msg) - len(b) - len(v)), Len: uint32(len(v))}
			series = append(series, rs)
		case 3:
			var md prompb.MetricMetadata
			if err := md.Unmarshal(v); err != nil {
				return nil, time.Time{}, fmt.Errorf("unmarshal metadata: %w", err)
			}
			it := item{family: familyFromV1(&md)}
			it.size = estimateSize(&it)
			items = append(items, it)
		default:
			return nil, time.Time{}, fmt.Errorf("unknown field %d in record", num)
		}
	}
	if len(series) > 0 {
		maxN, maxB := d.maxN, d.maxB
		if maxN <= 0 {
			maxN = math.MaxInt
		}
		if maxB <= 0 {
			maxB = math.MaxInt
		}
		chunks, _ := chunkRaw(msg, series, max(d.shards, 1), maxN, maxB)
		items = append(chunks, items...)
	}
	return items, time.UnixMilli(int64(ms)), nil
}

// familyFromV1 converts 1.0 metadata to the model's form.
func familyFromV1(md *prompb.MetricMetadata) *prw.FamilyMetadata {
	return &prw.FamilyMetadata{
		MetricFamilyName: md.MetricFamilyName,
		Metadata:         prw.Metadata{Type: prw.MetricTypeFromV1(md.Type), Help: md.Help, Unit: md.Unit},
	}
}
