package prw

import (
	"bytes"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// scanV1Series is the 1.0 decoder's fast path, allocating nothing: it
// returns the hash and counts of a TimeSeries that is valid and in the form
// as it is, with nothing decoding would drop or read differently (unknown
// fields, a repeated scalar, a wrong wire type); decodeV1 repairs the rest.
//
// The labels Prometheus sends come first, as SmallLabel reads them: their
// bytes are checked for UTF-8 and hashed in one pass, right as every byte
// between names and values is ASCII, never inside a multi-byte sequence.
// Others are read one by one.
func scanV1Series(d *Decoded, ts []byte) (rs RawSeries, ok bool) {
	var prev []byte
	first, hasName := true, false
	label := func(name, value []byte) bool {
		if !first && bytes.Compare(name, prev) <= 0 {
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
	for off < len(ts) {
		n, name, value, ok := SmallLabel(ts[off:])
		if !ok {
			break
		}
		if !label(name, value) {
			return rs, false
		}
		off += n
	}
	head := ts[:off]
	if !utf8.Valid(head) {
		return rs, false
	}
	direct := true
	for f, err := range fields(ts[off:]) {
		if err != nil || f.typ != protowire.BytesType {
			return rs, false
		}
		ok := false
		switch f.num {
		case fieldLabels:
			name, value, valid := labelSchema.check(f.v)
			ok = valid && len(name) > 0 && utf8.Valid(name) && utf8.Valid(value) && label(name, value)
			direct = false
		case fieldSamples:
			ok = scanV1Sample(f.v)
		case fieldExemplars:
			_, _, ok = exemplarSchema.check(f.v)
		case fieldHistograms:
			ok = d.checkV1Histogram(f.v)
		}
		if !ok {
			return rs, false
		}
		rs.count(pointKind(f))
	}
	if !hasName || rs.Points() == 0 {
		return rs, false
	}
	if direct {
		rs.Hash = hashCanonical(head)
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
	if err := h.Unmarshal(b); err != nil || len(h.XXX_unrecognized) > 0 || h.StartTimestamp != 0 {
		return false
	}
	for _, spans := range [2][]writev2.BucketSpan{h.NegativeSpans, h.PositiveSpans} {
		for _, s := range spans {
			if len(s.XXX_unrecognized) > 0 {
				return false
			}
		}
	}
	return ValidateHistogram(h) == ""
}
