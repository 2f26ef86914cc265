package prw

import (
	"strings"
	"sync"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Decoder decodes one protocol's messages into validated Requests in the
// form (see AppendSeries), pooling its state; it is safe for concurrent use.
type Decoder struct {
	proto  Protocol
	pool   sync.Pool
	decode func(d *Decoded, msg []byte) error
}

// Decoded is the pooled per-request state of a decoder.
type Decoded struct {
	// Req holds the valid series, in the form in Req.Raw.
	Req Request
	// Invalid tallies the refused series.
	Invalid InvalidSeries
	// Sorted reports that a 2.0 series' labels came out of order and were
	// sorted: the form then says more than the message in that order.
	Sorted bool

	size int // of the message, for MaxPooledBytes
	// raw is Req.Raw; form holds it when it is not the message as sent.
	raw  RawV1
	form []byte
	// Scratch of the decoders, reused from request to request.
	scratch, ex, exs []byte
	pairs            []labelPair
	order            [][2]uint32
	knownNames       [32]knownNames // see sameNames
	metaBytes        []byte         // a series' metadata message, read into meta
	meta             metadataV2
	refs, xrefs      []uint32
	syms             [][]byte
	symOK            []bool
	series           [][]byte
	points           [3][][]byte // 2.0 samples, histograms, exemplars of a series
	ts               prompb.TimeSeries
	hist             writev2.Histogram
}

// NewV1Decoder returns the decoder of prometheus.WriteRequest.
func NewV1Decoder() *Decoder { return &Decoder{proto: ProtoV1, decode: decodeV1} }

// NewV2Decoder returns the decoder of io.prometheus.write.v2.Request.
func NewV2Decoder() *Decoder { return &Decoder{proto: ProtoV2, decode: decodeV2} }

// Decode reads and validates every series of msg, or says why msg is not a
// valid message. The state may point into msg, unchanged until Release.
func (dec *Decoder) Decode(msg []byte) (*Decoded, error) {
	d, _ := dec.pool.Get().(*Decoded)
	if d == nil {
		d = &Decoded{}
	}
	d.size = len(msg)
	if err := dec.decode(d, msg); err != nil {
		dec.Release(d)
		return nil, err
	}
	d.Req = Request{Proto: dec.proto, Raw: &d.raw}
	return d, nil
}

// Release resets d, keeping its buffers, and pools it unless it served an
// outsized message (see MaxPooledBytes). d is not to be used afterwards.
func (dec *Decoder) Release(d *Decoded) {
	if d.size > MaxPooledBytes {
		return
	}
	d.Req = Request{}
	d.raw = RawV1{Series: d.raw.Series[:0], Metadata: d.raw.Metadata[:0]}
	d.Invalid, d.Sorted = InvalidSeries{}, false
	clear(d.syms)
	clear(d.series)
	for i := range d.points {
		clear(d.points[i])
	}
	dec.pool.Put(d)
}

// MaxPooledBytes bounds the buffers and decode states pooled: an entry lives
// until two garbage collections pass without use, and a burst of outsized
// requests must not pin that much. Prometheus's batches are 100–300 KiB.
const MaxPooledBytes = 8 << 20

// Truncate cuts s after n bytes, marked …, as valid UTF-8 for messages.
func Truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
