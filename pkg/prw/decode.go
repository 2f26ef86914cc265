package prw

import (
	"strings"
	"sync"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Decoder turns one protocol's snappy-decoded protobuf message into a
// validated Request whose series are in the form (see AppendSeries). The
// handler holds one per protocol for its lifetime; a decoder is safe for
// concurrent use and keeps its per-request state in its own pool.
type Decoder interface {
	// Decode reads and validates every series of msg into the returned
	// state. An error means msg is not a valid message. The state may
	// point into msg, so msg must stay unchanged until Release.
	Decode(msg []byte) (*Decoded, error)
	// Release returns d, obtained from Decode, to the pool. Nothing in d
	// may be used afterwards.
	Release(d *Decoded)
}

// Decoded is the pooled per-request state of a decoder.
type Decoded struct {
	// Req holds the valid series, Req.Raw their form; see the receiver's
	// package documentation for what its consumer may retain.
	Req Request
	// Invalid tallies the refused series.
	Invalid InvalidSeries

	// size is the length of the message decoded into d, for the pool's
	// size bound (MaxPooledBytes).
	size int
	// raw is Req.Raw; form holds it when it is not the message as sent.
	raw  RawV1
	form []byte
	// Scratch of the decoders, reused from request to request.
	scratch, ex []byte
	pairs       []labelPair
	refs, xrefs []uint32
	syms        [][]byte
	symOK       []bool
	series      [][]byte
	points      [3][][]byte // 2.0 samples, histograms, exemplars of a series
	ts          prompb.TimeSeries
	hist        writev2.Histogram
}

// NewV1Decoder returns the decoder of remote write 1.0,
// prometheus.WriteRequest.
func NewV1Decoder() Decoder { return &decoder{proto: ProtoV1, decode: decodeV1} }

// NewV2Decoder returns the decoder of remote write 2.0,
// io.prometheus.write.v2.Request.
func NewV2Decoder() Decoder { return &decoder{proto: ProtoV2, decode: decodeV2} }

// decoder pools the states of one protocol's decode function.
type decoder struct {
	proto  Protocol
	pool   sync.Pool
	decode func(d *Decoded, msg []byte) error
}

func (dec *decoder) Decode(msg []byte) (*Decoded, error) {
	d, _ := dec.pool.Get().(*Decoded)
	if d == nil {
		d = &Decoded{}
	}
	d.size = len(msg)
	if err := dec.decode(d, msg); err != nil {
		dec.Release(d)
		return nil, err
	}
	d.Req.SetRaw(&d.raw)
	d.Req.Proto = dec.proto
	return d, nil
}

// Release resets d and pools it, unless it served an outsized message
// (see MaxPooledBytes). The reset keeps the backing arrays of its buffers
// for the next request.
func (dec *decoder) Release(d *Decoded) {
	if d.size > MaxPooledBytes {
		return
	}
	d.Req = Request{Series: d.Req.Series[:0], Metadata: d.Req.Metadata[:0]}
	d.raw = RawV1{Series: d.raw.Series[:0], Metadata: d.raw.Metadata[:0]}
	d.Invalid = InvalidSeries{}
	clear(d.syms)
	clear(d.series)
	for i := range d.points {
		clear(d.points[i])
	}
	dec.pool.Put(d)
}

// MaxPooledBytes bounds what the pools keep. A body buffer larger than this,
// or the decode state of a message larger than this, is left to the garbage
// collector after its request instead of being pooled: a pooled entry lives
// until two garbage collections pass without use, and a burst of outsized
// requests must not pin that much memory per entry. Prometheus's default
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
