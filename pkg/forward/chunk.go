package forward

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// Chunks: the fast path queues a request's raw series not one item per
// series but one item per shard and batch, a chunk, whose raw is the
// shard's series as consecutive TimeSeries fields of a 1.0 WriteRequest,
// copied once into a single pointer-free buffer per request. A chunk goes
// into a batch with one copy and costs the shard queue, the disk reader
// and the garbage collector one item instead of hundreds: per-series items
// were about a quarter of the gateway's CPU per sample.
//
// A chunk holds at most max_samples_per_send points and max_bytes_per_send
// bytes, so that a batch is whole chunks; a series over either limit alone
// is queued as a raw item of its own, which take splits the general way.

// chunkRaw copies the series of msg (spans described by series, all of
// them raw 1.0 TimeSeries messages) into chunks for nShards shards of at
// most maxN points and maxB bytes each. It returns the items, each shard's
// in order, and the shard of each. A chunk's hash is its shard number (so
// that hash % nShards is its shard, as for any raw item).
func chunkRaw(msg []byte, series []prw.RawSeries, nShards, maxN, maxB int) (items []item, shardOf []int) {
	if len(series) == 0 {
		return nil, nil
	}
	entry := func(rs *prw.RawSeries) int {
		return 1 + protowire.SizeVarint(uint64(rs.Len)) + int(rs.Len)
	}
	total := 0
	for i := range series {
		total += entry(&series[i])
	}
	// Each shard writes its series into its own region of buf, so that a
	// chunk is contiguous.
	type open struct {
		start, pos, points     int
		samples, hists, exemps uint32
	}
	shards := make([]open, nShards)
	off := 0
	for i := range series {
		shards[series[i].Hash%uint64(nShards)].pos += entry(&series[i])
	}
	for sh := range shards {
		n := shards[sh].pos
		shards[sh] = open{start: off, pos: off}
		off += n
	}
	buf := make([]byte, total)
	items = make([]item, 0, nShards+total/max(maxB, 1))
	shardOf = make([]int, 0, cap(items))
	emit := func(sh int) {
		o := &shards[sh]
		if o.pos == o.start {
			return
		}
		it := item{
			raw: buf[o.start:o.pos:o.pos], chunk: true, hash: uint64(sh),
			rawSamples: o.samples, rawHists: o.hists, rawExemplars: o.exemps,
		}
		it.size = estimateSize(&it)
		items = append(items, it)
		shardOf = append(shardOf, sh)
		*o = open{start: o.pos, pos: o.pos}
	}
	for i := range series {
		rs := &series[i]
		sh := int(rs.Hash % uint64(nShards))
		o := &shards[sh]
		es, p := entry(rs), rs.Points()
		if o.pos > o.start && (o.points+p > maxN || o.pos-o.start+es > maxB) {
			emit(sh)
		}
		b := buf[o.pos:o.pos]
		b = append(b, 0x0a)
		b = protowire.AppendVarint(b, uint64(rs.Len))
		b = append(b, rs.Bytes(msg)...)
		if p > maxN || es > maxB {
			// Too large for a chunk: a raw item of its own.
			ts := buf[o.pos+es-int(rs.Len) : o.pos+es : o.pos+es]
			items = append(items, rawItem(ts, *rs))
			shardOf = append(shardOf, sh)
			o.pos += es
			o.start = o.pos
			continue
		}
		o.pos += es
		o.points += p
		o.samples += rs.Samples
		o.hists += rs.Histograms
		o.exemps += rs.Exemplars
	}
	for sh := range shards {
		emit(sh)
	}
	return items, shardOf
}

// rangeChunk calls fn for each series of the chunk raw, in order: its
// TimeSeries message, what prw.ScanRawSeries reads of it, and the offset
// in raw just past its field. fn returns false to stop. Chunks are built
// from validated series only, but a malformed one ends the walk with an
// error rather than a panic.
func rangeChunk(raw []byte, fn func(ts []byte, rs prw.RawSeries, end int) bool) error {
	var h prw.LabelHasher
	for off := 0; off < len(raw); {
		_, _, k := protowire.ConsumeTag(raw[off:])
		if k < 0 {
			return errMalformedChunk
		}
		v, m := protowire.ConsumeBytes(raw[off+k:])
		if m < 0 {
			return errMalformedChunk
		}
		rs, err := prw.ScanRawSeries(v, &h)
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

// chunkSeries returns the series of a chunk as raw items of their own.
func (it *item) chunkSeries() ([]item, error) {
	var out []item
	err := rangeChunk(it.raw, func(ts []byte, rs prw.RawSeries, _ int) bool {
		ri := rawItem(ts, rs)
		ri.rec = it.rec
		out = append(out, ri)
		return true
	})
	return out, err
}

// seriesCount returns the number of series in a chunk.
func (it *item) seriesCount() int {
	n := 0
	_ = rangeChunk(it.raw, func([]byte, prw.RawSeries, int) bool { n++; return n < 2 })
	return n
}

// splitChunk is split for a chunk: head is the longest run of its first
// series with at most n points, tail the rest. If the first series alone
// has more than n points (possible only when n is below
// max_samples_per_send, for the byte limit), head is that series.
func (it *item) splitChunk(n int) (head, tail item) {
	head = item{chunk: true, hash: it.hash, rec: it.rec}
	cut := 0
	_ = rangeChunk(it.raw, func(_ []byte, rs prw.RawSeries, end int) bool {
		if cut > 0 && int(head.rawSamples+head.rawHists+head.rawExemplars)+rs.Points() > n {
			return false
		}
		cut = end
		head.rawSamples += rs.Samples
		head.rawHists += rs.Histograms
		head.rawExemplars += rs.Exemplars
		return true
	})
	head.raw = it.raw[:cut:cut]
	tail = item{
		raw: it.raw[cut:], chunk: true, hash: it.hash, rec: it.rec,
		rawSamples: it.rawSamples - head.rawSamples, rawHists: it.rawHists - head.rawHists,
		rawExemplars: it.rawExemplars - head.rawExemplars,
	}
	head.size, tail.size = estimateSize(&head), estimateSize(&tail)
	return head, tail
}

// expandRaw returns items with every raw item and chunk decoded into
// structured items, for the rare uses that need points one by one (the
// age limit, a 2.0 encoding); items itself when there is none. An error
// means a raw item could not be decoded.
func expandRaw(items []item) ([]item, error) {
	has := false
	for i := range items {
		has = has || items[i].raw != nil
	}
	if !has {
		return items, nil
	}
	out := make([]item, 0, len(items))
	for i := range items {
		it := &items[i]
		if it.raw == nil {
			out = append(out, *it)
			continue
		}
		series := []item{*it}
		if it.chunk {
			var err error
			if series, err = it.chunkSeries(); err != nil {
				return nil, err
			}
		}
		for j := range series {
			st, err := series[j].structured()
			if err != nil {
				return nil, err
			}
			out = append(out, st)
		}
	}
	return out, nil
}
