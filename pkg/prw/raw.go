package prw

import (
	"errors"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/encoding/protowire"
)

// RawV1 is a remote write 1.0 request in its wire form, for the forwarders
// that can send it on as it came: a 1.0 upstream whose labels need no
// change. The receiver sets it only when every series of the request is
// valid, has its labels sorted by name, and uses nothing of the wire format
// that the receiver would not send on unchanged (unknown fields, repeated
// scalar fields).
//
// Everything in it aliases the receiver's pooled buffers: a consumer copies
// what it keeps past Enqueue. Its slices hold no pointers but Msg and
// Compressed, so the garbage collector does not scan per-series entries.
type RawV1 struct {
	// Compressed is the snappy-compressed body the client sent, whose
	// decoded form is Msg.
	Compressed []byte
	// Msg is the decoded prometheus.WriteRequest.
	Msg []byte
	// Series are the request's TimeSeries messages, in order.
	Series []RawSeries
	// Metadata are the request's MetricMetadata messages, in order.
	Metadata []Span
	// Samples, Histograms and Exemplars are the request's totals.
	Samples, Histograms, Exemplars int
	// Ext reports whether a series has the form's 2.0 extensions (see
	// AppendSeries).
	Ext bool
	// AsSent reports whether Msg is the message as the client sent it,
	// whose compressed form is then Compressed.
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
	// Hash is HashLabels of the series' labels.
	Hash uint64
	// Samples, Histograms and Exemplars count the series' points.
	Samples, Histograms, Exemplars uint32
	// Ext reports whether the series has the form's 2.0 extensions (see
	// AppendSeries): start timestamps or metadata.
	Ext bool
}

// Points returns the series' samples, histograms and exemplars.
func (s *RawSeries) Points() int { return int(s.Samples + s.Histograms + s.Exemplars) }

// HashLabels returns the shard hash of a label set: the hash of the
// labels' canonical encoding as the labels fields of a 1.0 TimeSeries
// (AppendLabels). Every hash of a series is this one: HashSeries computes
// it from a series' bytes, and the receiver's scan from the label bytes of
// a canonically encoded series as they are, so a series hashes the same
// whichever form it is in. scratch is reused and returned.
func HashLabels(ls labels.Labels, scratch []byte) (uint64, []byte) {
	b := AppendLabels(scratch[:0], ls)
	return hashCanonical(b), b
}

// HashSeries returns HashLabels of the labels of the TimeSeries ts, in
// the order they are in, whatever their encoding. scratch is reused and
// returned.
func HashSeries(ts, scratch []byte) (uint64, []byte, error) {
	b := scratch[:0]
	err := RangeRawLabels(ts, func(name, value []byte) { b = appendLabelEntry(b, name, value) })
	return hashCanonical(b), b, err
}

// hashCanonical is the shard hash of canonically encoded labels.
func hashCanonical(b []byte) uint64 { return xxhash.Sum64(b) }

// AppendLabels appends ls to b as the labels fields of a 1.0 TimeSeries,
// canonically encoded (see HashLabels, which hashes these bytes).
func AppendLabels(b []byte, ls labels.Labels) []byte {
	ls.Range(func(l labels.Label) { b = appendLabelEntry(b, l.Name, l.Value) })
	return b
}

// appendLabelEntry appends the canonical encoding of one label as a
// TimeSeries labels field.
func appendLabelEntry[S string | []byte](b []byte, name, value S) []byte {
	if len(name) < 0x80 && len(value) < 0x80 && len(name)+len(value) < 0x80-4 {
		// Every length one byte: the common case, written directly.
		b = append(b, 0x0a, 0)
		at := len(b)
		if len(name) > 0 {
			b = append(append(b, 0x0a, byte(len(name))), name...)
		}
		if len(value) > 0 {
			b = append(append(b, 0x12, byte(len(value))), value...)
		}
		b[at-1] = byte(len(b) - at)
		return b
	}
	b, at := openField(b, fieldLabels)
	return closeField(appendStringField(appendStringField(b, 1, name), 2, value), at)
}

// SmallLabel reads a TimeSeries labels field at the start of b if it is
// canonically encoded with every length under 128 (so every length is one
// byte and every byte of the field outside name and value is ASCII): it
// returns the field's length, the label's name and value, and true. A
// non-empty name is required. Otherwise ok is false and the caller reads
// the field the general way.
func SmallLabel(b []byte) (n int, name, value []byte, ok bool) {
	if len(b) < 4 || b[0] != 0x0a || b[1] >= 0x80 || b[2] != 0x0a || b[3] == 0 || b[3] >= 0x80 {
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
	if len(rest) < 3 || rest[0] != 0x12 || rest[1] == 0 || rest[1] >= 0x80 || int(rest[1]) != len(rest)-2 {
		return 0, nil, nil, false
	}
	return 2 + l, name, rest[2:], true
}

// ErrRawSeries is returned for a message that is not a well-formed 1.0
// TimeSeries.
var ErrRawSeries = errors.New("malformed 1.0 time series")

// SeriesPoints returns the number of samples, histograms and exemplars of
// the TimeSeries ts, which was validated before (a series in the form).
func SeriesPoints(ts []byte) (RawSeries, error) {
	var rs RawSeries
	for f, err := range fields(ts) {
		if err != nil {
			return rs, ErrRawSeries
		}
		rs.count(pointKind(f))
	}
	return rs, nil
}

// RangeRawLabels calls fn for each label of the 1.0 TimeSeries ts, in the
// order they are in. It returns ErrRawSeries if ts is malformed. This is
// how every part of the gateway reads the labels of a series' bytes.
func RangeRawLabels(ts []byte, fn func(name, value []byte)) error {
	for len(ts) > 0 {
		if n, name, value, ok := SmallLabel(ts); ok {
			fn(name, value)
			ts = ts[n:]
			continue
		}
		f, rest, err := nextField(ts)
		if err != nil {
			return ErrRawSeries
		}
		ts = rest
		if f.num != fieldLabels || f.typ != protowire.BytesType {
			continue
		}
		name, value, ok := labelSchema.check(f.v)
		if !ok {
			return ErrRawSeries
		}
		fn(name, value)
	}
	return nil
}
