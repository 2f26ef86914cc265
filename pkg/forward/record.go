package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// A disk queue record holds what one request became for one upstream
// (after external labels, write relabeling and the send_* settings) as the
// remote-write request the upstream is sent. Its first byte is its version:
// every version ever written stays readable (pkg/queue/FORMAT.md, "Records",
// has the layouts and the rule). Version 3, written now, is
//
//	3, protocol byte (1 prometheus.WriteRequest or 2
//	   io.prometheus.write.v2.Request, plus 0x80 when a tenant follows),
//	   uvarint append time (Unix ms), if flagged the tenant (uvarint
//	   length, id), then the body as a snappy block
//
// The body is written by the encoder the shards send with (often it is the
// client's own compressed body) and read back by the write handler's
// decoders, with the same validation.
const (
	recordV1 = 1 // items in the gateway's own layout; read only (record_v1.go)
	recordV2 = 2 // uvarint time + snappy 1.0 body; read only
	recordV3 = 3
	// recordTenant flags a version 3 protocol byte: a tenant follows.
	recordTenant = 0x80

	// maxRecordItemBytes is where a request's items are cut into several
	// records (appended together, all or nothing), by estimated size: a
	// record is decoded whole, so this bounds what one read holds.
	maxRecordItemBytes = 4 << 20
	// maxDecodedRecordBytes refuses a record whose snappy block claims more.
	maxDecodedRecordBytes = 256 << 20
)

var errRecordTruncated = errors.New("record truncated")

// recordEncoder turns items into queue records, valid until its next use
// (it reuses its buffers). Not safe for concurrent use; the Manager pools
// them.
type recordEncoder struct {
	enc  *encoder
	raw  []byte
	out  []byte
	offs []int
	recs [][]byte
	// The body encode wrote last, at the end of e.out, and the series with
	// metadata in it.
	bodyLen, metadata int
}

func newRecordEncoder() *recordEncoder { return &recordEncoder{enc: newEncoder()} }

// header starts a record of protocol p, of tenant's data ("" for none), in
// e.out.
func (e *recordEncoder) header(p prw.Protocol, tenant string, appended time.Time) {
	e.offs = append(e.offs, len(e.out))
	pb := byte(p) + 1
	if tenant != "" {
		pb |= recordTenant
	}
	e.out = append(e.out, recordV3, pb)
	e.out = binary.AppendUvarint(e.out, uint64(appended.UnixMilli()))
	if tenant != "" {
		e.out = protowire.AppendString(e.out, tenant)
	}
}

// records slices e.out into the records that header started.
func (e *recordEncoder) records() ([][]byte, int64) {
	e.offs, e.recs = append(e.offs, len(e.out)), e.recs[:0]
	for i, end := range e.offs[1:] {
		e.recs = append(e.recs, e.out[e.offs[i]:end:end])
	}
	return e.recs, int64(len(e.out))
}

// encode returns items as one or more records of protocol p, with their
// metadata if meta, cut by maxRecordItemBytes, and their total size.
func (e *recordEncoder) encode(items []item, p prw.Protocol, meta bool, appended time.Time) ([][]byte, int64, error) {
	e.out, e.offs = e.out[:0], e.offs[:0]
	for lo := 0; lo < len(items); {
		hi, size := lo, 0
		for hi < len(items) && (hi == lo || size+items[hi].size <= maxRecordItemBytes) {
			size += items[hi].size
			hi++
		}
		body, st, err := e.enc.encode(p, items[lo:hi], meta)
		if err != nil {
			return nil, 0, err
		}
		e.header(p, items[lo].tenant, appended)
		e.out = append(e.out, body...)
		e.bodyLen, e.metadata = len(body), st.metadata
		lo = hi
	}
	recs, n := e.records()
	return recs, n, nil
}

// whole returns items, all the chunks of a request that encode made one
// record of in 2.0, as one whole item holding that record's body, as a
// reader of the record after a restart would take it (see
// recordDecoder.decodeBody): it is sent as it is, not encoded again. It
// returns items as they are if encode made several records of them, or
// they are not all chunks, or do not fit one batch of maxN points and
// maxB bytes.
func (e *recordEncoder) whole(items []item, maxN, maxB int) []item {
	if len(e.recs) != 1 {
		return items
	}
	it := item{tenant: items[0].tenant}
	for i := range items {
		c := &items[i]
		if c.family != nil || c.whole != nil {
			return items
		}
		it.samples, it.histograms, it.exemplars = it.samples+c.samples, it.histograms+c.histograms, it.exemplars+c.exemplars
		it.empty, it.size, it.ext = it.empty+c.empty, it.size+c.size, it.ext || c.ext
		it.hashes = append(it.hashes, c.hashes...)
	}
	if it.count() > maxN || it.size > maxB {
		return items
	}
	body := e.out[len(e.out)-e.bodyLen:]
	it.whole = &wholeRequest{wire: slices.Clone(body), proto: prw.ProtoV2, metadata: e.metadata}
	return []item{it}
}

// wholeRaw is whole for the items of raw, a request that encodeRaw made
// one 1.0 record of: they are one whole item of that record's body if it
// holds just raw's message, within maxN points and maxB bytes.
func (e *recordEncoder) wholeRaw(raw *prw.RawV1, items []item, withMeta bool, maxN, maxB int) []item {
	if len(e.recs) != 1 || (len(items) == 1 && items[0].whole != nil) {
		return items
	}
	r := *raw
	r.Compressed, r.AsSent = e.out[len(e.out)-e.bodyLen:], true
	if !withMeta {
		r.Metadata = nil // not in the body: raw's message is more than it
	}
	it, ok := wholeItem(&r, prw.ProtoV1, maxN, maxB)
	if !ok {
		return items
	}
	it.tenant = items[0].tenant
	return []item{it}
}

// encodeRaw returns the 1.0 request raw, of tenant's data ("" for none),
// as records, its metadata included if withMeta, and their total size.
// The client's compressed body is the record when it holds exactly that.
func (e *recordEncoder) encodeRaw(raw *prw.RawV1, withMeta bool, tenant string, appended time.Time) ([][]byte, int64) {
	e.out, e.offs = e.out[:0], e.offs[:0]
	if (withMeta || len(raw.Metadata) == 0) && len(raw.Msg) <= maxRecordItemBytes && raw.AsSent && raw.Compressed != nil {
		e.header(prw.ProtoV1, tenant, appended)
		e.out, e.bodyLen = append(e.out, raw.Compressed...), len(raw.Compressed)
		return e.records()
	}
	e.raw = e.raw[:0]
	flush := func() {
		e.header(prw.ProtoV1, tenant, appended)
		start := len(e.out)
		e.out, e.raw = appendSnappy(e.out, e.raw), e.raw[:0]
		e.bodyLen = len(e.out) - start
	}
	add := func(num protowire.Number, m []byte) {
		if len(e.raw) > 0 && len(e.raw)+len(m) > maxRecordItemBytes {
			flush()
		}
		e.raw = protowire.AppendBytes(protowire.AppendTag(e.raw, num, protowire.BytesType), m)
	}
	for _, rs := range raw.Series {
		add(1, rs.Bytes(raw.Msg))
	}
	if withMeta {
		for _, md := range raw.Metadata {
			add(3, md.Bytes(raw.Msg))
		}
	}
	if len(e.raw) > 0 {
		flush()
	}
	return e.records()
}

// recordDecoder reads records back. Not safe for concurrent use: the reader
// goroutine of a forwarder owns one.
type recordDecoder struct {
	raw  []byte
	decs [2]*prw.Decoder       // by protocol
	sb   labels.ScratchBuilder // for version 1 records

	// 1.0 series become chunks (see chunkRaw) of at most maxN points and
	// maxB bytes; the zero value means no limits.
	maxN, maxB int
}

func newRecordDecoder(maxN, maxB int) *recordDecoder {
	if maxN <= 0 {
		maxN = math.MaxInt
	}
	if maxB <= 0 {
		maxB = math.MaxInt
	}
	return &recordDecoder{decs: [2]*prw.Decoder{prw.NewV1Decoder(), prw.NewV2Decoder()}, maxN: maxN, maxB: maxB}
}

// decode returns the items of rec, owning their memory, and its append
// time. A record that is not one is an error; in one that is, what fails
// the write handler's validation is left out and its size returned as
// skipped. Both are the caller's to count.
func (d *recordDecoder) decode(rec []byte) (items []item, appended time.Time, skipped int, err error) {
	if len(rec) == 0 {
		return nil, time.Time{}, 0, errRecordTruncated
	}
	pb := byte(1) // the protocol byte: version 2's is 1.0, no tenant
	switch rec[0] {
	case recordV1:
		return d.decodeV1(rec[1:])
	case recordV2:
		rec = rec[1:]
	case recordV3:
		if len(rec) < 2 || (rec[1]&^recordTenant != 1 && rec[1]&^recordTenant != 2) {
			return nil, time.Time{}, 0, errors.New("record of an unknown protocol")
		}
		pb, rec = rec[1], rec[2:]
	default:
		return nil, time.Time{}, 0, fmt.Errorf("unknown record version %d", rec[0])
	}
	proto := prw.Protocol(pb&^recordTenant - 1)
	ms, k := binary.Uvarint(rec)
	if k <= 0 {
		return nil, time.Time{}, 0, errRecordTruncated
	}
	var tenant []byte
	if pb&recordTenant != 0 {
		t, m := protowire.ConsumeBytes(rec[k:])
		if m < 0 {
			return nil, time.Time{}, 0, errRecordTruncated
		}
		tenant, k = t, k+m
	}
	msg, err := d.snappy(rec[k:])
	if err != nil {
		return nil, time.Time{}, 0, err
	}
	items, skipped, err = d.decodeBody(proto, msg, rec[k:])
	if err != nil {
		// Not a valid message as a whole: keep the messages in it that are.
		items, skipped = d.salvage(proto, msg)
	}
	if len(tenant) > 0 {
		t := string(tenant)
		for i := range items {
			items[i].tenant = t
		}
	}
	return items, time.UnixMilli(int64(ms)), skipped, nil
}

// snappy decodes a record's body, of any version, into d's buffer.
func (d *recordDecoder) snappy(b []byte) ([]byte, error) {
	n, err := snappy.DecodedLen(b)
	if err != nil {
		return nil, fmt.Errorf("decode snappy: %w", err)
	}
	if n > maxDecodedRecordBytes {
		return nil, fmt.Errorf("record of %d bytes decoded is over the %d limit", n, maxDecodedRecordBytes)
	}
	if cap(d.raw) < n {
		d.raw = make([]byte, n)
	}
	msg, err := snappy.Decode(d.raw[:n], b)
	if err != nil {
		return nil, fmt.Errorf("decode snappy: %w", err)
	}
	return msg, nil
}

// decodeBody decodes a remote-write request of protocol p as the write
// handler does, and returns its valid series as items and the size of the
// invalid ones. compressed, if not nil, is msg as the record holds it.
func (d *recordDecoder) decodeBody(p prw.Protocol, msg, compressed []byte) ([]item, int, error) {
	dec := d.decs[p]
	dd, err := dec.Decode(msg)
	if err != nil {
		return nil, 0, err
	}
	defer dec.Release(dd)
	if raw := dd.Req.Raw; compressed != nil && dd.Whole {
		// The record, valid as it is, is sent as it is: a whole item.
		raw.Compressed = compressed
		if it, ok := wholeItem(raw, p, d.maxN, d.maxB); ok {
			return []item{it}, 0, nil
		}
	}
	return rawItems(dd.Req.Raw, d.maxN, d.maxB, true, false), dd.Invalid.Bytes, nil
}

// salvage decodes a body that is not a valid message one message at a
// time, keeping every series (with the symbols, in 2.0) and metadata entry
// valid alone; the rest, up to the end of msg if its framing breaks, is
// skipped.
func (d *recordDecoder) salvage(p prw.Protocol, msg []byte) (items []item, skipped int) {
	var fields [][]byte // whole fields, tags included
	var symbols []byte
	for b := msg; len(b) > 0; {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			skipped += len(b)
			break
		}
		f := b[:n]
		b = b[n:]
		switch {
		case p == prw.ProtoV2 && num == 4 && typ == protowire.BytesType:
			symbols = append(symbols, f...)
		case (p == prw.ProtoV1 && (num == 1 || num == 3)) || (p == prw.ProtoV2 && num == 5):
			fields = append(fields, f)
		}
	}
	var one []byte
	for _, f := range fields {
		one = append(append(one[:0], symbols...), f...)
		got, bad, err := d.decodeBody(p, one, nil)
		if err != nil {
			skipped += len(f)
			continue
		}
		items = append(items, got...)
		skipped += bad
	}
	return items, skipped
}
