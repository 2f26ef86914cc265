package prw

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// decodeV1 reads a prometheus.WriteRequest into d. The form is msg as
// sent up to the first field the scan refuses, then the series it accepts
// as they are and the others repaired.
func decodeV1(d *Decoded, msg []byte) error {
	raw := &d.raw
	var b []byte // the form, once it is not msg
	asSent, off := true, 0
	for f, err := range fields(msg) {
		if err != nil {
			return err
		}
		if (f.num == 1 || f.num == 3) && f.typ != protowire.BytesType {
			return fmt.Errorf("wrong wire type %d for field %d", f.typ, f.num)
		}
		var rs RawSeries
		ok := false // whether f is in the form as it is
		switch f.num {
		case 1: // timeseries
			rs, ok = scanV1Series(d, f.v)
		case 3: // metadata
			if _, _, ok = metadataSchema.check(f.v); !ok {
				if err := new(prompb.MetricMetadata).Unmarshal(f.v); err != nil {
					return fmt.Errorf("metadata %d: %w", len(raw.Metadata), err)
				}
			}
		}
		if asSent && !ok {
			// What precedes f is in the form as it is, spans included.
			asSent, b = false, append(d.form[:0], msg[:off]...)
		}
		sp := Span{Off: uint32(off + len(f.whole) - len(f.v)), Len: uint32(len(f.v))}
		off += len(f.whole)
		if !asSent && (ok || f.num == 3) {
			b, sp = AppendField(b, f.num, f.v)
		}
		switch {
		case f.num == 3:
			raw.Metadata = append(raw.Metadata, sp)
		case f.num == 1 && ok:
			rs.Span = sp
			raw.Append(rs)
		case f.num == 1:
			idx := len(raw.Series) + d.Invalid.Count // the series before f
			if b, err = d.repairV1(b, idx, f.v); err != nil {
				return fmt.Errorf("timeseries %d: %w", idx, err)
			}
		}
	}
	if asSent {
		raw.Msg, raw.AsSent = msg, true
	} else {
		raw.Msg, d.form = b, b
	}
	return nil
}

// repairV1 decodes the TimeSeries ts, series number idx, with the
// generated code and appends it to b in the form or counts it refused.
func (d *Decoded) repairV1(b []byte, idx int, ts []byte) ([]byte, error) {
	m := &d.ts
	m.Reset()
	if err := m.Unmarshal(ts); err != nil {
		return b, err
	}
	var sb labels.ScratchBuilder
	s := Series{Labels: m.ToLabels(&sb, nil)}
	for _, h := range m.Histograms {
		s.Histograms = append(s.Histograms, HistogramFromV1(h))
	}
	for _, x := range m.Samples {
		s.Samples = append(s.Samples, Sample{Value: x.Value, Timestamp: x.Timestamp})
	}
	for _, e := range m.Exemplars {
		s.Exemplars = append(s.Exemplars, Exemplar{Labels: e.ToExemplar(&sb, nil).Labels, Value: e.Value, Timestamp: e.Timestamp})
	}
	if reason, detail, ok := ValidateSeries(&s); !ok {
		d.Invalid.add(reason, idx, len(ts), s.Labels, detail)
		return b, nil
	}
	var rs RawSeries
	b, rs, d.scratch = AppendSeries(b, &s, d.scratch)
	d.raw.Append(rs)
	return b, nil
}

// scanV1Series is the 1.0 decoder's fast path, allocating nothing: it
// returns the hash and counts of a TimeSeries that is valid and in the form
// as it is, with nothing decoding would drop or read differently (unknown
// fields, a repeated scalar, a wrong wire type); decodeV1 repairs the rest.
//
// The labels Prometheus sends come first, as SmallLabel reads them: their
// bytes are checked for UTF-8 in one pass, right as every byte between
// names and values is ASCII, never inside a multi-byte sequence, and
// hashed by ShardHash when needed. Others are read one by one.
func scanV1Series(d *Decoded, ts []byte) (rs RawSeries, ok bool) {
	var prev []byte
	first, hasName := true, false
	label := func(name, value []byte) bool {
		// Names are not empty. Most differ in their first byte, which
		// decides without a call to bytes.Compare.
		if !first && (name[0] < prev[0] || (name[0] == prev[0] && bytes.Compare(name[1:], prev[1:]) <= 0)) {
			return false
		}
		if len(name) == len(labels.MetricName) && string(name) == labels.MetricName {
			if len(value) == 0 {
				return false
			}
			hasName = true
		}
		prev, first = name, false
		return true
	}
	off := 0
	for n, name, value, ok := SmallLabel(ts); ok; n, name, value, ok = SmallLabel(ts[off:]) {
		if !label(name, value) {
			return rs, false
		}
		off += n
	}
	if !utf8.Valid(ts[:off]) {
		return rs, false
	}
	direct := true
	// Every field here is length-delimited: read as such, not through
	// field.read, as this loop is a fifth of the 1.0 handler.
	for b := ts[off:]; len(b) > 0; {
		var num protowire.Number
		var v []byte
		if len(b) >= 2 && b[0] < 0x80 && b[0]&7 == byte(protowire.BytesType) && b[1] < 0x80 && 2+int(b[1]) <= len(b) {
			// A one-byte tag and length, as a sample's are: field.read's
			// fast path, written out (through field.read the 1.0 handler
			// took ×1.025 the time, 6 alternated pairs).
			end := 2 + int(b[1])
			num, v, b = protowire.Number(b[0]>>3), b[2:end], b[end:]
		} else {
			nm, typ, n := protowire.ConsumeTag(b)
			if n < 0 || typ != protowire.BytesType {
				return rs, false
			}
			val, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				return rs, false
			}
			num, v, b = nm, val, b[n+m:]
		}
		ok := false
		switch num {
		case fieldLabels:
			name, value, valid := labelSchema.check(v)
			ok = valid && len(name) > 0 && utf8.Valid(name) && utf8.Valid(value) && label(name, value)
			direct = false
		case fieldSamples:
			ok, rs.Samples = scanV1Sample(v), rs.Samples+1
		case fieldExemplars:
			_, _, ok = exemplarSchema.check(v)
			rs.Exemplars++
		case fieldHistograms:
			ok, rs.Histograms = d.checkV1Histogram(v), rs.Histograms+1
		}
		if !ok {
			return rs, false
		}
	}
	if !hasName || rs.Points() == 0 {
		return rs, false
	}
	if direct {
		rs.labels = uint32(off) // hashed by ShardHash when needed
		return rs, true
	}
	var err error
	if rs.Hash, d.scratch, err = HashSeries(ts, d.scratch); err != nil {
		return rs, false
	}
	return rs, true
}

// schema is what the scan accepts of a message, by field number: whether,
// with which wire type, repeated, holding a message of which schema.
type schema [6]struct {
	ok, repeated bool
	typ          protowire.Type
	msg          *schema
}

var (
	// labelSchema accepts a Label: its name and value, neither twice.
	labelSchema    = schema{1: {ok: true, typ: protowire.BytesType}, 2: {ok: true, typ: protowire.BytesType}}
	exemplarSchema = schema{1: {ok: true, repeated: true, typ: protowire.BytesType, msg: &labelSchema},
		2: {ok: true, typ: protowire.Fixed64Type}, 3: {ok: true, typ: protowire.VarintType}}
	metadataSchema = schema{1: {ok: true, typ: protowire.VarintType}, 2: {ok: true, typ: protowire.BytesType},
		4: {ok: true, typ: protowire.BytesType}, 5: {ok: true, typ: protowire.BytesType}}
)

// check reports whether b holds only fields of s, well framed, and
// returns the last length-delimited values of fields 1 and 2.
func (s *schema) check(b []byte) (f1, f2 []byte, ok bool) {
	var seen [len(s)]bool
	for f, err := range fields(b) {
		if err != nil || int(f.num) >= len(s) {
			return nil, nil, false
		}
		if e := &s[f.num]; !e.ok || e.typ != f.typ || (seen[f.num] && !e.repeated) {
			return nil, nil, false
		} else if e.msg != nil {
			if _, _, ok := e.msg.check(f.v); !ok {
				return nil, nil, false
			}
		}
		seen[f.num] = true
		switch f.num {
		case 1:
			f1 = f.v
		case 2:
			f2 = f.v
		}
	}
	return f1, f2, true
}

// scanV1Sample checks a Sample: at most one value and one timestamp. It is
// a schema check written out, as every sample goes through it.
func scanV1Sample(b []byte) bool {
	// As encoders write it: the value, then a timestamp of at most 9
	// varint bytes that ends the message.
	if k := len(b) - 10; k >= 1 && k <= 9 && b[0] == 0x09 && b[9] == 0x10 && b[len(b)-1] < 0x80 {
		cont := true
		for _, c := range b[10 : len(b)-1] {
			cont = cont && c >= 0x80
		}
		if cont {
			return true
		}
	}
	var seen [3]bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num < 1 || num > 2 || seen[num] {
			return false
		}
		seen[num] = true
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.Fixed64Type && len(b) >= 8:
			b = b[8:]
		case num == 2 && typ == protowire.VarintType:
			_, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return false
			}
			b = b[m:]
		default:
			return false
		}
	}
	return true
}

// checkV1Histogram validates a Histogram, refusing anything 1.0 has not.
// Histograms are rare next to samples: this allocates.
func (d *Decoded) checkV1Histogram(b []byte) bool {
	h := &d.hist
	h.Reset()
	unknown := func(s writev2.BucketSpan) bool { return len(s.XXX_unrecognized) > 0 }
	if err := h.Unmarshal(b); err != nil || len(h.XXX_unrecognized) > 0 || h.StartTimestamp != 0 ||
		slices.ContainsFunc(h.NegativeSpans, unknown) || slices.ContainsFunc(h.PositiveSpans, unknown) {
		return false
	}
	return ValidateHistogram(h) == ""
}
