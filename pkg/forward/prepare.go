package forward

import (
	"slices"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/registry"
)

// prepared is one request made ready for one upstream: its chunks and
// family metadata grouped by shard, in request order within each shard.
type prepared struct {
	f      *forwarder
	items  []item
	ranges []shardRange
	total  int
	// Disk mode: the records, their size, and the encoder that holds them.
	recs     [][]byte
	recBytes int64
	enc      *recordEncoder
	// Disk mode: the request for this upstream, to be written as records,
	// and whether its metadata goes with it.
	raw  *prw.RawV1
	meta bool
	// handoff are the items of raw for the reader (see handoff), if the
	// request is written as one record.
	handoff []item
	// Points dropped by relabeling or because the upstream does not take
	// them; counted once the request is accepted.
	dropRelabel, dropUnsupported int
}

type shardRange struct {
	shard, lo, hi, count int
}

// request is one request in the form (see prw.AppendSeries), shared by the
// preparation of every upstream it goes to. It has two views: the form,
// for 2.0 upstreams, and the form without its extensions, for 1.0
// upstreams (with 2.0 metadata as 1.0 family metadata). A 1.0 request the
// receiver's scan accepted is both as it came; a decoded request is
// written in each on first use.
type request struct {
	req      *prw.Request
	form, v1 *prw.RawV1
	synths   []*synthesizer
	external labels.Labels
	// lb is the labels builder relabeling reuses.
	lb *labels.Builder
	// chunks are raw's chunks, built on first use for each chunk layout
	// and shared read-only by the upstreams of that layout: fanning out
	// copies the request once, not once per upstream.
	chunks []chunkLayout
	// families maps 1.0 family names to their metadata, for 2.0
	// upstreams; built on first use.
	families map[string]prw.Metadata
	// hasExternal is whether every series has every external label; set
	// on first use.
	hasExternal *bool
}

type chunkLayout struct {
	raw                *prw.RawV1
	shards, maxN, maxB int
	meta               bool
	items              []item
	shardOf            []int
}

// prepare makes r ready for f: external labels, write relabeling and the
// send_* settings applied, chunks cut for f's shards and batch limits.
// An upstream for which all of that changes nothing shares the request's
// chunks with the others; the rest get a copy of their own.
func (f *forwarder) prepare(r *request, p *prepared) {
	*p = prepared{f: f}
	cfg := f.cfg
	meta := cfg.MetadataConfig.Send
	v2 := f.proto() == prw.ProtoV2
	view := r.view(v2)
	raw := view
	if len(raw.Series) == 0 && (!meta || len(raw.Metadata) == 0) {
		return
	}
	if len(cfg.WriteRelabelConfigs) > 0 || !r.externalPresent(raw) ||
		(raw.Histograms > 0 && !cfg.SendNativeHistograms) || (raw.Exemplars > 0 && !cfg.SendExemplars) ||
		(v2 && meta && len(raw.Metadata) > 0) {
		raw = f.transform(r, raw, p)
	}
	var items []item
	var shardOf []int
	if raw == view {
		items, shardOf = r.chunksFor(f, raw)
	} else {
		q := &cfg.QueueConfig
		items, shardOf = rawItems(raw, len(f.shards), q.MaxSamplesPerSend, q.MaxBytesPerSend, meta && !v2)
	}
	if f.dq != nil {
		p.raw, p.meta = raw, meta && !v2
		for i := range items {
			p.total += items[i].count()
		}
		p.items = items
		if f.handoff.wants(len(raw.Msg)) {
			// The reader sets each item's record: a copy of its own.
			p.handoff = slices.Clone(items)
		}
		return
	}
	p.items, p.ranges, p.total = groupByShard(items, shardOf, len(f.shards))
}

// transform returns in, a view of r's request, as f is to be sent it:
// external labels added and write relabeling applied (prw.Relabel), the
// histograms and exemplars f does not take left out, and, for a 2.0
// upstream, 1.0 family metadata attached to the series of the family.
// What is left out is counted in p. A request that needs any of it is a
// copy of its own.
func (f *forwarder) transform(r *request, in *prw.RawV1, p *prepared) *prw.RawV1 {
	cfg := f.cfg
	out := in
	if len(cfg.WriteRelabelConfigs) > 0 || !r.externalPresent(in) {
		var err error
		out, p.dropRelabel, err = prw.Relabel(in, r.lb, func(lb *labels.Builder) bool {
			// External labels first, then write relabeling, as Prometheus does.
			r.external.Range(func(l labels.Label) {
				if lb.Get(l.Name) == "" {
					lb.Set(l.Name, l.Value)
				}
			})
			return len(cfg.WriteRelabelConfigs) == 0 || relabel.ProcessBuilder(lb, cfg.WriteRelabelConfigs...)
		})
		if err != nil {
			// Series in the form were validated: this is not reached.
			p.dropRelabel = in.Samples + in.Histograms + in.Exemplars
			return &prw.RawV1{}
		}
	}
	filter := (out.Histograms > 0 && !cfg.SendNativeHistograms) || (out.Exemplars > 0 && !cfg.SendExemplars)
	attach := f.proto() == prw.ProtoV2 && cfg.MetadataConfig.Send && len(in.Metadata) > 0
	if !filter && !attach {
		return out
	}
	keepKinds := func(kind int, _ int64, _ int) bool {
		return (kind != prw.KindHistogram || cfg.SendNativeHistograms) && (kind != prw.KindExemplar || cfg.SendExemplars)
	}
	res := &prw.RawV1{}
	var b, tmp, scratch []byte
	for _, rs := range out.Series {
		ts, cur := rs.Bytes(out.Msg), rs
		if filter {
			var dropped int
			var err error
			tmp, cur, dropped, scratch, err = prw.FilterPoints(tmp[:0], ts, rs, keepKinds, scratch)
			p.dropUnsupported += dropped
			if err != nil || cur.Points() == 0 {
				continue
			}
			ts = cur.Bytes(tmp)
		}
		md, ok := prw.Metadata{}, false
		if attach {
			md, ok = r.family(in, prw.MetricName(ts))
		}
		if ok {
			b, cur.Span, _ = prw.WithMetadata(b, ts, md)
			cur.Ext = true
		} else {
			b, cur.Span = appendSpan(b, 1, ts)
		}
		res.Append(cur)
	}
	for _, sp := range out.Metadata {
		var md prw.Span
		b, md = appendSpan(b, 3, sp.Bytes(out.Msg))
		res.Metadata = append(res.Metadata, md)
	}
	res.Msg = b
	return res
}

// appendSpan appends msg to b as field num of a WriteRequest (1 a series,
// 3 metadata) and returns its span in b.
func appendSpan(b []byte, num protowire.Number, msg []byte) ([]byte, prw.Span) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(msg)))
	sp := prw.Span{Off: uint32(len(b)), Len: uint32(len(msg))}
	return append(b, msg...), sp
}

// view returns the request in the form (v2) or as 1.0 upstreams take it.
func (r *request) view(v2 bool) *prw.RawV1 {
	p := &r.v1
	if v2 {
		p = &r.form
	}
	if *p == nil {
		sy := synthesizers.Get().(*synthesizer)
		r.synths = append(r.synths, sy)
		*p = sy.synthesize(r.req, !v2)
	}
	return *p
}

// release gives back the buffers of the views.
func (r *request) release() {
	for _, sy := range r.synths {
		synthesizers.Put(sy)
	}
}

// externalPresent reports whether every series of raw, a view of the
// request, has every external label with a non-empty value, so that
// adding them changes nothing. The views have the same labels.
func (r *request) externalPresent(raw *prw.RawV1) bool {
	if r.external.IsEmpty() {
		return true
	}
	if r.hasExternal == nil {
		ok := true
		want := r.external.Len()
		for _, rs := range raw.Series {
			found := 0
			err := prw.RangeRawLabels(rs.Bytes(raw.Msg), func(name, value []byte) {
				if len(value) > 0 && r.external.Has(string(name)) {
					found++
				}
			})
			if err != nil || found < want {
				ok = false
				break
			}
		}
		r.hasExternal = &ok
	}
	return *r.hasExternal
}

// family returns the 1.0 family metadata of the series named name, from
// the metadata of raw, the form: that of the name itself, or of the name
// without a _bucket, _count, _sum or _total suffix.
func (r *request) family(raw *prw.RawV1, name string) (prw.Metadata, bool) {
	if r.families == nil {
		r.families = make(map[string]prw.Metadata, len(raw.Metadata))
		for _, sp := range raw.Metadata {
			var md prompb.MetricMetadata
			if err := md.Unmarshal(sp.Bytes(raw.Msg)); err != nil {
				continue // the receiver checked it
			}
			if _, ok := r.families[md.MetricFamilyName]; !ok {
				r.families[md.MetricFamilyName] = familyFromV1(&md).Metadata
			}
		}
	}
	if md, ok := r.families[name]; ok {
		return md, true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum", "_total"} {
		if len(name) > len(suffix) && name[len(name)-len(suffix):] == suffix {
			md, ok := r.families[name[:len(name)-len(suffix)]]
			return md, ok
		}
	}
	return prw.Metadata{}, false
}

// chunksFor returns the chunks of raw, a view of the request, for f, and
// each one's shard. The caller must not modify them.
func (r *request) chunksFor(f *forwarder, raw *prw.RawV1) ([]item, []int) {
	q := &f.cfg.QueueConfig
	key := chunkLayout{raw: raw, shards: len(f.shards), maxN: q.MaxSamplesPerSend, maxB: q.MaxBytesPerSend,
		meta: f.cfg.MetadataConfig.Send && f.proto() == prw.ProtoV1}
	for i := range r.chunks {
		l := &r.chunks[i]
		if l.raw == key.raw && l.shards == key.shards && l.maxN == key.maxN && l.maxB == key.maxB && l.meta == key.meta {
			return l.items, l.shardOf
		}
	}
	key.items, key.shardOf = rawItems(raw, key.shards, key.maxN, key.maxB, key.meta)
	r.chunks = append(r.chunks, key)
	return key.items, key.shardOf
}

// rawItems returns the chunks of raw's series and, if withMeta, the items
// of its 1.0 family metadata (in shard 0), all owning their memory, and
// each one's shard.
func rawItems(raw *prw.RawV1, shards, maxN, maxB int, withMeta bool) ([]item, []int) {
	items, shardOf := chunkRaw(raw.Msg, raw.Series, shards, maxN, maxB)
	if withMeta {
		for _, sp := range raw.Metadata {
			var md prompb.MetricMetadata
			if err := md.Unmarshal(sp.Bytes(raw.Msg)); err != nil {
				continue // the receiver checked it
			}
			items = append(items, familyItem(familyFromV1(&md)))
			shardOf = append(shardOf, 0)
		}
	}
	return items, shardOf
}

// familyFromV1 converts 1.0 metadata to the model's form.
func familyFromV1(md *prompb.MetricMetadata) *prw.FamilyMetadata {
	return &prw.FamilyMetadata{
		MetricFamilyName: md.MetricFamilyName,
		Metadata:         prw.Metadata{Type: prw.MetricTypeFromV1(md.Type), Help: md.Help, Unit: md.Unit},
	}
}

// groupByShard orders items by shard, stably, so that per-series order
// holds, and returns each shard's range of them.
func groupByShard(items []item, shardOf []int, nShards int) (sorted []item, ranges []shardRange, total int) {
	counts := make([]int, nShards+1)
	for _, sh := range shardOf {
		counts[sh+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	sorted = make([]item, len(items))
	pos := counts[:nShards]
	starts := make([]int, len(pos))
	copy(starts, pos)
	for i := range items {
		sh := shardOf[i]
		sorted[pos[sh]] = items[i]
		pos[sh]++
	}
	for sh := range starts {
		lo, hi := starts[sh], pos[sh]
		if lo == hi {
			continue
		}
		c := 0
		for j := lo; j < hi; j++ {
			c += sorted[j].count()
		}
		ranges = append(ranges, shardRange{shard: sh, lo: lo, hi: hi, count: c})
		total += c
	}
	return sorted, ranges, total
}

// reserve takes room for p in every shard it touches, all or nothing.
func (p *prepared) reserve() bool {
	for i, r := range p.ranges {
		if !p.f.shards[r.shard].reserve(r.count) {
			p.releaseFirst(i)
			return false
		}
	}
	return true
}

// releaseFirst gives back the reservations of p's first n ranges.
func (p *prepared) releaseFirst(n int) {
	for _, r := range p.ranges[:n] {
		p.f.shards[r.shard].unreserve(r.count)
	}
}

// commit appends p's items to the shards it reserved room in (in disk mode
// its records were appended to the disk queue already) and counts what was
// dropped.
func (p *prepared) commit() {
	f := p.f
	f.drop(registry.DropRelabel, p.dropRelabel)
	f.drop(registry.DropUnsupported, p.dropUnsupported)
	if f.dq != nil {
		return
	}
	if p.total > 0 {
		f.m.queueLength.Add(float64(p.total))
	}
	for _, r := range p.ranges {
		f.shards[r.shard].appendItems(p.items[r.lo:r.hi], r.count)
	}
}
