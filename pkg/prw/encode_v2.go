package prw

import (
	"bytes"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// V2Encoder builds 2.0 requests from series in the form, whose points are
// 2.0's. Its symbols alias the series added, unchanged until AppendRequest.
// Reuse one, with Reset between requests; it is not safe for concurrent use.
type V2Encoder struct {
	refs    map[string]uint32
	symbols []string
	series  []byte // the request's timeseries fields
	body    []byte
	ex      []byte
	lrefs   []uint32
	xrefs   []uint32
	// The labels of the series added last and of this one: a sender's
	// series of one metric and target share most labels, at the same
	// places, and a label equal to the last series' at its place takes
	// its references without two symbol lookups.
	last, cur []encodedLabel
}

type encodedLabel struct {
	name, value []byte
	refs        [2]uint32
}

// NewV2Encoder returns an empty encoder.
func NewV2Encoder() *V2Encoder {
	e := &V2Encoder{refs: map[string]uint32{}}
	e.Reset()
	return e
}

// Reset empties the encoder for the next request.
func (e *V2Encoder) Reset() {
	clear(e.refs)
	clear(e.symbols)
	e.symbols = append(e.symbols[:0], "")
	e.refs[""] = 0
	e.series = e.series[:0]
	clear(e.last[:cap(e.last)]) // they alias the series added, as symbols do
	clear(e.cur[:cap(e.cur)])
	e.last = e.last[:0]
}

func (e *V2Encoder) ref(s []byte) uint32 {
	if r, ok := e.refs[string(s)]; ok {
		return r
	}
	str := unsafe.String(unsafe.SliceData(s), len(s))
	r := uint32(len(e.symbols))
	e.symbols = append(e.symbols, str)
	e.refs[str] = r
	return r
}

// Add adds the series ts, and its metadata if withMeta, reporting if any.
func (e *V2Encoder) Add(ts []byte, withMeta bool) (metadata bool, err error) {
	refs, cur := e.lrefs[:0], e.cur[:0]
	add := func(name, value []byte) bool {
		l := encodedLabel{name: name, value: value}
		if j := len(cur); j < len(e.last) && bytes.Equal(e.last[j].value, value) && bytes.Equal(e.last[j].name, name) {
			l.refs = e.last[j].refs
		} else {
			l.refs = [2]uint32{e.ref(name), e.ref(value)}
		}
		cur = append(cur, l)
		refs = append(refs, l.refs[0], l.refs[1])
		return true
	}
	// The leading labels are read once, and the walk of the other fields
	// starts after them.
	off := 0
	for n, name, value, ok := SmallLabel(ts); ok; n, name, value, ok = SmallLabel(ts[off:]) {
		add(name, value)
		off += n
	}
	if err := RangeRawLabels(ts[off:], add); err != nil {
		return false, err
	}
	e.lrefs, e.last, e.cur = refs, cur, e.last
	body := appendRefs(e.body[:0], 1, refs)
	for f, err := range fields(ts[off:]) {
		if err != nil {
			return false, err
		}
		if f.typ != protowire.BytesType {
			continue
		}
		switch f.num {
		case fieldSamples: // 2.0 field 2 too
			body = append(body, f.whole...)
		case fieldHistograms: // 2.0 field 3
			body, _ = AppendField(body, 3, f.v)
		case fieldExemplars: // 2.0 field 4
			if body, err = e.appendExemplar(body, f.v); err != nil {
				return false, err
			}
		case fieldMetadata: // 2.0 field 5
			if !withMeta {
				continue
			}
			typ, help, unit, err := readMetadata(f.v)
			if err != nil {
				return false, err
			}
			var at int
			body, at = openField(body, 5, 1)
			body = appendVarintField(appendVarintField(body, 1, int64(typ)), 3, int64(e.ref(help)))
			body = closeField(appendVarintField(body, 4, int64(e.ref(unit))), at, 1)
			metadata = true
		}
	}
	e.body = body
	e.series, _ = AppendField(e.series, 5, body)
	return metadata, nil
}

// appendExemplar appends a 1.0 Exemplar as 2.0's: labels become references.
func (e *V2Encoder) appendExemplar(b, msg []byte) ([]byte, error) {
	refs := e.xrefs[:0]
	rest := e.ex[:0]
	for f, err := range fields(msg) {
		if err != nil {
			return b, err
		}
		if f.num == 1 && f.typ == protowire.BytesType {
			name, value, ok := labelSchema.check(f.v)
			if !ok {
				return b, ErrMalformed
			}
			refs = append(refs, e.ref(name), e.ref(value))
			continue
		}
		rest = append(rest, f.whole...)
	}
	e.xrefs, e.ex = refs, rest
	b, at := openField(b, 4, 1)
	return closeField(append(appendRefs(b, 1, refs), rest...), at, 1), nil
}

// appendRefs appends refs as a packed repeated uint32 field.
func appendRefs(b []byte, num protowire.Number, refs []uint32) []byte {
	if len(refs) == 0 {
		return b
	}
	b, at := openField(b, num, 1)
	for _, r := range refs {
		b = protowire.AppendVarint(b, uint64(r))
	}
	return closeField(b, at, 1)
}

// AppendRequest appends the 2.0 Request of the series added since Reset.
func (e *V2Encoder) AppendRequest(b []byte) []byte {
	for _, s := range e.symbols {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	return append(b, e.series...)
}
