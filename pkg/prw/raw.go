package prw

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/encoding/protowire"
)

// RawV1 is a request in the form (see AppendSeries), in pooled buffers. Only
// Msg and Compressed hold pointers: the garbage collector skips the series.
type RawV1 struct {
	// Compressed, if set, is the snappy body the client sent, which the form
	// holds all of: Msg compressed if AsSent (1.0), else the 2.0 message
	// the form was decoded from, every series of it accepted, its labels in
	// order.
	Compressed []byte
	// Msg is the prometheus.WriteRequest.
	Msg []byte
	// Series and Metadata are the request's TimeSeries and MetricMetadata
	// messages, in order.
	Series   []RawSeries
	Metadata []Span
	// Samples, Histograms and Exemplars are the request's totals.
	Samples, Histograms, Exemplars int
	// Ext reports whether a series has the form's 2.0 extensions.
	Ext bool
	// AsSent reports whether Msg is the message as the client sent it.
	AsSent bool
}

// Span is a message inside RawV1.Msg: Msg[Off:Off+Len].
type Span struct {
	Off, Len uint32
}

// Bytes returns s's bytes in msg.
func (s Span) Bytes(msg []byte) []byte { return msg[s.Off : s.Off+s.Len : s.Off+s.Len] }

// RawSeries is one TimeSeries message of a RawV1.
type RawSeries struct {
	Span
	// Hash is the shard hash of the series' labels (see HashSeries), or 0
	// until ShardHash computes it: the decoders leave it to the first that
	// needs it, as a request sent whole by one shard never does.
	Hash uint64
	// labels is the length of the series' labels fields if they lead it,
	// canonical (ShardHash hashes them), and no other follows; else 0, and
	// Hash is set.
	labels uint32
	// Samples, Histograms and Exemplars count the series' points.
	Samples, Histograms, Exemplars uint32
	// Ext reports whether the series has the form's 2.0 extensions; Meta,
	// whether one of them is its metadata.
	Ext, Meta bool
}

// ShardHash returns Hash, computed first if it is not yet; msg is the
// message rs spans.
func (rs *RawSeries) ShardHash(msg []byte) uint64 {
	if rs.Hash == 0 {
		rs.Hash = hashCanonical(rs.Bytes(msg)[:rs.labels])
	}
	return rs.Hash
}

// Points returns the series' samples, histograms and exemplars.
func (s *RawSeries) Points() int { return int(s.Samples + s.Histograms + s.Exemplars) }

// Append adds rs, whose message is in r.Msg, to r's series and totals.
func (r *RawV1) Append(rs RawSeries) {
	r.Series = append(r.Series, rs)
	r.Samples += int(rs.Samples)
	r.Histograms += int(rs.Histograms)
	r.Exemplars += int(rs.Exemplars)
	r.Ext = r.Ext || rs.Ext
}

// CopyMetadata appends the MetricMetadata fields of src to r.
func (r *RawV1) CopyMetadata(src *RawV1) {
	for _, sp := range src.Metadata {
		var md Span
		r.Msg, md = AppendField(r.Msg, 3, sp.Bytes(src.Msg))
		r.Metadata = append(r.Metadata, md)
	}
}

// AppendFamily appends 1.0 family metadata, of metric type typ, to r as a
// MetricMetadata field of its WriteRequest.
func AppendFamily[S string | []byte](r *RawV1, name S, typ int64, help, unit S) {
	start := len(r.Msg)
	r.Msg = appendMetadataField(r.Msg, 3, typ, name, help, unit)
	// Its span: after the tag and the length just written.
	_, _, k := protowire.ConsumeTag(r.Msg[start:])
	_, m := protowire.ConsumeVarint(r.Msg[start+k:])
	r.Metadata = append(r.Metadata, Span{Off: uint32(start + k + m), Len: uint32(len(r.Msg) - start - k - m)})
}

// HashSeries returns the shard hash of the labels of the TimeSeries ts,
// as ordered there, however encoded: that of their canonical AppendLabels
// bytes. scratch is reused and returned.
func HashSeries(ts, scratch []byte) (uint64, []byte, error) {
	b := scratch[:0]
	err := RangeRawLabels(ts, func(name, value []byte) bool { b = AppendLabel(b, name, value); return true })
	return hashCanonical(b), b, err
}

// hashCanonical is the one hash of series here. Series hashes never leave
// the process, so it is hash/maphash (AES-based where the CPU has it),
// twice xxhash's speed on labels of a hundred bytes, seeded at start.
func hashCanonical(b []byte) uint64 { return maphash.Bytes(hashSeed, b) }

var hashSeed = maphash.MakeSeed()

// AppendLabels appends ls to b as canonical TimeSeries labels fields.
func AppendLabels(b []byte, ls labels.Labels) []byte {
	ls.Range(func(l labels.Label) { b = AppendLabel(b, l.Name, l.Value) })
	return b
}

// AppendLabel appends the label of name and value to b as a canonical
// TimeSeries labels field, as AppendLabels writes it.
func AppendLabel[S string | []byte](b []byte, name, value S) []byte {
	if n, v := len(name), len(value); n < 0x80 && v < 0x80 && n+v < 0x80-4 {
		// The common case, every length one byte, written directly.
		l := 0
		if n > 0 {
			l += 2 + n
		}
		if v > 0 {
			l += 2 + v
		}
		at := len(b)
		b = slices.Grow(b, 2+l)[:at+2+l]
		b[at], b[at+1] = 0x0a, byte(l)
		p := at + 2
		if n > 0 {
			b[p], b[p+1] = 0x0a, byte(n)
			p += 2 + copy(b[p+2:], name)
		}
		if v > 0 {
			b[p], b[p+1] = 0x12, byte(v)
			copy(b[p+2:], value)
		}
		return b
	}
	b, at := openField(b, fieldLabels, 1)
	return closeField(appendStringField(appendStringField(b, 1, name), 2, value), at, 1)
}

// SmallLabel reads the labels field at the start of b if it is canonical,
// with a non-empty name and one-byte lengths (every byte outside name and
// value is ASCII). Otherwise ok is false: read it the general way.
func SmallLabel(b []byte) (n int, name, value []byte, ok bool) {
	if len(b) < 4 {
		return 0, nil, nil, false
	}
	// Its first four bytes, read at once: the labels field's tag (0x0a)
	// and length, the name's tag (0x0a) and length, each length one byte
	// (under 0x80), the name's not 0.
	if v := binary.LittleEndian.Uint32(b); v&0x80ff80ff != 0x000a000a || v < 1<<24 {
		return 0, nil, nil, false
	}
	l, ln := int(b[1]), int(b[3])
	if len(b) < 2+l || l < 2+ln {
		return 0, nil, nil, false
	}
	name = b[4 : 4+ln]
	rest := b[4+ln : 2+l]
	if len(rest) == 0 {
		return 2 + l, name, nil, true
	}
	// The value's tag and length, which is the rest's (so under 0x80, as
	// the field's is, and not 0).
	if len(rest) < 3 || rest[0] != 0x12 || int(rest[1]) != len(rest)-2 {
		return 0, nil, nil, false
	}
	return 2 + l, name, rest[2:], true
}

// SeriesPoints counts the points of the TimeSeries ts, in the form.
func SeriesPoints(ts []byte) (RawSeries, error) {
	var rs RawSeries
	for f, err := range fields(ts) {
		if err != nil {
			return rs, err
		}
		rs.count(pointKind(f))
	}
	return rs, nil
}

// RangeRawLabels calls fn for each label of the TimeSeries ts, in order,
// until fn returns false.
func RangeRawLabels(ts []byte, fn func(name, value []byte) bool) error {
	var f field
	for len(ts) > 0 {
		if n, name, value, ok := SmallLabel(ts); ok {
			if !fn(name, value) {
				return nil
			}
			ts = ts[n:]
			continue
		}
		var err error
		if ts, err = f.read(ts); err != nil {
			return err
		}
		if f.num != fieldLabels || f.typ != protowire.BytesType {
			continue
		}
		name, value, ok := labelSchema.check(f.v)
		if !ok {
			return ErrMalformed
		}
		if !fn(name, value) {
			return nil
		}
	}
	return nil
}

// SeriesFunc decides what becomes of a series of the form, ts: dropped
// (keep false), kept as it is (labels nil), or given labels, its new
// labels fields as AppendLabels writes them, which are used before the
// next call. It must not keep ts.
type SeriesFunc func(ts []byte) (labels []byte, keep bool, err error)

// Rewrite passes each series of raw to fn; one dropped, or left without
// labels, counts its points dropped. It returns raw if nothing changed,
// else a new one (metadata, no Compressed): dst, if not nil, reset and
// written over, its memory reused.
func Rewrite(raw *RawV1, fn SeriesFunc, dst *RawV1) (out *RawV1, dropped int, err error) {
	out = reuse(dst)
	var b []byte
	changed := false
	for i, rs := range raw.Series {
		ts := rs.Bytes(raw.Msg)
		body, keep, err := fn(ts)
		if err != nil {
			return raw, 0, err
		}
		keep = keep && (body == nil || len(body) > 0)
		if keep && body == nil && !changed {
			continue
		}
		if !changed {
			// The first change: the series before it are copied as they are.
			changed = true
			b = slices.Grow(out.Msg, len(raw.Msg))
			out.Series = slices.Grow(out.Series, len(raw.Series))
			for _, prev := range raw.Series[:i] {
				b, prev.Span = AppendField(b, fieldLabels, prev.Bytes(raw.Msg))
				out.Append(prev)
			}
		}
		cur := rs
		switch {
		case !keep:
			dropped += rs.Points()
			continue
		case body == nil:
			b, cur.Span = AppendField(b, fieldLabels, ts)
		default:
			if b, cur, err = withLabels(b, ts, rs, body); err != nil {
				return raw, 0, err
			}
		}
		out.Append(cur)
	}
	if !changed {
		return raw, 0, nil
	}
	out.Msg = b
	out.CopyMetadata(raw)
	return out, dropped, nil
}

// reuse returns dst emptied, keeping its memory; a new RawV1 if dst is nil.
func reuse(dst *RawV1) *RawV1 {
	if dst == nil {
		return &RawV1{}
	}
	*dst = RawV1{Msg: dst.Msg[:0], Series: dst.Series[:0], Metadata: dst.Metadata[:0]}
	return dst
}

// Relabel is Rewrite with Relabeler(lb, fn).
func Relabel(raw *RawV1, lb *labels.Builder, fn func(*labels.Builder) bool) (*RawV1, int, error) {
	return Rewrite(raw, Relabeler(lb, fn), nil)
}

// Relabeler returns the SeriesFunc that passes each series' labels through
// fn, which reports whether to keep it, in lb. Not safe for concurrent use.
func Relabeler(lb *labels.Builder, fn func(*labels.Builder) bool) SeriesFunc {
	var (
		sb   labels.ScratchBuilder
		ls   labels.Labels
		body []byte
	)
	return func(ts []byte) ([]byte, bool, error) {
		// The labels are read without a copy, then written into sb's
		// buffer, which the next series reuses: ls, and what fn takes
		// from it, are used up before then. Per series, nothing is
		// allocated unless it changes.
		sb.Reset()
		if err := RangeRawLabels(ts, func(name, value []byte) bool {
			sb.Add(unsafe.String(unsafe.SliceData(name), len(name)), unsafe.String(unsafe.SliceData(value), len(value)))
			return true
		}); err != nil {
			return nil, false, err
		}
		sb.Overwrite(&ls)
		lb.Reset(ls)
		if !fn(lb) {
			return nil, false, nil
		}
		next := lb.Labels()
		if next.IsEmpty() || labels.Equal(ls, next) {
			return nil, !next.IsEmpty(), nil
		}
		body = AppendLabels(body[:0], next)
		return body, true, nil
	}
}

// AddLabels returns raw with the sorted labels ext (Prometheus's external
// labels) added to each series that has none of their name: what Relabel
// returns with a function that sets each one the series has not, without
// making labels of every series. As labels.Builder does, a label of an
// empty value is none, and is left out of a series that changes. It
// returns raw if no series changes, else a new one, written over dst if
// not nil (see Rewrite).
func AddLabels(raw *RawV1, ext labels.Labels, dst *RawV1) (*RawV1, error) {
	m := NewLabelMerger(ext)
	grow := 2 // what a series' length may grow by: its labels' and its own
	for i, name := range m.names {
		grow += 4 + len(name) + len(m.values[i]) + 2
	}
	out := reuse(dst)
	// Sized once: grown by append, the message would be copied over and
	// over.
	b := slices.Grow(out.Msg, len(raw.Msg)+len(raw.Series)*grow)
	out.Series = slices.Grow(out.Series, len(raw.Series))
	changed := false
	for _, rs := range raw.Series {
		ts := rs.Bytes(raw.Msg)
		start := len(b)
		room := protowire.SizeVarint(uint64(len(ts) + grow))
		var at int
		b, at = openField(b, fieldLabels, room)
		var off, late int
		var err error
		if b, off, late, err = m.merge(b, ts, int(rs.labels)); err != nil {
			return raw, err
		}
		cur := rs
		if !m.added {
			b, cur.Span = AppendField(b[:start], fieldLabels, ts)
		} else {
			if late == 0 {
				rs.labels = uint32(off) // only other fields follow: as they are
			}
			if b, cur, err = endSeries(b, start, at, room, ts, rs); err != nil {
				return raw, err
			}
		}
		changed = changed || m.added
		out.Append(cur)
	}
	if !changed {
		return raw, nil
	}
	out.Msg = b
	out.CopyMetadata(raw)
	return out, nil
}

// LabelMerger adds external labels to series as AddLabels does, one
// series' labels at a time: it writes a merge of the series' own, ts's,
// and the sorted external labels names and values. Its own label fields
// that stay as they were are copied in runs, not one by one. Not safe for
// concurrent use.
type LabelMerger struct {
	names, values []string
	ts, b         []byte
	j             int  // the next external label
	run, to       int  // ts[run:to]: label fields of ts to copy
	added         bool // the labels written differ from ts's
}

// merge appends the labels fields of the series ts, merged, to b, and
// returns how far the leading labels that SmallLabel reads go in ts (off)
// and how many labels follow them (late). leading is the length of ts's
// labels fields if they lead it and are canonical (RawSeries.labels), else
// 0: the fields after them are then walked for more.
func (m *LabelMerger) merge(b, ts []byte, leading int) (_ []byte, off, late int, err error) {
	m.b, m.ts, m.j, m.run, m.to, m.added = b, ts, 0, 0, 0, false
	// The leading labels that SmallLabel reads are fields as AppendLabels
	// writes them: copied in runs. Others are read after.
	for n, name, value, ok := SmallLabel(ts); ok; n, name, value, ok = SmallLabel(ts[off:]) {
		m.label(name, value, off, n)
		off += n
	}
	if leading != off || off == 0 { // else no label follows
		err = RangeRawLabels(ts[off:], func(name, value []byte) bool { late++; m.label(name, value, -1, 0); return true })
		if err != nil {
			return b, off, late, err
		}
	}
	return m.end(), off, late, nil
}

// NewLabelMerger returns the LabelMerger of the sorted labels ext.
func NewLabelMerger(ext labels.Labels) LabelMerger {
	var m LabelMerger
	ext.Range(func(l labels.Label) { m.names, m.values = append(m.names, l.Name), append(m.values, l.Value) })
	return m
}

// Merge appends to dst the labels fields, as AppendLabels writes them, of
// the series ts of the form with the external labels it lacks added (a
// label of an empty value left out), and reports whether they differ from
// ts's.
func (m *LabelMerger) Merge(dst, ts []byte) ([]byte, bool, error) {
	out, _, _, err := m.merge(dst, ts, 0)
	return out, m.added, err
}

// label merges the series' label name=value, the field ts[at:at+n] as
// AppendLabels writes it if at >= 0. As labels.Builder does, a label of
// an empty value is none: an external label of its name is added.
func (m *LabelMerger) label(name, value []byte, at, n int) {
	for ; m.j < len(m.names); m.j++ {
		c := compareName(m.names[m.j], name)
		if c > 0 {
			break
		}
		if c < 0 || len(value) == 0 {
			m.add(m.j)
		}
	}
	switch {
	case len(value) == 0: // left out
		m.flush()
		m.added = true
	case at >= 0 && at == m.to: // the run goes on
		m.to += n
	case at >= 0:
		m.flush()
		m.run, m.to = at, at+n
	default:
		m.flush()
		m.b = AppendLabel(m.b, name, value)
	}
}

// compareName compares label names a and b, as strings.Compare; most
// differ in their first byte, which decides without a call to compare.
// (The comparisons below convert b without a copy; strings.Compare would
// not.)
func compareName(a string, b []byte) int {
	if len(a) > 0 && len(b) > 0 && a[0] != b[0] {
		return int(a[0]) - int(b[0])
	}
	switch {
	case a < string(b):
		return -1
	case a == string(b):
		return 0
	}
	return 1
}

// add writes the external label j.
func (m *LabelMerger) add(j int) {
	m.flush()
	m.b, m.added = AppendLabel(m.b, m.names[j], m.values[j]), true
}

// flush copies the run of the series' own label fields.
func (m *LabelMerger) flush() {
	m.b = append(m.b, m.ts[m.run:m.to]...)
	m.run = m.to
}

// end writes the external labels that sort after the series' own, and
// returns b with the series' labels.
func (m *LabelMerger) end() []byte {
	for ; m.j < len(m.names); m.j++ {
		m.add(m.j)
	}
	m.flush()
	return m.b
}
