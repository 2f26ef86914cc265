package prw

import (
	"bytes"
	"encoding/binary"
	"errors"
	"iter"
	"math"

	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// The form of an accepted series, from decoder to encoder, is its 1.0
// TimeSeries message: labels (field 1, canonical and sorted, see
// AppendLabels), samples (2), exemplars (3) and histograms (4). What only
// 2.0 has goes in fields 1.0 receivers ignore, chosen so that the point
// messages are already 2.0's:
//
//   - a sample's start timestamp is Sample field 3, as in 2.0;
//   - a histogram's start timestamp is Histogram field 17, as in 2.0;
//   - the series' metadata is TimeSeries field 15, a 1.0 MetricMetadata
//     without a family name (type 1, help 4, unit 5).
//
// AppendV1 leaves these extensions (RawSeries.Ext) out for 1.0; a 1.0
// request the scan accepted is in the form as sent. The form is validated
// when made: malformed bytes are an error, not a panic.
const (
	fieldLabels     = 1
	fieldSamples    = 2
	fieldExemplars  = 3
	fieldHistograms = 4
	fieldMetadata   = 15

	fieldSampleStart    = 3
	fieldHistogramStart = 17
	fieldHistogramTime  = 15
	fieldMetadataType   = 1
	fieldMetadataHelp   = 4
	fieldMetadataUnit   = 5
)

// ErrMalformed is returned for bytes that are not a well-formed message.
var ErrMalformed = errors.New("malformed series")

// AppendSeries appends s, valid with sorted labels, to b in the form and
// returns its descriptor (Span in b). scratch is reused and returned.
func AppendSeries(b []byte, s *Series, scratch []byte) ([]byte, RawSeries, []byte) {
	body := AppendLabels(scratch[:0], s.Labels)
	rs := RawSeries{Hash: hashCanonical(body), labels: uint32(len(body))}
	for _, x := range s.Samples {
		var at int
		body, at = openField(body, fieldSamples, 1)
		body = appendVarintField(appendFloat(body, 1, x.Value), 2, x.Timestamp)
		body = closeField(appendVarintField(body, fieldSampleStart, x.StartTimestamp), at, 1)
		rs.Ext = rs.Ext || x.StartTimestamp != 0
	}
	for _, e := range s.Exemplars {
		var at int
		body, at = openField(body, fieldExemplars, 1)
		body = appendFloat(AppendLabels(body, e.Labels), 2, e.Value)
		body = closeField(appendVarintField(body, 3, e.Timestamp), at, 1)
	}
	for i := range s.Histograms {
		h := &s.Histograms[i]
		n := h.Size()
		body = protowire.AppendTag(body, fieldHistograms, protowire.BytesType)
		body = protowire.AppendVarint(body, uint64(n))
		body = append(body, make([]byte, n)...)
		// Sized just above: MarshalToSizedBuffer cannot fail.
		_, _ = h.MarshalToSizedBuffer(body[len(body)-n:])
		rs.Ext = rs.Ext || h.StartTimestamp != 0
	}
	if md := s.Metadata; !md.Empty() {
		body = appendMetadataField(body, fieldMetadata, int64(md.Type), "", md.Help, md.Unit)
		rs.Ext, rs.Meta = true, true
	}
	rs.Samples, rs.Exemplars, rs.Histograms = uint32(len(s.Samples)), uint32(len(s.Exemplars)), uint32(len(s.Histograms))
	b, rs.Span = AppendField(b, fieldLabels, body)
	return b, rs, body
}

// appendFloat appends a double field unless v's bits are 0 (-0 is
// written), as the generated code does.
func appendFloat(b []byte, num protowire.Number, v float64) []byte {
	if math.Float64bits(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

// appendVarintField and appendStringField append a field unless it is 0
// or empty, as the generated code does.
func appendVarintField(b []byte, num protowire.Number, v int64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func appendStringField[S string | []byte](b []byte, num protowire.Number, s S) []byte {
	if len(s) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendMetadataField appends a 1.0 MetricMetadata message as field num:
// the metadata extension (fieldMetadata, no name) or a WriteRequest's
// family metadata entry (3).
func appendMetadataField[S string | []byte](b []byte, num protowire.Number, typ int64, name, help, unit S) []byte {
	b, at := openField(b, num, 1)
	b = appendStringField(appendVarintField(b, fieldMetadataType, typ), 2, name)
	b = appendStringField(b, fieldMetadataHelp, help)
	return closeField(appendStringField(b, fieldMetadataUnit, unit), at, 1)
}

// field is one field of a message, whole with its tag.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	v     []byte // the value of a length-delimited field
	whole []byte
	u     uint64 // the value of a varint or fixed64 field
}

// read reads the first field of b into f, and returns what follows it.
// It writes f in place, one part at a time: read runs once per field of
// every series, and a field built whole (returned, or a literal) was
// copied through a store-forwarding stall.
func (f *field) read(b []byte) (rest []byte, err error) {
	// Most fields of remote write have a one-byte tag and, if
	// length-delimited, a length of one byte, or two (a series of 128
	// bytes to 16 KiB): read those directly.
	if len(b) >= 2 && b[0] < 0x80 && b[0]&7 == byte(protowire.BytesType) && b[0] >= 8 {
		l, k := int(b[1]), 2
		if l >= 0x80 && len(b) >= 3 && b[2] < 0x80 {
			l, k = l&0x7f|int(b[2])<<7, 3
		}
		if end := k + l; (l < 0x80 || k == 3) && end <= len(b) {
			f.num, f.typ, f.v, f.whole, f.u = protowire.Number(b[0]>>3), protowire.BytesType, b[k:end:end], b[:end:end], 0
			return b[end:], nil
		}
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return nil, ErrMalformed
	}
	f.num, f.typ, f.v, f.u = num, typ, nil, 0
	var m int
	switch typ {
	case protowire.BytesType:
		f.v, m = protowire.ConsumeBytes(b[n:])
	case protowire.VarintType:
		f.u, m = protowire.ConsumeVarint(b[n:])
	case protowire.Fixed64Type:
		f.u, m = protowire.ConsumeFixed64(b[n:])
	default:
		m = protowire.ConsumeFieldValue(num, typ, b[n:])
	}
	if m < 0 {
		return nil, ErrMalformed
	}
	f.whole = b[:n+m]
	return b[n+m:], nil
}

// fields iterates over the fields of msg until a malformed one, yielded
// with ErrMalformed. Inlined into its loops, it allocates nothing.
func fields(msg []byte) iter.Seq2[field, error] {
	return func(yield func(field, error) bool) {
		var f field
		for len(msg) > 0 {
			rest, err := f.read(msg)
			if !yield(f, err) || err != nil {
				return
			}
			msg = rest
		}
	}
}

// metadataExt returns the value of the series' metadata extension, if any.
func metadataExt(ts []byte) (m []byte, ok bool, err error) {
	for f, err := range fields(ts) {
		if err != nil {
			return m, false, err
		}
		if f.num == fieldMetadata && f.typ == protowire.BytesType {
			m, ok = f.v, true
		}
	}
	return m, ok, nil
}

// WithMetadata appends ts to b as a TimeSeries field with metadata md,
// unless it has its own, and returns b and the message's span in it.
func WithMetadata(b, ts []byte, md Metadata) ([]byte, Span, error) {
	if _, ok, err := metadataExt(ts); err != nil || ok {
		b, sp := AppendField(b, fieldLabels, ts)
		return b, sp, err
	}
	b, at := openField(b, fieldLabels, 2)
	b = appendMetadataField(append(b, ts...), fieldMetadata, int64(md.Type), "", md.Help, md.Unit)
	n := len(b) - at
	b = closeField(b, at, 2)
	return b, Span{Off: uint32(len(b) - n), Len: uint32(n)}, nil
}

// openField starts field num with room bytes for closeField to write its
// length in: 1 for a message that is mostly under 128 bytes, 2 for one
// that is mostly under 16 KiB (a series).
func openField(b []byte, num protowire.Number, room int) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = append(b, make([]byte, room)...)
	return b, len(b)
}

// closeField sets the length of the message from at, after the room bytes
// openField left, and moves the message if its length takes other than
// room bytes.
func closeField(b []byte, at, room int) []byte {
	n := len(b) - at
	switch size := protowire.SizeVarint(uint64(n)); {
	case size > room:
		b = append(b, make([]byte, size-room)...)
		copy(b[at+size-room:], b[at:at+n])
	case size < room:
		copy(b[at-room+size:], b[at:at+n])
		b = b[:len(b)-room+size]
	}
	protowire.AppendVarint(b[:at-room], uint64(n))
	return b
}

// AppendField appends msg to b as field num (of a WriteRequest: 1 a series,
// 3 metadata) and returns its span in b.
func AppendField(b []byte, num protowire.Number, msg []byte) ([]byte, Span) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(msg)))
	sp := Span{Off: uint32(len(b)), Len: uint32(len(msg))}
	return append(b, msg...), sp
}

// AppendV1 appends ts to b as a plain 1.0 TimeSeries field, and returns
// the message's span in b with its points counted, and its metadata
// extension's value, if any (see ReadMetadata). On error b is returned as
// it was.
func AppendV1(b, ts []byte) (out []byte, rs RawSeries, md []byte, err error) {
	start := len(b)
	// The message is written in place, after room for its length: it is
	// no longer than ts, so the length takes at most as many bytes as
	// ts's, and is moved back in the rare case it takes fewer.
	room := protowire.SizeVarint(uint64(len(ts)))
	b, at := openField(b, fieldLabels, room)
	// The leading labels are copied as one block.
	off := 0
	for n, _, _, ok := SmallLabel(ts); ok; n, _, _, ok = SmallLabel(ts[off:]) {
		off += n
	}
	b = append(b, ts[:off]...)
	// The fields are read with field.read in a plain loop, not through
	// fields: this runs once per series the 1.0 encoder converts.
	var f field
	for rest := ts[off:]; len(rest) > 0; {
		var err error
		if rest, err = f.read(rest); err != nil {
			return b[:start], RawSeries{}, nil, err
		}
		switch {
		case f.num == fieldSamples && f.typ == protowire.BytesType:
			b = appendWithout(b, f.num, f.v, fieldSampleStart)
			rs.Samples++
		case f.num == fieldHistograms && f.typ == protowire.BytesType:
			b = appendWithout(b, f.num, f.v, fieldHistogramStart)
			rs.Histograms++
		case f.num == fieldMetadata && f.typ == protowire.BytesType:
			md = f.v
		default:
			rs.count(pointKind(f))
			b = append(b, f.whole...)
		}
	}
	n := len(b) - at
	b = closeField(b, at, room)
	rs.Span = Span{Off: uint32(len(b) - n), Len: uint32(n)}
	return b, rs, md, nil
}

// ReadMetadata reads the value of a series' metadata extension.
func ReadMetadata(m []byte) Metadata {
	typ, help, unit, _ := readMetadata(m)
	return Metadata{Type: MetricType(typ), Help: string(help), Unit: string(unit)}
}

// readMetadata reads a metadata extension up to any malformed field.
func readMetadata(m []byte) (typ uint64, help, unit []byte, err error) {
	for g, err := range fields(m) {
		switch {
		case err != nil:
			return typ, help, unit, err
		case g.num == fieldMetadataType && g.typ == protowire.VarintType:
			typ = g.u
		case g.num == fieldMetadataHelp && g.typ == protowire.BytesType:
			help = g.v
		case g.num == fieldMetadataUnit && g.typ == protowire.BytesType:
			unit = g.v
		}
	}
	return typ, help, unit, nil
}

// SeriesFamily returns, pointing into ts, the 1.0 family name of the
// series ts whose metadata extension is md (see AppendV1).
func SeriesFamily(ts, md []byte) []byte {
	typ, _, _, _ := readMetadata(md)
	return FamilyName(MetricName(ts), MetricType(typ))
}

// appendWithout appends the message v as field num, without its fields
// drop, or whole if it is malformed. It reads v with protowire directly,
// not through fields: in the 1.0 view of a 2.0 request it runs once per
// point.
func appendWithout(b []byte, num protowire.Number, v []byte, drop protowire.Number) []byte {
	start := len(b)
	// The message is written in place, after room for v's length, which
	// its own takes no more of (see AppendV1). The runs of fields between
	// drop fields are copied as one block each.
	room := protowire.SizeVarint(uint64(len(v)))
	b, at := openField(b, num, room)
	run := 0
	for off := 0; off < len(v); {
		fnum, typ, k := protowire.ConsumeTag(v[off:])
		m := -1
		if k >= 0 {
			m = protowire.ConsumeFieldValue(fnum, typ, v[off+k:])
		}
		if m < 0 {
			b, _ = AppendField(b[:start], num, v)
			return b
		}
		if fnum == drop {
			b = append(b, v[run:off]...)
			run = off + k + m
		}
		off += k + m
	}
	return closeField(append(b, v[run:]...), at, room)
}

// FamilyRun tells the series whose family is worth looking up: series of
// one family mostly come together, so a series of the same name and
// metadata as the last one told is not.
type FamilyRun struct{ md, name []byte }

// Next reports whether the series of metric name and metadata md starts a
// new run.
func (r *FamilyRun) Next(name, md []byte) bool {
	if bytes.Equal(md, r.md) && bytes.Equal(name, r.name) {
		return false
	}
	r.md, r.name = md, name
	return true
}

// Point kinds, for FilterPoints.
const (
	KindSample = iota
	KindHistogram
	KindExemplar
)

// FilterPoints appends ts, whose descriptor is rs, to b with the points keep
// accepts, given each one's kind, time and index, and returns the new
// descriptor (rs's Hash, Ext and Meta) and the number dropped. scratch is reused.
func FilterPoints(b, ts []byte, rs RawSeries, keep func(kind int, t int64, i int) bool, scratch []byte) ([]byte, RawSeries, int, []byte, error) {
	out := RawSeries{Hash: rs.Hash, labels: rs.labels, Ext: rs.Ext, Meta: rs.Meta}
	body, i := scratch[:0], 0 // i counts the points seen
	for f, err := range fields(ts) {
		if err != nil {
			return b, rs, 0, body, err
		}
		if kind := pointKind(f); kind >= 0 {
			t, err := pointTime(kind, f.v)
			if err != nil {
				return b, rs, 0, body, err
			}
			if i++; !keep(kind, t, i-1) {
				continue
			}
			out.count(kind)
		}
		body = append(body, f.whole...)
	}
	b, out.Span = AppendField(b, fieldLabels, body)
	return b, out, i - out.Points(), body, nil
}

// pointKind returns the kind of point the TimeSeries field f holds, or -1.
func pointKind(f field) int {
	if f.typ == protowire.BytesType {
		switch f.num {
		case fieldSamples:
			return KindSample
		case fieldHistograms:
			return KindHistogram
		case fieldExemplars:
			return KindExemplar
		}
	}
	return -1
}

func (rs *RawSeries) count(kind int) {
	switch kind {
	case KindSample:
		rs.Samples++
	case KindHistogram:
		rs.Histograms++
	case KindExemplar:
		rs.Exemplars++
	}
}

func pointTime(kind int, msg []byte) (int64, error) {
	num := [...]protowire.Number{KindSample: 2, KindHistogram: fieldHistogramTime, KindExemplar: 3}[kind]
	var t int64
	for f, err := range fields(msg) {
		if err != nil {
			return 0, err
		}
		if f.num == num && f.typ == protowire.VarintType {
			t = int64(f.u)
		}
	}
	return t, nil
}

// MetricName returns the value of the __name__ label of the series ts, in
// ts's bytes.
func MetricName(ts []byte) []byte {
	// Sorted labels have __name__ first, or nearly.
	off := 0
	for n, name, value, ok := SmallLabel(ts); ok; n, name, value, ok = SmallLabel(ts[off:]) {
		if string(name) == labels.MetricName {
			return value
		}
		off += n
	}
	var name []byte
	_ = RangeRawLabels(ts, func(n, v []byte) bool {
		if string(n) == labels.MetricName {
			name = v
		}
		return name == nil
	})
	return name
}

// FamilyName returns the family of a series name of type typ: histograms'
// and summaries' _bucket, _count and _sum series lose the suffix.
func FamilyName[S string | []byte](name S, typ MetricType) S {
	switch typ {
	case writev2.Metadata_METRIC_TYPE_HISTOGRAM, writev2.Metadata_METRIC_TYPE_GAUGEHISTOGRAM, writev2.Metadata_METRIC_TYPE_SUMMARY:
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if n := len(name) - len(suffix); n > 0 && string(name[n:]) == suffix {
				return name[:n]
			}
		}
	}
	return name
}

// SeriesLabels returns the labels of the series ts, in order.
func SeriesLabels(ts []byte, sb *labels.ScratchBuilder) (labels.Labels, error) {
	sb.Reset()
	err := RangeRawLabels(ts, func(name, value []byte) bool { sb.Add(string(name), string(value)); return true })
	return sb.Labels(), err
}

// withLabels appends ts, whose descriptor is rs, to b with ls, its
// new labels fields as AppendLabels writes them, in place of its own, and
// returns the new descriptor. On error b is returned as it was.
func withLabels(b, ts []byte, rs RawSeries, ls []byte) ([]byte, RawSeries, error) {
	start := len(b)
	// Written in place, after room for its length (see AppendV1).
	room := protowire.SizeVarint(uint64(len(ls) + len(ts)))
	b, at := openField(b, fieldLabels, room)
	return endSeries(append(b, ls...), start, at, room, ts, rs)
}

// endSeries ends the series of withLabels: b holds its new labels fields
// from at, after the room bytes openField left at start. It appends the
// fields of ts, described by rs, other than labels.
func endSeries(b []byte, start, at, room int, ts []byte, rs RawSeries) ([]byte, RawSeries, error) {
	ls := len(b) - at
	rs.Hash = hashCanonical(b[at:])
	if rs.labels > 0 {
		// Its labels lead (see RawSeries.labels): the rest is copied whole.
		b = append(b, ts[rs.labels:]...)
	} else {
		for f, err := range fields(ts) {
			if err != nil {
				return b[:start], rs, err
			}
			if f.num != fieldLabels {
				b = append(b, f.whole...)
			}
		}
	}
	rs.labels = uint32(ls)
	n := len(b) - at
	b = closeField(b, at, room)
	rs.Span = Span{Off: uint32(len(b) - n), Len: uint32(n)}
	return b, rs, nil
}
