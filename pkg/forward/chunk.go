package forward

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/prometheus/prometheus/prompb"
	"github.com/rwgateway/gateway/pkg/prw"
)

// Chunks: a request's series are queued as items of at most the batch
// limits, each a run of consecutive TimeSeries fields of a 1.0
// WriteRequest, copied once into one pointer-free buffer per request: a
// batch copies it once, and the queue, the reader and the garbage collector
// see a few items instead of hundreds. Each goes to a shard as a whole
// request does (see order.route).

// chunkRaw copies the series of msg (series in the form) into chunks of at
// most maxN points and maxB bytes, in order; a series over either limit is
// a chunk of its own. If owned, msg is not reused while the chunks are
// kept (see rewrites): when it starts with the series' fields, in order,
// the chunks are its bytes, not a copy.
func chunkRaw(msg []byte, series []prw.RawSeries, maxN, maxB int, owned bool) (items []item) {
	if len(series) == 0 {
		return nil
	}
	total, inPlace := 0, owned
	for i := range series {
		rs := &series[i]
		hdr := 1 + protowire.SizeVarint(uint64(rs.Len)) // tag, length
		if inPlace && int(rs.Off) == total+hdr && msg[total] == 0x0a {
			n, k := protowire.ConsumeVarint(msg[total+1:])
			inPlace = k == hdr-1 && n == uint64(rs.Len)
		} else {
			inPlace = false
		}
		total += hdr + int(rs.Len)
	}
	var buf []byte
	if inPlace {
		buf = msg[:0:total]
	} else {
		buf = make([]byte, 0, total)
	}
	hs := make([]uint64, len(series))
	var it item
	start, first := 0, 0 // where it starts in buf, and its first series
	emit := func(end int) {
		if len(buf) > start {
			it.raw, it.size, it.hashes = buf[start:len(buf):len(buf)], len(buf)-start, hs[first:end:end]
			items = append(items, it)
		}
		it, start, first = item{}, len(buf), end
	}
	for i := range series {
		rs := &series[i]
		es, p := 1+protowire.SizeBytes(int(rs.Len)), weight(*rs)
		if len(buf) > start && (it.count()+p > maxN || len(buf)-start+es > maxB) {
			emit(i)
		}
		if inPlace {
			buf = buf[:len(buf)+es]
		} else {
			buf = protowire.AppendBytes(append(buf, 0x0a), rs.Bytes(msg)) // field 1
		}
		hs[i] = rs.ShardHash(msg)
		it.add(rs)
		it.ext = it.ext || rs.Ext
		if p > maxN || es > maxB {
			emit(i + 1) // too large for a chunk: a chunk of its own
		}
	}
	emit(len(series))
	return items
}

// rangeChunk calls fn with each series of the chunk raw (its TimeSeries
// message, its points if points, and its end offset) until fn returns
// false. Chunks hold validated series, but a malformed one is an error,
// not a panic.
func rangeChunk(raw []byte, points bool, fn func(ts []byte, rs prw.RawSeries, end int) bool) error {
	for off := 0; off < len(raw); {
		_, _, k := protowire.ConsumeTag(raw[off:])
		v, m := protowire.ConsumeBytes(raw[off+max(k, 0):])
		if k < 0 || m < 0 {
			return errMalformedChunk
		}
		var rs prw.RawSeries
		if points {
			var err error
			if rs, err = prw.SeriesPoints(v); err != nil {
				return fmt.Errorf("%w: %w", errMalformedChunk, err)
			}
		}
		off += k + m
		if !fn(v, rs, off) {
			return nil
		}
	}
	return nil
}

var errMalformedChunk = errors.New("malformed chunk")

// rawItems returns the chunks of raw's series and, if withMeta, its 1.0
// family metadata items, owning their memory: raw.Msg's if owned (see
// chunkRaw), else a copy.
func rawItems(raw *prw.RawV1, maxN, maxB int, withMeta, owned bool) []item {
	items := chunkRaw(raw.Msg, raw.Series, maxN, maxB, owned)
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
		if fm := readFamily(sp.Bytes(raw.Msg)); fm != nil {
			fn(fm)
		}
	}
}

// readFamily returns the MetricMetadata message md, nil if not valid.
func readFamily(md []byte) *prw.FamilyMetadata {
	var m prompb.MetricMetadata
	if m.Unmarshal(md) != nil {
		return nil
	}
	return &prw.FamilyMetadata{MetricFamilyName: m.MetricFamilyName,
		Metadata: prw.Metadata{Type: prw.MetricType(m.Type), Help: m.Help, Unit: m.Unit}}
}
