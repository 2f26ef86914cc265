package forward

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/prometheus/prometheus/prompb"
	"github.com/rwgateway/gateway/pkg/prw"
)

// Chunks: a request's series are queued as one item per shard and batch,
// consecutive TimeSeries fields of a 1.0 WriteRequest copied once into one
// pointer-free buffer per request: a batch copies it once, and the queue,
// the reader and the garbage collector see one item instead of hundreds.

// chunkRaw copies the series of msg (series in the form) into chunks for
// nShards shards of at most maxN points and maxB bytes; a series over
// either limit is a chunk of its own. It returns the items, each shard's in
// order.
func chunkRaw(msg []byte, series []prw.RawSeries, nShards, maxN, maxB int) (items []item) {
	if len(series) == 0 {
		return nil
	}
	entry := func(rs *prw.RawSeries) int { return 1 + protowire.SizeBytes(int(rs.Len)) }
	// Each shard writes its series into its own region of buf, so that a
	// chunk is contiguous.
	// Their series' hashes (see order) likewise go into regions of hs.
	type open struct {
		start, pos, hstart, hpos int
		it                       item
	}
	shards := make([]open, nShards)
	for i := range series {
		o := &shards[series[i].ShardHash(msg)%uint64(nShards)]
		o.pos += entry(&series[i])
		o.hpos++
	}
	total, htotal := 0, 0
	for sh := range shards {
		n, hn := shards[sh].pos, shards[sh].hpos
		shards[sh] = open{start: total, pos: total, hstart: htotal, hpos: htotal, it: item{shard: sh}}
		total, htotal = total+n, htotal+hn
	}
	buf, hs := make([]byte, total), make([]uint64, htotal)
	items = make([]item, 0, nShards+total/max(maxB, 1))
	emit := func(sh int) {
		o := &shards[sh]
		if o.pos == o.start {
			return
		}
		o.it.raw = buf[o.start:o.pos:o.pos]
		o.it.size = len(o.it.raw)
		o.it.hashes = hs[o.hstart:o.hpos:o.hpos]
		items = append(items, o.it)
		o.start, o.hstart, o.it = o.pos, o.hpos, item{shard: sh}
	}
	for i := range series {
		rs := &series[i]
		sh := int(rs.Hash % uint64(nShards)) // computed by the loop above
		o := &shards[sh]
		es, p := entry(rs), weight(*rs)
		if o.pos > o.start && (o.it.count()+p > maxN || o.pos-o.start+es > maxB) {
			emit(sh)
		}
		protowire.AppendBytes(append(buf[o.pos:o.pos], 0x0a), rs.Bytes(msg)) // field 1, in place
		o.pos += es
		hs[o.hpos] = rs.Hash
		o.hpos++
		o.it.add(rs)
		o.it.ext = o.it.ext || rs.Ext
		if p > maxN || es > maxB {
			emit(sh) // too large for a chunk: a chunk of its own
		}
	}
	for sh := range shards {
		emit(sh)
	}
	return items
}

// rangeChunk calls fn with each series of the chunk raw (its TimeSeries
// message, points and end offset) until fn returns false. Chunks hold
// validated series, but a malformed one is an error, not a panic.
func rangeChunk(raw []byte, fn func(ts []byte, rs prw.RawSeries, end int) bool) error {
	for off := 0; off < len(raw); {
		_, _, k := protowire.ConsumeTag(raw[off:])
		v, m := protowire.ConsumeBytes(raw[off+max(k, 0):])
		if k < 0 || m < 0 {
			return errMalformedChunk
		}
		rs, err := prw.SeriesPoints(v)
		if err != nil {
			return fmt.Errorf("%w: %w", errMalformedChunk, err)
		}
		off += k + m
		if !fn(v, rs, off) {
			return nil
		}
	}
	return nil
}

var errMalformedChunk = errors.New("malformed chunk")

// rawItems returns the chunks of raw's series and, if withMeta, of its 1.0
// family metadata (shard 0), owning their memory.
func rawItems(raw *prw.RawV1, shards, maxN, maxB int, withMeta bool) []item {
	items := chunkRaw(raw.Msg, raw.Series, shards, maxN, maxB)
	if withMeta {
		rangeFamilies(raw, func(fm *prw.FamilyMetadata) {
			items = append(items, item{family: fm, size: 8 + len(fm.MetricFamilyName) + len(fm.Help) + len(fm.Unit)})
		})
	}
	return items
}

// rangeFamilies calls fn with each valid 1.0 family metadata entry of raw.
func rangeFamilies(raw *prw.RawV1, fn func(*prw.FamilyMetadata)) {
	for _, sp := range raw.Metadata {
		var md prompb.MetricMetadata
		if md.Unmarshal(sp.Bytes(raw.Msg)) == nil {
			fn(&prw.FamilyMetadata{MetricFamilyName: md.MetricFamilyName,
				Metadata: prw.Metadata{Type: prw.MetricType(md.Type), Help: md.Help, Unit: md.Unit}})
		}
	}
}
