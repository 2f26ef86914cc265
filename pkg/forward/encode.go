package forward

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/rwgateway/gateway/pkg/prw"
)

// batchStats counts what one encoded batch carries.
type batchStats struct{ samples, histograms, exemplars, metadata int }

// points is what the dropped and failed counters count.
func (s batchStats) points() int { return s.samples + s.histograms + s.exemplars }

// encoder turns a batch of items into a snappy-compressed remote-write
// request, valid until its next use. Sends take one from their forwarder's
// encoderPool; not safe for concurrent use.
type encoder struct {
	v2       *prw.V2Encoder
	families map[string]struct{}
	md       prw.RawV1               // MetricMetadata fields, which follow the series
	byFamily map[string]prw.Metadata // 1.0 family metadata of a 2.0 batch
	withMD   []byte                  // the series of a 2.0 batch given their family's metadata
	chunks   [][]byte                // the chunks of a 2.0 batch's items
	pbuf     []byte                  // marshaled protobuf
	pieces   []piece
	sbuf     []byte // snappy output
}

func newEncoder() *encoder {
	return &encoder{v2: prw.NewV2Encoder(), families: map[string]struct{}{}, byFamily: map[string]prw.Metadata{}}
}

// encoderPool holds the encoders of an upstream's sends in flight, shared
// by its shards: the buffers a batch needs are held while it is encoded
// and sent, not by each idle shard (with 50 shards, over 1 MiB each).
type encoderPool struct{ pool sync.Pool }

func (p *encoderPool) get() *encoder {
	if e, ok := p.pool.Get().(*encoder); ok {
		return e
	}
	return newEncoder()
}

// put gives e back, unless an outsized batch grew its buffers past
// maxPooledEncoderBytes.
func (p *encoderPool) put(e *encoder) {
	if cap(e.pbuf)+cap(e.sbuf) <= maxPooledEncoderBytes {
		p.pool.Put(e)
	}
}

// maxPooledEncoderBytes bounds the buffers an idle pooled encoder keeps.
const maxPooledEncoderBytes = 16 << 20

// encode marshals items in proto, with their metadata if meta, and
// compresses the result.
func (e *encoder) encode(proto prw.Protocol, items []item, meta bool) ([]byte, batchStats, error) {
	var st batchStats
	for i := range items {
		st.samples += int(items[i].samples)
		st.histograms += int(items[i].histograms)
		st.exemplars += int(items[i].exemplars)
	}
	if len(items) == 1 {
		if w := items[0].whole; w != nil && w.proto == proto && (meta || w.metadata == 0) {
			st.metadata = w.metadata
			return w.wire, st, nil // a client's request, sent as it came
		}
	}
	var err error
	e.pieces = e.pieces[:0]
	if proto == prw.ProtoV2 {
		st.metadata, err = e.marshalV2(items, meta)
	} else {
		st.metadata, err = e.marshalV1(items, meta)
	}
	if err != nil {
		return nil, st, err
	}
	e.sbuf = e.compress()
	return e.sbuf, st, nil
}

// piece is a part of the message being encoded: raw, a chunk's bytes as
// they are, or e.pbuf[lo:hi] until compress sets raw (e.pbuf may grow).
type piece struct {
	raw    []byte
	lo, hi int
}

// addPiece appends e.pbuf[lo:hi] to the message.
func (e *encoder) addPiece(lo, hi int) {
	if lo < hi {
		e.pieces = append(e.pieces, piece{lo: lo, hi: hi})
	}
}

// compress returns the message of e.pieces as one snappy block, with s2's
// snappy-compatible encoder (1.45x golang/snappy's speed on remote-write
// bodies). A block is its uncompressed length and elements whose copies
// point back into it, so the pieces' elements, each compressed alone, can
// follow one another: chunks are not copied into one message first.
func (e *encoder) compress() []byte {
	total := 0
	for i := range e.pieces {
		if p := &e.pieces[i]; p.raw == nil {
			p.raw = e.pbuf[p.lo:p.hi]
		}
		total += len(e.pieces[i].raw)
	}
	out := binary.AppendUvarint(e.sbuf[:0], uint64(total))
	for i := range e.pieces {
		start := len(out)
		out = appendSnappy(out, e.pieces[i].raw)
		_, h := binary.Uvarint(out[start:]) // the piece's own length, left out
		out = out[:start+copy(out[start:], out[start+h:])]
	}
	return out
}

// appendSnappy appends src to dst as a snappy block, compressed in place.
func appendSnappy(dst, src []byte) []byte {
	start := len(dst)
	dst = slices.Grow(dst, s2.MaxEncodedLen(len(src)))
	return dst[:start+len(s2.EncodeSnappy(dst[start:cap(dst)], src))]
}

// minPieceBytes is the least size of a chunk compressed where it lies;
// smaller ones are copied together, so that what they repeat compresses.
const minPieceBytes = 16 << 10

// marshalV1 writes items as the pieces of a prometheus.WriteRequest: the
// chunks' bytes as they are, or each series without the form's 2.0
// extensions; then the family metadata, once per family, of the family
// items and the series' own metadata. It returns the number of families.
func (e *encoder) marshalV1(items []item, meta bool) (int, error) {
	clear(e.families)
	e.md = prw.RawV1{Msg: e.md.Msg[:0], Metadata: e.md.Metadata[:0]}
	addFamily := func(name string, m prw.Metadata) {
		if _, ok := e.families[name]; ok || !meta {
			return
		}
		e.families[name] = struct{}{}
		prw.AppendFamily(&e.md, name, int64(m.Type), m.Help, m.Unit)
	}
	b, run := e.pbuf[:0], 0 // run: where the pieces copied into b start
	for i := range items {
		it := &items[i]
		if it.family != nil {
			addFamily(it.family.MetricFamilyName, it.family.Metadata)
			continue
		}
		raw, families, err := it.chunk()
		if err != nil {
			return 0, err
		}
		for _, fm := range families {
			addFamily(fm.MetricFamilyName, fm.Metadata)
		}
		if !it.ext {
			if len(raw) < minPieceBytes {
				b = append(b, raw...)
			} else {
				e.addPiece(run, len(b))
				e.pieces = append(e.pieces, piece{raw: raw})
				run = len(b)
			}
			continue
		}
		var run prw.FamilyRun
		walkErr := rangeChunk(raw, false, func(ts []byte, _ prw.RawSeries, _ int) bool {
			var md []byte
			var rs prw.RawSeries
			start := len(b)
			if b, rs, md, err = prw.AppendV1(b, ts); err != nil {
				return false
			}
			if rs.Points() == 0 {
				b = b[:start] // metadata only: a family metadata entry in 1.0
			}
			if md != nil && meta && run.Next(prw.MetricName(ts), md) {
				// Looked up first: string(name) allocates only when added.
				name := prw.SeriesFamily(ts, md)
				if _, ok := e.families[string(name)]; !ok {
					addFamily(string(name), prw.ReadMetadata(md))
				}
			}
			return true
		})
		if err = cmp.Or(walkErr, err); err != nil {
			return 0, fmt.Errorf("encode 1.0 series: %w", err)
		}
	}
	e.pbuf = b
	e.addPiece(run, len(b))
	if len(e.md.Msg) > 0 {
		e.pieces = append(e.pieces, piece{raw: e.md.Msg})
	}
	return len(e.families), nil
}

// marshalV2 writes items as an io.prometheus.write.v2.Request into e.pbuf.
// 2.0 has no family metadata: prepare attached it to the family's series.
// Items prepared or queued as 1.0 (during a fallback to 1.0, which has
// ended since) may still hold it: it goes to the series of the batch
// that have none. It returns the number of series sent with metadata.
func (e *encoder) marshalV2(items []item, meta bool) (metadata int, err error) {
	e.v2.Reset()
	clear(e.byFamily)
	e.withMD = e.withMD[:0]
	// Every family is known before the first series is added.
	e.chunks = e.chunks[:0]
	for i := range items {
		if fm := items[i].family; fm != nil {
			if meta {
				addFamily(e.byFamily, fm)
			}
			continue
		}
		raw, families, err := items[i].chunk()
		if err != nil {
			return 0, err
		}
		e.chunks = append(e.chunks, raw)
		for _, fm := range families {
			if meta {
				addFamily(e.byFamily, fm)
			}
		}
	}
	for _, raw := range e.chunks {
		walkErr := rangeChunk(raw, false, func(ts []byte, _ prw.RawSeries, _ int) bool {
			if len(e.byFamily) > 0 {
				if md, ok := familyOf(e.byFamily, prw.MetricName(ts)); ok {
					// Appended, not overwritten: e.v2's symbols alias the
					// series added. WithMetadata keeps a series' own.
					var sp prw.Span
					if e.withMD, sp, err = prw.WithMetadata(e.withMD, ts, md); err != nil {
						return false
					}
					ts = sp.Bytes(e.withMD)
				}
			}
			var hasMeta bool
			if hasMeta, err = e.v2.Add(ts, meta); hasMeta {
				metadata++
			}
			return err == nil
		})
		if err = cmp.Or(walkErr, err); err != nil {
			return 0, fmt.Errorf("encode 2.0 series: %w", err)
		}
	}
	e.pbuf = e.v2.AppendRequest(e.pbuf[:0])
	e.addPiece(0, len(e.pbuf))
	return metadata, nil
}
