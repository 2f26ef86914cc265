package prw

import (
	"fmt"
	"strings"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/encoding/protowire"
)

// decoder turns one protocol's snappy-decoded protobuf message into a
// validated Request. The handler holds one per protocol for its
// lifetime; a decoder is safe for concurrent use and keeps its per-request
// state in its own pool.
//
// This is the seam where a zero-copy decoder can replace the gogo-generated
// unmarshalling used now: it only has to fill decoded.req and
// decoded.invalid, and nothing after the handler (forwarding) changes.
type Decoder interface {
	// decode unmarshals msg and converts and validates every series into
	// the returned state. An error means msg is not a valid message. The
	// state may point into msg, so msg must stay unchanged until release.
	Decode(msg []byte) (*Decoded, error)
	// release returns d, obtained from decode, to the pool. Nothing in d
	// may be used afterwards.
	Release(d *Decoded)
}

// decoded is the pooled per-request state of a decoder.
type Decoded struct {
	// req holds the valid series; see the package documentation for what
	// its consumer may retain.
	Req Request
	// invalid tallies the refused series.
	Invalid InvalidSeries
	// sb builds sorted label sets.
	sb labels.ScratchBuilder
	// wire is the protocol's reused protobuf message, owned by the decoder.
	wire any
	// size is the length of the message decoded into d, for the pool's
	// size bound (MaxPooledBytes).
	size int
	// sizes are the wire sizes of the message's series, for
	// InvalidSeries.Bytes.
	sizes []int

	// The 1.0 raw scan (see scanV1): req.Raw points to raw when it
	// accepted msg, and fill, made once per state, is what
	// req.Materialize calls then.
	raw     RawV1
	hashBuf []byte
	msg     []byte
	fill    func()
}

// statePool pools decoded states whose wire message newWire creates.
type statePool struct {
	pool sync.Pool
}

func newStatePool(newWire func() any) *statePool {
	return &statePool{pool: sync.Pool{New: func() any {
		return &Decoded{sb: labels.NewScratchBuilder(16), wire: newWire()}
	}}}
}

func (p *statePool) get(size int) *Decoded {
	d := p.pool.Get().(*Decoded)
	d.size = size
	return d
}

// put resets d and pools it, unless it served an outsized message (see
// MaxPooledBytes). The reset truncates slices but keeps their backing
// arrays and their elements' nested slices: the next request reuses them,
// and the code that reuses an element resets it first (see nextSeries and
// the unmarshal functions). Stale elements in the spare capacity may still
// point to the last message decoded into d (see unmarshalV1), which keeps
// that one buffer, at most MaxPooledBytes, alive while d is pooled.
func (p *statePool) put(d *Decoded) {
	if d.size > MaxPooledBytes {
		return
	}
	d.Req.Series = d.Req.Series[:0]
	clear(d.Req.Metadata)
	d.Req.Metadata = d.Req.Metadata[:0]
	d.Req.Proto = ProtoV1
	d.Req.Raw = nil
	d.Req.SetLazy(nil)
	d.raw = RawV1{Series: d.raw.Series[:0], Metadata: d.raw.Metadata[:0]}
	d.msg = nil
	d.Invalid.reset()
	p.pool.Put(d)
}

// nextSeries appends a series to r and returns it, reusing the backing
// arrays of a series an earlier request left in r's spare capacity.
func nextSeries(r *Request) *Series {
	r.Series = extend(r.Series)
	s := &r.Series[len(r.Series)-1]
	*s = Series{
		Samples:    s.Samples[:0],
		Histograms: clearTruncate(s.Histograms),
		Exemplars:  clearTruncate(s.Exemplars),
	}
	return s
}

// clearTruncate zeroes s's elements (dropping what they point to) and
// returns it empty.
func clearTruncate[S ~[]E, E any](s S) S {
	clear(s)
	return s[:0]
}

// extend grows s by one element. The new element is whatever an earlier use
// left in the spare capacity (the zero value if none): the caller resets it.
func extend[S ~[]E, E any](s S) S {
	if len(s) < cap(s) {
		return s[:len(s)+1]
	}
	var zero E
	return append(s, zero)
}

// appendZero grows s by one zero element and returns a pointer to it.
func appendZero[S ~[]E, E any](s S) (S, *E) {
	s = extend(s)
	e := &s[len(s)-1]
	var zero E
	*e = zero
	return s, e
}

// unmarshaler is a pointer to a gogo-generated message.
type unmarshaler[E any] interface {
	*E
	Unmarshal([]byte) error
}

// appendMessage reads the message in the current field (num, typ) of r
// and unmarshals it as one more element of *s, a zero one reused from its
// spare capacity if there is one. Errors name the element as what and its
// index.
func appendMessage[S ~[]E, E any, P unmarshaler[E]](r *wireReader, num protowire.Number, typ protowire.Type, s *S, what string) error {
	v, err := r.bytes(num, typ)
	if err != nil {
		return err
	}
	var e *E
	*s, e = appendZero(*s)
	if err := P(e).Unmarshal(v); err != nil {
		return fmt.Errorf("%s %d: %w", what, len(*s)-1, err)
	}
	return nil
}

// wireReader walks the fields of one protobuf message.
type wireReader struct {
	b []byte
}

// next returns the next field's number and type; ok is false at the end of
// the message.
func (r *wireReader) next() (num protowire.Number, typ protowire.Type, ok bool, err error) {
	if len(r.b) == 0 {
		return 0, 0, false, nil
	}
	num, typ, n := protowire.ConsumeTag(r.b)
	if n < 0 {
		return 0, 0, false, protowire.ParseError(n)
	}
	r.b = r.b[n:]
	return num, typ, true, nil
}

// bytes consumes a length-delimited field value.
func (r *wireReader) bytes(num protowire.Number, typ protowire.Type) ([]byte, error) {
	if typ != protowire.BytesType {
		return nil, fmt.Errorf("wrong wire type %d for field %d", typ, num)
	}
	v, n := protowire.ConsumeBytes(r.b)
	if n < 0 {
		return nil, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
	}
	r.b = r.b[n:]
	return v, nil
}

// skip consumes the value of a field the decoder does not know.
func (r *wireReader) skip(num protowire.Number, typ protowire.Type) error {
	n := protowire.ConsumeFieldValue(num, typ, r.b)
	if n < 0 {
		return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
	}
	r.b = r.b[n:]
	return nil
}

// MaxPooledBytes bounds what the pools keep. A body buffer larger than this,
// or the decode state of a message larger than this, is left to the garbage
// collector after its request instead of being pooled: a pooled entry lives
// until two garbage collections pass without use, and a burst of outsized
// requests must not pin that much memory per entry (a decode state holds
// several times its message's size in Go structs). Prometheus's default
// batches (2000 samples) are 100–300 KiB decoded, so they always reuse; only
// requests over 8 MiB decoded allocate anew.
const MaxPooledBytes = 8 << 20

// Truncate shortens s to at most n bytes of valid UTF-8, for echoing client
// input in messages.
func Truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
