package forward

import (
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// A request that an upstream takes unchanged (same protocol, nothing
// relabeled, within the batch limits) is already a batch its sender built:
// it is queued as one item that keeps the client's compressed body, and
// sent as it came, not cut, copied and compressed again. That is only
// right while one shard sends everything (see reshard.go), as its series
// would otherwise belong to several shards; otherwise it is cut into the
// chunks of its series' shards. Anything that changes it (a split after a
// 413, the age limit, a protocol fallback) works on its chunk, raw, as on
// any other, and the result is not whole.

// wholeRequest is a whole item's compressed body, in proto, and the spans
// of its series in the item's raw, to cut it into chunks.
type wholeRequest struct {
	wire   []byte
	proto  prw.Protocol
	series []prw.RawSeries
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
	it, n := item{ext: raw.Ext, hashes: make([]uint64, len(raw.Series))}, 0
	for i := range raw.Series {
		rs := &raw.Series[i]
		n += 1 + protowire.SizeVarint(uint64(rs.Len)) + int(rs.Len)
		it.add(rs)
		it.hashes[i] = rs.ShardHash(raw.Msg)
	}
	// The message must be its series fields and nothing else, so that it
	// is a chunk as it is.
	if n != len(raw.Msg) || it.count() > maxN {
		return item{}, false
	}
	it.raw, it.size = slices.Clone(raw.Msg), len(raw.Msg)
	it.whole = &wholeRequest{wire: slices.Clone(raw.Compressed), proto: proto, series: slices.Clone(raw.Series)}
	return it, true
}

// cutWhole returns items with each whole item cut into the chunks of its
// series' shards, for f's shards and batch limits.
func (f *forwarder) cutWhole(items []item) []item {
	i := slices.IndexFunc(items, func(it item) bool { return it.whole != nil })
	if i < 0 {
		return items
	}
	q := &f.cfg.QueueConfig
	out := slices.Clone(items[:i])
	for _, it := range items[i:] {
		if it.whole == nil {
			out = append(out, it)
			continue
		}
		for _, c := range chunkRaw(it.raw, it.whole.series, len(f.shards), q.MaxSamplesPerSend, q.MaxBytesPerSend) {
			c.tenant, c.rec = it.tenant, it.rec
			out = append(out, c)
		}
	}
	return out
}
