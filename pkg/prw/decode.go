package prw

import (
	"strings"
	"sync"
	"unsafe"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// Decoder decodes one protocol's messages into validated Requests in the
// form (see AppendSeries), pooling its state; it is safe for concurrent use.
type Decoder struct {
	proto  Protocol
	plain  bool // see NewPlainV2Decoder
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
	// Whole reports that the message says just what the form holds, so
	// that its body may stand for it (see RawV1.Compressed).
	Whole bool

	size int // of the message, for MaxPooledBytes
	// raw is Req.Raw; form holds it when it is not the message as sent.
	raw   RawV1
	form  []byte
	plain bool // 2.0 decoded as 1.0 data (see NewPlainV2Decoder)
	// families are a plain request's family metadata.
	families plainFamilies
	// Scratch of the decoders, reused from request to request.
	scratch, ex, exs []byte
	pairs            []labelPair
	order            [][2]uint32
	knownNames       [32]knownNames // see sameNames
	lastNames        *knownNames    // those of the series before
	metaBytes        []byte         // a series' metadata message, read into meta
	meta             metadataV2
	metaFields       []byte   // the metadata fields written in the form, in this request
	metaAt           []metaAt // by help symbol: see appendMetadata
	refs, xrefs      []uint32
	written          []labelAt // by value symbol: see writeLabels
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

// NewPlainV2Decoder returns a decoder of io.prometheus.write.v2.Request
// into 1.0 data, for when nothing takes more: what only 2.0 carries is
// left out (start timestamps), or made 1.0's (a series' metadata becomes
// its family's 1.0 metadata entry, once per request, after the series).
// This is what a 1.0 upstream is sent of any 2.0 request, made as the
// request is read instead of from its form.
func NewPlainV2Decoder() *Decoder { return &Decoder{proto: ProtoV2, plain: true, decode: decodeV2} }

// Decode reads and validates every series of msg, or says why msg is not a
// valid message. The state may point into msg, unchanged until Release.
func (dec *Decoder) Decode(msg []byte) (*Decoded, error) {
	d, _ := dec.pool.Get().(*Decoded)
	if d == nil {
		d = &Decoded{}
	}
	d.size, d.plain = len(msg), dec.plain
	if err := dec.decode(d, msg); err != nil {
		dec.Release(d)
		return nil, err
	}
	d.Req = Request{Proto: dec.proto, Raw: &d.raw}
	d.Whole = d.raw.AsSent || (dec.proto == ProtoV2 && !dec.plain && d.Invalid.Count == 0 && !d.Sorted)
	return d, nil
}

// Release resets d, keeping its buffers, and pools it unless it served an
// outsized message (see MaxPooledBytes). d is not to be used afterwards.
func (dec *Decoder) Release(d *Decoded) {
	if !d.poolable() {
		return
	}
	d.Req = Request{}
	d.raw = RawV1{Series: d.raw.Series[:0], Metadata: d.raw.Metadata[:0]}
	d.Invalid, d.Sorted, d.Whole = InvalidSeries{}, false, false
	clear(d.families.seen)
	d.families.run, d.families.pending = FamilyRun{}, d.families.pending[:0]
	clear(d.syms)
	clear(d.series)
	for i := range d.points {
		clear(d.points[i])
	}
	dec.pool.Put(d)
}

// poolable reports whether d is within MaxPooledBytes: its message, and
// its state by symbol, which a 2.0 message of many tiny symbols makes many
// times the message's size.
func (d *Decoded) poolable() bool {
	perSymbol := cap(d.syms)*int(unsafe.Sizeof([]byte(nil))) + cap(d.symOK) + cap(d.written)*int(unsafe.Sizeof(labelAt{})) +
		cap(d.families.byName)*int(unsafe.Sizeof(familyOf{})) + cap(d.metaAt)*int(unsafe.Sizeof(metaAt{})) + cap(d.metaFields)
	return d.size <= MaxPooledBytes && perSymbol <= MaxPooledBytes
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
