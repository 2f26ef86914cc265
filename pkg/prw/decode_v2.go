package prw

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodeV2 reads an io.prometheus.write.v2.Request into d, every valid
// series in the form. It allocates nothing once its buffers grew.
func decodeV2(d *Decoded, msg []byte) error {
	// Symbols are shared between series: each is checked once.
	syms, symOK, series := d.syms[:0], d.symOK[:0], d.series[:0]
	var f field
	for rest := msg; len(rest) > 0; {
		var err error
		if rest, err = f.read(rest); err != nil {
			return err
		}
		if (f.num == 4 || f.num == 5) && f.typ != protowire.BytesType {
			return fmt.Errorf("wrong wire type %d for field %d", f.typ, f.num)
		}
		switch f.num {
		case 4: // symbols
			syms = append(syms, f.v)
			symOK = append(symOK, utf8.Valid(f.v))
		case 5: // timeseries
			series = append(series, f.v)
		}
	}
	d.syms, d.symOK, d.series = syms, symOK, series
	for i := range d.knownNames { // of the last request's symbols
		d.knownNames[i].names = d.knownNames[i].names[:0]
	}
	d.lastNames = nil
	d.metaBytes, d.metaFields = nil, d.metaFields[:0]
	d.written = zeroed(d.written, len(syms))
	if d.plain {
		d.families.byName = zeroed(d.families.byName, len(syms))
	} else {
		d.metaAt = zeroed(d.metaAt, len(syms))
	}
	b := d.form[:0]
	for i, ts := range series {
		var err error
		if b, err = d.seriesV2(b, i, ts); err != nil {
			return fmt.Errorf("timeseries %d: %w", i, err)
		}
	}
	d.raw.Msg = b
	for _, p := range d.families.pending {
		AppendFamily(&d.raw, p.name, int64(p.md.typ), d.syms[p.md.help], d.syms[p.md.unit])
	}
	d.form = d.raw.Msg
	return nil
}

// zeroed returns s with n zero elements, in its own array if it has room:
// state by symbol, made anew for each request.
func zeroed[T any](s []T, n int) []T {
	s = slices.Grow(s[:0], n)[:n]
	clear(s)
	return s
}

// plainFamilies are the 1.0 family metadata of a 2.0 request decoded as
// 1.0 data: one entry per family, in the order its series first came.
type plainFamilies struct {
	run     FamilyRun
	seen    map[uint64]int // a name's hash -> its index in pending
	pending []pendingFamily
	// byName is, by the symbol of a metric name, the family it was last
	// found in, with the type of that series: the family of a name and
	// type, found again without hashing when families interleave, as in
	// a request of a sender's many shards.
	byName []familyOf
}

// familyOf is a family of plainFamilies.pending: its index+1, 0 for none,
// and the metric type that named it.
type familyOf struct {
	idx uint32
	typ uint32
}

type pendingFamily struct {
	name []byte
	md   metadataV2
}

// addFamily notes the family of a series, of metric name symbol name
// and 2.0 metadata md, read from the message mdBytes.
func (d *Decoded) addFamily(name uint32, mdBytes []byte, md metadataV2) {
	f := &d.families
	if !f.run.Next(d.syms[name], mdBytes) {
		return
	}
	typ := uint32(min(md.typ, math.MaxUint32))
	by := &f.byName[name]
	if by.idx > 0 && by.typ == typ {
		return // the family of this name and type, found before
	}
	family := FamilyName(d.syms[name], MetricType(md.typ))
	if f.seen == nil {
		f.seen = map[uint64]int{}
	}
	// By hash, so that nothing is allocated per family: two names of one
	// hash would both be written, each again after the other.
	h := hashCanonical(family)
	i, ok := f.seen[h]
	if !ok || !bytes.Equal(f.pending[i].name, family) {
		i = len(f.pending)
		f.seen[h] = i
		f.pending = append(f.pending, pendingFamily{name: family, md: md})
	}
	*by = familyOf{idx: uint32(i + 1), typ: typ}
}

// metadataV2 is a series' 2.0 metadata: type and symbol references.
type metadataV2 struct{ typ, help, unit uint64 }

// seriesV2 appends the TimeSeries ts, series number idx, to b in the form,
// labels resolved and sorted, or counts it refused.
func (d *Decoded) seriesV2(b []byte, idx int, ts []byte) ([]byte, error) {
	refs := d.refs[:0]
	for i := range d.points {
		d.points[i] = d.points[i][:0]
	}
	var md metadataV2
	var mdBytes []byte
	// The fields are read with field.read directly, not through fields:
	// this loop runs once per field of every series.
	var f field
	for rest := ts; len(rest) > 0; {
		var err error
		if rest, err = f.read(rest); err != nil {
			return b, err
		}
		switch {
		case f.num == 1:
			if refs, err = readRefs(refs, f); err != nil {
				return b, err
			}
		case f.num >= 2 && f.num <= 4 && f.typ == protowire.BytesType:
			d.points[f.num-2] = append(d.points[f.num-2], f.v)
		case f.num == 5 && f.typ == protowire.BytesType:
			mdBytes = f.v
			// A sender's series of one metric share their metadata's
			// bytes: those read from none before are read once.
			if md == (metadataV2{}) && d.metaBytes != nil && bytes.Equal(f.v, d.metaBytes) {
				md = d.meta
				break
			}
			fresh := md == (metadataV2{})
			if err := readMetadataV2(f.v, &md); err != nil {
				return b, err
			}
			if fresh {
				d.metaBytes, d.meta = f.v, md
			}
		case f.num >= 2 && f.num <= 5:
			return b, fmt.Errorf("wrong wire type %d for field %d", f.typ, f.num)
		}
	}
	d.refs = refs
	samples, histograms, exemplars := d.points[0], d.points[1], d.points[2]
	nsyms := len(d.syms)
	nameAt, same := d.sameNames(refs, d.lastNames)
	if !same {
		h, ok := d.labelRefs(refs)
		if !ok {
			if !refsValid(refs, nsyms) {
				return b, d.refuse(idx, len(ts), refs, invalidLabelRefs, fmt.Sprintf("%d label refs, odd or outside the %d symbols", len(refs), nsyms))
			}
			for j, r := range refs {
				if !d.symOK[r] {
					what := [2]string{"label name ", "label value "}[j%2]
					return b, d.refuse(idx, len(ts), refs, invalidUTF8, what+strconv.Quote(string(d.syms[r]))+" is not valid UTF-8")
				}
			}
		}
		d.lastNames = d.known(h)
		if nameAt, same = d.sameNames(refs, d.lastNames); !same {
			reason, detail, at, ok := d.checkNames(refs)
			if !ok {
				return b, d.refuse(idx, len(ts), refs, reason, detail)
			}
			nameAt = at
		}
	}
	if md.help >= uint64(nsyms) || md.unit >= uint64(nsyms) {
		return b, d.refuse(idx, len(ts), refs, invalidMetadataRefs, fmt.Sprintf("metadata help ref %d or unit ref %d outside the %d symbols", md.help, md.unit, nsyms))
	}
	d.exs = d.exs[:0] // the exemplars in the form
	for j, ex := range exemplars {
		xrefs, err := exemplarRefs(d.xrefs[:0], ex)
		if err != nil {
			return b, err
		}
		d.xrefs = xrefs
		if !refsValid(xrefs, nsyms) {
			return b, d.refuse(idx, len(ts), refs, invalidExemplarLabelRefs, fmt.Sprintf("exemplar %d: %d label refs, odd or outside the %d symbols", j, len(xrefs), nsyms))
		}
		d.exs = d.appendExemplar(d.exs, ex, xrefs)
	}
	// The 2.0 draft after rc.4 allows series with only exemplars, as
	// Prometheus sends, or only metadata (prometheus/docs#3085,
	// prometheus/prometheus#17857).
	hasMeta := md.typ != 0 || len(d.syms[md.help]) > 0 || len(d.syms[md.unit]) > 0
	if len(samples) == 0 && len(histograms) == 0 && len(exemplars) == 0 && !hasMeta {
		return b, d.refuse(idx, len(ts), refs, invalidNoSamples, "no samples, histograms, exemplars or metadata")
	}
	rs := RawSeries{Samples: uint32(len(samples)), Histograms: uint32(len(histograms)), Exemplars: uint32(len(exemplars))}
	for _, h := range histograms {
		d.hist.Reset()
		if err := d.hist.Unmarshal(h); err != nil {
			return b, fmt.Errorf("histogram: %w", err)
		}
		if msg := ValidateHistogram(&d.hist); msg != "" {
			return b, d.refuse(idx, len(ts), refs, invalidHistogram, fmt.Sprintf("histogram at %d: %s", d.hist.Timestamp, msg))
		}
		rs.Ext = rs.Ext || d.hist.StartTimestamp != 0
	}

	// The series in the form, written in place.
	from := len(b)
	b, at := openField(b, fieldLabels, 2)
	b = d.writeLabels(b, refs)
	rs.labels = uint32(len(b) - at) // hashed when a request is cut (ShardHash)
	for _, smp := range samples {
		start, ext, err := checkSampleV2(smp)
		if err != nil {
			return b, err
		}
		if start > 0 && d.plain {
			smp = smp[:start] // 1.0's part, which the start fields follow
		} else if start < 0 && d.plain {
			b = appendWithout(b, fieldSamples, smp, fieldSampleStart)
			continue
		}
		rs.Ext = rs.Ext || ext
		b, _ = AppendField(b, fieldSamples, smp)
	}
	b = append(b, d.exs...)
	for _, h := range histograms {
		if d.plain {
			b = appendWithout(b, fieldHistograms, h, fieldHistogramStart)
		} else {
			b, _ = AppendField(b, fieldHistograms, h)
		}
	}
	if d.plain {
		// 1.0 data: the start timestamps were left out above (and rs.Ext
		// stays false), the metadata is its family's, once per request.
		if hasMeta {
			d.addFamily(refs[2*nameAt+1], mdBytes, md)
		}
		if rs.Points() == 0 {
			for j := 1; j < len(refs); j += 2 { // written for a series not kept
				d.written[refs[j]] = labelAt{}
			}
			return b[:from], nil // metadata only: a family metadata entry in 1.0
		}
		rs.Ext = false
	} else if hasMeta {
		b = d.appendMetadata(b, md)
		rs.Ext, rs.Meta = true, true
	}
	n := len(b) - at
	b = closeField(b, at, 2)
	rs.Span = Span{Off: uint32(len(b) - n), Len: uint32(n)}
	if moved := len(b) - n - at; moved != 0 {
		d.movedLabels(refs, moved)
	}
	d.raw.Append(rs)
	return b, nil
}

// refuse counts series idx, of size bytes and label references refs, as
// refused; nil, as a refused series is not an error of the request. A
// method, not a closure of seriesV2: one that captured b would keep it
// out of registers in seriesV2, which every series takes.
func (d *Decoded) refuse(idx, size int, refs []uint32, reason InvalidReason, detail string) error {
	var ls labels.Labels
	if refsValid(refs, len(d.syms)) {
		ls = d.refsLabels(refs)
	}
	d.Invalid.add(reason, idx, size, ls, detail)
	return nil
}

// metaAt is where a metadata field of the form, found by its help symbol,
// was written in Decoded.metaFields, and the type and unit it is of; n 0
// for none.
type metaAt struct{ off, n, typ, unit uint32 }

// appendMetadata appends the metadata md of a series to b as the form's
// metadata field. A sender's series of one metric share their metadata,
// and the series of a family come together or, from several of a sender's
// shards, interleaved: each is written once in a request, and copied after.
func (d *Decoded) appendMetadata(b []byte, md metadataV2) []byte {
	if md.typ > math.MaxUint32 { // not a type (0 to 7): written as it is
		return appendMetadataField(b, fieldMetadata, int64(md.typ), nil, d.syms[md.help], d.syms[md.unit])
	}
	at := &d.metaAt[md.help] // help and unit are symbols: checked before
	if at.n == 0 || at.typ != uint32(md.typ) || at.unit != uint32(md.unit) {
		m := len(d.metaFields)
		d.metaFields = appendMetadataField(d.metaFields, fieldMetadata, int64(md.typ), nil, d.syms[md.help], d.syms[md.unit])
		*at = metaAt{off: uint32(m), n: uint32(len(d.metaFields) - m), typ: uint32(md.typ), unit: uint32(md.unit)}
	}
	return append(b, d.metaFields[at.off:at.off+at.n]...)
}

// labelAt is where the entry of a label was last written in the form of
// the request, and by which series. It is found by its value's symbol,
// checked by its name's.
type labelAt struct{ name, off, n, series uint32 }

// writeLabels appends the label entries of refs (valid, sorted) to b, the
// form. A label written before in the request is copied from where it was
// last written, and labels written together there are copied in one piece:
// a sender's series share most of their labels with those before them.
func (d *Decoded) writeLabels(b []byte, refs []uint32) []byte {
	from, to := 0, 0 // a run of entries to copy: b[from:to]
	next := uint32(len(d.raw.Series))
	for j := 0; j < len(refs); j += 2 {
		w := &d.written[refs[j+1]]
		if w.n > 0 && w.name == refs[j] {
			if int(w.off) != to {
				b = append(b, b[from:to]...)
				from, to = int(w.off), int(w.off)
			}
			w.off, w.series = uint32(len(b)+to-from), next // its copy's
			to += int(w.n)
			continue
		}
		b = append(b, b[from:to]...)
		from, to = 0, 0
		off := len(b)
		b = AppendLabel(b, d.syms[refs[j]], d.syms[refs[j+1]])
		*w = labelAt{name: refs[j], off: uint32(off), n: uint32(len(b) - off), series: next}
	}
	return append(b, b[from:to]...)
}

// movedLabels notes that the series just written, of labels refs, moved
// by n bytes as it was closed.
func (d *Decoded) movedLabels(refs []uint32, n int) {
	next := uint32(len(d.raw.Series))
	for j := 1; j < len(refs); j += 2 {
		if w := &d.written[refs[j]]; w.series == next { // once per entry
			w.off, w.series = uint32(int(w.off)+n), math.MaxUint32
		}
	}
}

func comparePairs(a, b labelPair) int { return bytes.Compare(a.name, b.name) }

// knownNames is a label name sequence that checkNames passed, and the
// index of __name__ in it.
type knownNames struct {
	names  []uint32
	nameAt int
}

// labelRefs reports whether the label references refs are pairs of
// symbols of valid UTF-8, and returns the hash of their names that
// d.knownNames is looked up by: one pass over the references of a series
// whose names are not those of the series before.
func (d *Decoded) labelRefs(refs []uint32) (h uint32, ok bool) {
	h, ok = uint32(len(refs)), len(refs)%2 == 0
	syms := d.symOK
	for j := 0; j+1 < len(refs); j += 2 {
		n, v := refs[j], refs[j+1]
		if int(n) >= len(syms) || int(v) >= len(syms) || !syms[n] || !syms[v] {
			return h, false
		}
		h = h*31 + n
	}
	return h, ok
}

// known returns the slot of d.knownNames for label names of hash h (see
// labelRefs): a sender's series of one metric share them, in order, and a
// request holds a few such runs, interleaved.
func (d *Decoded) known(h uint32) *knownNames {
	return &d.knownNames[h%uint32(len(d.knownNames))]
}

// sameNames reports whether refs name the labels of a series checkNames
// passed, those of k, in its order, and which pair is __name__. They are
// then sorted, distinct and not empty, and validatePairs would pass refs
// too if their values are symbols of valid UTF-8 and __name__'s is not
// empty, which it checks as well: a series of the same names as the one
// before, as most are, is checked in this one pass.
func (d *Decoded) sameNames(refs []uint32, k *knownNames) (nameAt int, ok bool) {
	if k == nil || len(k.names) == 0 || len(refs) != 2*len(k.names) {
		return 0, false
	}
	syms := d.symOK
	for j, r := range k.names {
		if v := refs[2*j+1]; refs[2*j] != r || int(v) >= len(syms) || !syms[v] {
			return 0, false
		}
	}
	return k.nameAt, len(d.syms[refs[2*k.nameAt+1]]) > 0
}

// checkNames sorts the label references refs by name if they are not
// (noting it in Sorted), and validates the labels, as validatePairs does.
// It remembers the names of valid ones for sameNames, and returns which
// pair is __name__.
func (d *Decoded) checkNames(refs []uint32) (reason InvalidReason, detail string, nameAt int, ok bool) {
	byName := func(a, b [2]uint32) int { return bytes.Compare(d.syms[a[0]], d.syms[b[0]]) }
	order := d.order[:0]
	for j := 0; j < len(refs); j += 2 {
		order = append(order, [2]uint32{refs[j], refs[j+1]})
	}
	if !slices.IsSortedFunc(order, byName) {
		slices.SortStableFunc(order, byName)
		d.Sorted = true
	}
	pairs := d.pairs[:0]
	for j, p := range order {
		refs[2*j], refs[2*j+1] = p[0], p[1]
		pairs = append(pairs, labelPair{name: d.syms[p[0]], value: d.syms[p[1]]})
		if string(d.syms[p[0]]) == labels.MetricName {
			nameAt = j
		}
	}
	d.order, d.pairs = order, pairs
	if reason, detail, ok = validatePairs(pairs, false); ok {
		h, _ := d.labelRefs(refs) // sorted now
		k := d.known(h)
		k.names, k.nameAt = k.names[:0], nameAt
		for j := 0; j < len(refs); j += 2 {
			k.names = append(k.names, refs[j])
		}
	}
	return reason, detail, nameAt, ok
}

// refsLabels returns the labels refs name, sorted, for messages.
func (d *Decoded) refsLabels(refs []uint32) labels.Labels {
	var sb labels.ScratchBuilder
	for j := 0; j+1 < len(refs); j += 2 {
		sb.Add(string(d.syms[refs[j]]), string(d.syms[refs[j+1]]))
	}
	sb.Sort()
	return sb.Labels()
}

// readRefs appends the references of a labels_refs field, packed or not.
func readRefs(refs []uint32, f field) ([]uint32, error) {
	switch f.typ {
	case protowire.VarintType:
		return append(refs, uint32(f.u)), nil
	case protowire.BytesType:
		// Each reference takes a byte at least: refs grows once, and
		// they are stored, not appended.
		n, p := len(refs), f.v
		refs = slices.Grow(refs, len(p))[:n+len(p)]
		for ; len(p) > 0; n++ {
			if p[0] < 0x80 { // the first 128 symbols
				refs[n], p = uint32(p[0]), p[1:]
				continue
			}
			if len(p) > 1 && p[1] < 0x80 { // up to 16,384: most of the rest
				refs[n], p = uint32(p[0]&0x7f)|uint32(p[1])<<7, p[2:]
				continue
			}
			v, k := protowire.ConsumeVarint(p)
			if k < 0 {
				return refs[:n], fmt.Errorf("labels_refs: %w", protowire.ParseError(k))
			}
			refs[n], p = uint32(v), p[k:]
		}
		return refs[:n], nil
	}
	return refs, fmt.Errorf("wrong wire type %d for labels_refs", f.typ)
}

// readMetadataV2 reads a 2.0 Metadata message into md, merging repeated
// ones as protobuf does. Every series of a request whose families
// interleave has metadata other than the last one's (see seriesV2): its
// type, help and unit, each a one-byte tag and a varint, are read here,
// any other field with field.read.
func readMetadataV2(msg []byte, md *metadataV2) error {
	var f field
	for len(msg) > 0 {
		num, v, n := protowire.Number(0), uint64(0), -1
		if t := msg[0]; t >= 8 && t < 0x80 && t&7 == byte(protowire.VarintType) {
			if v, n = protowire.ConsumeVarint(msg[1:]); n > 0 {
				num, n = protowire.Number(t>>3), n+1
			}
		}
		if n < 0 {
			rest, err := f.read(msg)
			if err != nil {
				return err
			}
			if (f.num == 1 || f.num == 3 || f.num == 4) && f.typ != protowire.VarintType {
				return fmt.Errorf("metadata: wrong wire type %d for field %d", f.typ, f.num)
			}
			num, v, n = f.num, f.u, len(msg)-len(rest)
		}
		msg = msg[n:]
		switch num {
		case 1:
			md.typ = v
		case 3:
			md.help = v
		case 4:
			md.unit = v
		}
	}
	return nil
}

// exemplarRefs checks a 2.0 Exemplar and appends its label references.
func exemplarRefs(refs []uint32, msg []byte) ([]uint32, error) {
	for f, err := range fields(msg) {
		if err != nil {
			return refs, err
		}
		switch {
		case f.num == 1:
			if refs, err = readRefs(refs, f); err != nil {
				return refs, err
			}
		case (f.num == 2 && f.typ != protowire.Fixed64Type) || (f.num == 3 && f.typ != protowire.VarintType):
			return refs, fmt.Errorf("exemplar: wrong wire type %d for field %d", f.typ, f.num)
		}
	}
	return refs, nil
}

// checkSampleV2 checks a 2.0 Sample, and reports whether it has a start
// time (ext) and where its start fields are: 0 none; where they begin if
// they end it and are not all of it (as encoders write them); else -1. It
// is a schema check written out, as every sample goes through it.
func checkSampleV2(msg []byte) (start int, ext bool, err error) {
	// As encoders write it: the value, a timestamp, maybe a start time.
	if len(msg) > 10 && msg[0] == 0x09 && msg[9] == 0x10 {
		if _, k := protowire.ConsumeVarint(msg[10:]); k > 0 {
			off := 10 + k
			if off == len(msg) {
				return 0, false, nil
			}
			if v, m := protowire.ConsumeVarint(msg[min(off+1, len(msg)):]); msg[off] == 0x18 && m > 0 && off+1+m == len(msg) {
				return off, v != 0, nil
			}
		}
	}
	return checkSampleFields(msg)
}

// checkSampleFields is checkSampleV2 for a sample in any layout.
func checkSampleFields(msg []byte) (start int, ext bool, err error) {
	for off := 0; off < len(msg); {
		num, typ, k := protowire.ConsumeTag(msg[off:])
		if k < 0 {
			return 0, false, ErrMalformed
		}
		var m int
		var v uint64
		switch {
		case num == 1 && typ != protowire.Fixed64Type, (num == 2 || num == 3) && typ != protowire.VarintType:
			return 0, false, fmt.Errorf("sample: wrong wire type %d for field %d", typ, num)
		case num == 2 || num == 3:
			v, m = protowire.ConsumeVarint(msg[off+k:])
		default:
			m = protowire.ConsumeFieldValue(num, typ, msg[off+k:])
		}
		if m < 0 {
			return 0, false, ErrMalformed
		}
		switch {
		case num == 3 && (start == 0 && off > 0):
			start = off
		case (num == 3 && off == 0) || (num != 3 && start > 0):
			start = -1 // not a prefix: written without them
		}
		ext = ext || (num == 3 && v != 0)
		off += k + m
	}
	return start, ext, nil
}

// appendExemplar appends the 2.0 Exemplar msg, whose label references
// refs are valid, as a 1.0 one: labels resolved and sorted, value and
// timestamp (the same fields) as they are.
func (d *Decoded) appendExemplar(b, msg []byte, refs []uint32) []byte {
	pairs := d.pairs[len(d.pairs):]
	for j := 0; j < len(refs); j += 2 {
		pairs = append(pairs, labelPair{name: d.syms[refs[j]], value: d.syms[refs[j+1]]})
	}
	slices.SortStableFunc(pairs, comparePairs)
	ex := d.ex[:0]
	for _, p := range pairs {
		ex = AppendLabel(ex, p.name, p.value)
	}
	for f := range fields(msg) {
		if f.num != 1 {
			ex = append(ex, f.whole...)
		}
	}
	d.ex = ex
	b, _ = AppendField(b, fieldExemplars, ex)
	return b
}
