package prw

import (
	"bytes"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// The raw scan is the 1.0 decoder's fast path. It walks the message once
// with protowire, allocating nothing, and accepts it only if the full
// decoder (unmarshalV1 and convertV1) would accept every series unchanged:
// every label set sorted by name with no duplicates, no empty names, valid
// UTF-8, a non-empty __name__, at least one sample, histogram or exemplar
// per series, consistent histograms; and nothing the full decoder would
// drop or read differently (unknown fields, a repeated scalar field, a
// wrong wire type). Anything else, an invalid series included, goes to the
// full decoder, which gives the same answer and counters as ever.
//
// An accepted request is passed on as Request.Raw, its Series and
// Metadata left for Materialize to fill with the full decoder's result.

// scanV1 scans msg into d.raw and reports whether the request can be passed
// on raw.
func scanV1(d *Decoded, msg []byte) bool {
	raw := &d.raw
	b := msg
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return false
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return false
		}
		span := Span{Off: uint32(len(msg) - len(b) + n + m - len(v)), Len: uint32(len(v))}
		b = b[n+m:]
		switch num {
		case 1: // timeseries
			rs, ok := scanV1Series(d, v)
			if !ok {
				return false
			}
			rs.Span = span
			raw.Series = append(raw.Series, rs)
			raw.Samples += int(rs.Samples)
			raw.Histograms += int(rs.Histograms)
			raw.Exemplars += int(rs.Exemplars)
		case 3: // metadata
			if !scanV1Metadata(v) {
				return false
			}
			raw.Metadata = append(raw.Metadata, span)
		default:
			return false
		}
	}
	raw.Msg = msg
	return true
}

// scanV1Series checks one TimeSeries and returns its hash and counts; ok is
// false if it needs the full decoder.
//
// The labels Prometheus sends come first, canonically encoded with short
// lengths (SmallLabel): those are checked for UTF-8 and hashed in one
// pass over their bytes, which is right because every byte between names
// and values is ASCII, and an ASCII byte never belongs to a multi-byte
// sequence. Labels anywhere else are read one by one.
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
	for b := ts[off:]; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return rs, false
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return rs, false
		}
		b = b[n+m:]
		switch num {
		case 1: // labels
			name, value, ok := scanV1Label(v)
			if !ok || len(name) == 0 || !utf8.Valid(name) || !utf8.Valid(value) || !label(name, value) {
				return rs, false
			}
			direct = false
		case 2: // samples
			if !scanV1Sample(v) {
				return rs, false
			}
			rs.Samples++
		case 3: // exemplars
			if !scanV1Exemplar(v) {
				return rs, false
			}
			rs.Exemplars++
		case 4: // histograms
			if !d.checkV1Histogram(v) {
				return rs, false
			}
			rs.Histograms++
		default:
			return rs, false
		}
	}
	if !hasName || rs.Points() == 0 {
		return rs, false
	}
	if direct {
		rs.Hash = xxhash.Sum64(head)
		return rs, true
	}
	h, err := HashRawLabels(ts, &d.hasher)
	if err != nil {
		return rs, false
	}
	rs.Hash = h
	return rs, true
}

// scanV1Label returns a Label's name and value if it has nothing else and
// neither twice.
func scanV1Label(b []byte) (name, value []byte, ok bool) {
	var seen [3]bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType || (num != 1 && num != 2) || seen[num] {
			return nil, nil, false
		}
		seen[num] = true
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, nil, false
		}
		b = b[n+m:]
		if num == 1 {
			name = v
		} else {
			value = v
		}
	}
	return name, value, true
}

// scanV1Sample checks a Sample: at most one value (fixed64) and one
// timestamp (varint).
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
		case num == 1 && typ == protowire.Fixed64Type:
			if len(b) < 8 {
				return false
			}
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

// scanV1Exemplar checks an Exemplar: labels, at most one value and one
// timestamp.
func scanV1Exemplar(b []byte) bool {
	var seen [4]bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num < 1 || num > 3 {
			return false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			if _, _, ok := scanV1Label(v); !ok {
				return false
			}
			b = b[m:]
		case num == 2 && typ == protowire.Fixed64Type && !seen[2]:
			if len(b) < 8 {
				return false
			}
			b = b[8:]
		case num == 3 && typ == protowire.VarintType && !seen[3]:
			_, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return false
			}
			b = b[m:]
		default:
			return false
		}
		seen[num] = true
	}
	return true
}

// scanV1Metadata checks a MetricMetadata: at most one of each of type
// (varint), family name, help and unit (bytes).
func scanV1Metadata(b []byte) bool {
	var seen [6]bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num < 1 || num > 5 || num == 3 || seen[num] {
			return false
		}
		seen[num] = true
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			_, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return false
			}
			b = b[m:]
		case num != 1 && typ == protowire.BytesType:
			_, m := protowire.ConsumeBytes(b)
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

// checkV1Histogram decodes a Histogram with the generated code, as the full
// decoder does, and validates it. Histograms are rare next to samples: this
// allocates.
func (d *Decoded) checkV1Histogram(b []byte) bool {
	var h prompb.Histogram
	if err := h.Unmarshal(b); err != nil || len(h.XXX_unrecognized) > 0 {
		return false
	}
	for _, s := range h.NegativeSpans {
		if len(s.XXX_unrecognized) > 0 {
			return false
		}
	}
	for _, s := range h.PositiveSpans {
		if len(s.XXX_unrecognized) > 0 {
			return false
		}
	}
	mh := HistogramFromV1(h)
	return ValidateHistogram(&mh) == ""
}
