package forward

import (
	"fmt"
	"slices"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// A request that an upstream takes unchanged (same protocol, nothing
// relabeled, within the batch limits) is already a batch its sender built:
// it is queued as one item that keeps the client's compressed body, and
// sent as it came, not cut, copied and compressed again; it keeps only the
// client's body. Like any item it goes to one shard (see order.route) and
// waits there only for earlier items of its series in other shards. A 2.0
// request read as 1.0 data is made such a body once, compressed, family
// metadata and all (see request.wholeFor).
// Anything that changes it (a split after a 413, the age limit, a protocol
// fallback) works on its chunk, raw, as on any other, and the result is
// not whole.

// wholeRequest is a whole item's compressed body, in proto.
type wholeRequest struct {
	wire   []byte
	proto  prw.Protocol
	series int // the length of the series fields, which 1.0 metadata follows
	// metadata counts the metadata the body carries: its families in 1.0,
	// its series with metadata in 2.0. Sent without metadata, it is not
	// whole unless this is 0.
	metadata int
}

// wholeItem returns raw, a request in the form, as one whole item to send
// in proto; false when raw.Compressed is not the client's request in proto
// holding just what raw holds, or exceeds maxN points or maxB bytes. A
// 1.0 request's family metadata must follow its series; a 2.0 one has
// none. The item owns copies of the request's bytes.
func wholeItem(raw *prw.RawV1, proto prw.Protocol, maxN, maxB int) (item, bool) {
	ok := raw.AsSent && !raw.Ext // a 1.0 body as it came
	if proto == prw.ProtoV2 {
		ok = !raw.AsSent && len(raw.Metadata) == 0 // a 2.0 body, whose form is raw
	}
	if !ok || raw.Compressed == nil || len(raw.Series) == 0 || len(raw.Msg) > maxB {
		return item{}, false
	}
	it, n, withMeta := item{ext: raw.Ext}, 0, 0
	for i := range raw.Series {
		rs := &raw.Series[i]
		n += 1 + protowire.SizeBytes(int(rs.Len))
		it.add(rs)
		if rs.Meta {
			withMeta++
		}
	}
	series := n
	for _, md := range raw.Metadata {
		if int(md.Off) < series {
			return item{}, false
		}
		n += 1 + protowire.SizeBytes(int(md.Len))
	}
	// The message must be its series fields, then its metadata fields, and
	// nothing else, so that its first part is a chunk as it is.
	if n != len(raw.Msg) || it.count() > maxN {
		return item{}, false
	}
	it.hashes = make([]uint64, len(raw.Series))
	for i := range raw.Series {
		it.hashes[i] = raw.Series[i].ShardHash(raw.Msg)
	}
	it.size = len(raw.Msg)
	// One of them is 0. The families are read from the body only if it
	// is changed (see chunk), not for every request.
	meta := withMeta + len(raw.Metadata)
	it.whole = &wholeRequest{wire: slices.Clone(raw.Compressed), proto: proto, series: series, metadata: meta}
	return it, true
}

// v2Decoder reads a whole 2.0 item's body back into the form (see chunk).
var v2Decoder = prw.NewV2Decoder()

// chunk returns the item's chunk and the family metadata it carries with
// it: raw and families, or, for a whole item, which keeps only the client's
// body, what is decoded from it (a 1.0 message's series fields are its
// chunk and its metadata fields follow; a 2.0 one is decoded as the write
// handler did, and has none). Only what changes a whole item (a split, the
// age limit, a protocol fallback, a batch of several) needs them.
func (it *item) chunk() ([]byte, []*prw.FamilyMetadata, error) {
	if it.whole == nil {
		return it.raw, it.families, nil
	}
	msg, err := snappy.Decode(nil, it.whole.wire)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errMalformedChunk, err)
	}
	if it.whole.proto == prw.ProtoV1 {
		if len(msg) < it.whole.series {
			return nil, nil, errMalformedChunk
		}
		var families []*prw.FamilyMetadata
		err := rangeChunk(msg[it.whole.series:], false, func(md []byte, _ prw.RawSeries, _ int) bool {
			if fm := readFamily(md); fm != nil {
				families = append(families, fm)
			}
			return true
		})
		return msg[:it.whole.series], families, err
	}
	d, err := v2Decoder.Decode(msg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errMalformedChunk, err)
	}
	defer v2Decoder.Release(d)
	return slices.Clone(d.Req.Raw.Msg), nil, nil
}
