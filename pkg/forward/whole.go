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
// client's body. It goes to one
// shard, whichever its series' order allows best (see order.route), and
// waits there only for earlier items of its series in other shards.
// Anything that changes it (a split after a 413, the age limit, a protocol
// fallback) works on its chunk, raw, as on any other, and the result is
// not whole.

// wholeRequest is a whole item's compressed body, in proto.
type wholeRequest struct {
	wire  []byte
	proto prw.Protocol
}

// wholeItem returns raw, a request in the form, as one whole item to send
// in proto; false when raw.Compressed is not the client's request in proto
// holding just what raw holds, or it has 1.0 family metadata, or exceeds
// maxN points or maxB bytes. The item owns copies of the request's bytes.
func wholeItem(raw *prw.RawV1, proto prw.Protocol, maxN, maxB int) (item, bool) {
	ok := raw.AsSent && !raw.Ext // a 1.0 body as it came
	if proto == prw.ProtoV2 {
		ok = !raw.AsSent // a 2.0 body, whose form is raw
	}
	if !ok || raw.Compressed == nil || len(raw.Metadata) > 0 || len(raw.Series) == 0 || len(raw.Msg) > maxB {
		return item{}, false
	}
	it, n := item{ext: raw.Ext}, 0
	for i := range raw.Series {
		rs := &raw.Series[i]
		n += 1 + protowire.SizeVarint(uint64(rs.Len)) + int(rs.Len)
		it.add(rs)
	}
	// The message must be its series fields and nothing else, so that it
	// is a chunk as it is.
	if n != len(raw.Msg) || it.count() > maxN {
		return item{}, false
	}
	it.hashes = make([]uint64, len(raw.Series))
	for i := range raw.Series {
		it.hashes[i] = raw.Series[i].ShardHash(raw.Msg)
	}
	it.size = len(raw.Msg)
	it.whole = &wholeRequest{wire: slices.Clone(raw.Compressed), proto: proto}
	return it, true
}

// v2Decoder reads a whole 2.0 item's body back into the form (see chunk).
var v2Decoder = prw.NewV2Decoder()

// chunk returns the item's chunk: raw, or, for a whole item, which keeps
// only the client's body, the form decoded from it (a 1.0 message is its
// chunk, a 2.0 one is decoded as the write handler did). Only what changes
// a whole item (a split, the age limit, a protocol fallback) needs it.
func (it *item) chunk() ([]byte, error) {
	if it.raw != nil || it.whole == nil {
		return it.raw, nil
	}
	msg, err := snappy.Decode(nil, it.whole.wire)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformedChunk, err)
	}
	if it.whole.proto == prw.ProtoV1 {
		return msg, nil
	}
	d, err := v2Decoder.Decode(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformedChunk, err)
	}
	defer v2Decoder.Release(d)
	return slices.Clone(d.Req.Raw.Msg), nil
}
