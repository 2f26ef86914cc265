package forward

import (
	"slices"
	"sync"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/registry"
)

// prepared is one request made ready for one upstream: its items (a whole
// request, or chunks and family metadata), in request order.
type prepared struct {
	f     *forwarder
	items []item
	// rewritten is a request of rewrites that transform wrote, until
	// given back (see release).
	rewritten *prw.RawV1
	// Memory mode: the shard of each item that holds room for it, and the
	// items' bytes of the memory budget, if reserved.
	shards   []int
	reserved bool
	bytes    int
	// Disk mode: the records, their size and the encoder holding them; the
	// request to write, in which protocol, whether with its metadata, and
	// its tenant if sent; the items for the reader (see handoff) if it is
	// one record.
	recs     [][]byte
	recBytes int64
	enc      *recordEncoder
	raw      *prw.RawV1
	proto    prw.Protocol
	meta     bool
	tenant   string
	handoff  []item
	// What the upstream is handed (before relabeling) and the points
	// dropped, counted once the request is accepted.
	handedS, handedH, handedE    int
	handedBy                     string // the tenant
	dropRelabel, dropUnsupported int
}

// prepare makes r ready for f: external labels, write relabeling and the
// send_* settings applied, chunks cut for f's batch limits.
// An upstream for which all of that changes nothing shares the request's
// chunks with the others; the rest get a copy of their own.
func (f *forwarder) prepare(r *request, p *prepared) {
	*p = prepared{f: f}
	cfg := f.cfg
	meta := cfg.MetadataConfig.Send
	proto := f.proto()
	v2 := proto == prw.ProtoV2
	view := r.form
	if len(view.Series) == 0 && (!meta || len(view.Metadata) == 0) {
		return
	}
	p.handedS, p.handedH, p.handedE, p.handedBy = view.Samples, view.Histograms, view.Exemplars, r.tenant
	raw := f.transform(r, view, v2, p)
	q := &cfg.QueueConfig
	var items []item
	var whole item // its whole is nil if the request cannot go whole
	if raw == view && (!v2 || meta) {
		// A 2.0 request carries its series' metadata, so it goes whole
		// only where metadata is sent.
		whole = r.wholeFor(raw, proto, q.MaxSamplesPerSend, q.MaxBytesPerSend, meta)
	}
	switch {
	case whole.whole != nil:
		items = []item{whole}
	case raw == view:
		items = r.chunksFor(f, raw)
	default:
		items = rawItems(raw, q.MaxSamplesPerSend, q.MaxBytesPerSend, meta && !v2, true) // raw is transform's own
	}
	if cfg.TenantHeader != "" && r.tenant != "" {
		// The items carry the tenant to the batches: copies of their own,
		// as the request's chunks are shared.
		items = slices.Clone(items)
		for i := range items {
			items[i].tenant = r.tenant
		}
		p.tenant = r.tenant
	}
	p.items = items
	if f.dq != nil {
		p.raw, p.proto, p.meta = raw, proto, meta && !v2
		if f.handoff.wants(len(raw.Msg)) {
			p.handoff = slices.Clone(items) // the reader sets each one's record
		}
	}
}

// transform returns in, a view of r's request, as f is to be sent it:
// external labels added and write relabeling applied, the histograms and
// exemplars f does not take left out (counted in p), and, for a 2.0
// upstream (v2), 1.0 family metadata attached to the family's series. If
// any of it changes in, the result is a copy of its own.
func (f *forwarder) transform(r *request, in *prw.RawV1, v2 bool, p *prepared) *prw.RawV1 {
	cfg := f.cfg
	out := in
	var err error
	if f.relabel != nil || !r.externalPresent(in) {
		dst := rewrites.Get().(*prw.RawV1)
		if f.relabel != nil {
			out, p.dropRelabel, err = f.relabel.apply(r, in, dst)
		} else {
			// External labels only: added in the series' bytes, as
			// Relabel would add them.
			out, err = prw.AddLabels(in, r.external, dst)
		}
		p.rewrote(out, in, dst)
	}
	if err != nil {
		// Series in the form were validated: this is not reached.
		p.dropRelabel = in.Samples + in.Histograms + in.Exemplars
		return &prw.RawV1{}
	}
	filter := (out.Histograms > 0 && !cfg.SendNativeHistograms) || (out.Exemplars > 0 && !cfg.SendExemplars)
	attach := v2 && cfg.MetadataConfig.Send && len(in.Metadata) > 0
	if !filter && !attach {
		return out
	}
	defer p.recycle() // a copy of out follows: nothing refers to out
	keepKinds := func(kind int, _ int64, _ int) bool {
		return (kind != prw.KindHistogram || cfg.SendNativeHistograms) && (kind != prw.KindExemplar || cfg.SendExemplars)
	}
	res := &prw.RawV1{}
	var tmp, scratch []byte
	for _, rs := range out.Series {
		ts, cur := rs.Bytes(out.Msg), rs
		if filter {
			var dropped int
			var err error
			tmp, cur, dropped, scratch, err = prw.FilterPoints(tmp[:0], ts, rs, keepKinds, scratch)
			p.dropUnsupported += dropped
			if err != nil || (cur.Points() == 0 && rs.Points() > 0) {
				continue
			}
			ts = cur.Bytes(tmp)
		}
		md, ok := prw.Metadata{}, false
		if attach {
			md, ok = r.family(in, prw.MetricName(ts))
		}
		if ok {
			// On the validated form WithMetadata does not fail; if it did,
			// ts would be appended as it is, without the family's metadata.
			res.Msg, cur.Span, _ = prw.WithMetadata(res.Msg, ts, md)
			cur.Ext, cur.Meta = true, true
		} else {
			res.Msg, cur.Span = prw.AppendField(res.Msg, 1, ts)
		}
		res.Append(cur)
	}
	res.CopyMetadata(out)
	return res
}

// load is what the shard sh holds, in points: what order routes by.
func (f *forwarder) load(sh int) int64 { return f.shards[sh].points.used.Load() }

// reserve places each item in a shard in use (see order.route) and takes
// room for it there, all or nothing. In disk mode the reader does, later.
func (p *prepared) reserve() bool {
	f := p.f
	if f.dq != nil || len(p.items) == 0 {
		return true
	}
	if p.bytes = itemsSize(p.items); !f.mem.take(p.bytes) {
		return false
	}
	p.reserved = true
	active := f.activeShards()
	for i := range p.items {
		it := &p.items[i]
		sh := f.order.route(it.hashes, active, f.load)
		if !f.shards[sh].points.take(it.count()) {
			p.unreserve()
			return false
		}
		p.shards = append(p.shards, sh)
	}
	return true
}

// unreserve gives back what reserve took.
func (p *prepared) unreserve() {
	if p.reserved {
		for i, sh := range p.shards {
			p.f.shards[sh].points.give(p.items[i].count())
		}
		p.f.mem.give(p.bytes)
		p.shards, p.reserved = p.shards[:0], false
	}
}

// rewrites are the memory of requests that write relabeling or external
// labels changed, for reuse. Such a request is an upstream's own (see
// transform), and its items are its bytes (chunkRaw, owned). A disk
// queue's items are copied into records, and the handoff keeps them as a
// whole item, a copy of the record's body, when the request is one: once
// Enqueue returns, nothing refers to the request then. A memory queue
// keeps its items.
var rewrites = sync.Pool{New: func() any { return new(prw.RawV1) }}

// rewrote keeps out as p's rewritten request unless it is in, the
// request's view: a request transform changed is its own (dst, or one
// prw.Relabel made for it). It gives dst, of rewrites, back unless out is
// it.
func (p *prepared) rewrote(out, in, dst *prw.RawV1) {
	if out != in {
		p.rewritten = out
	}
	if out != dst {
		rewrites.Put(dst)
	}
}

// recycle gives p's rewritten request back to rewrites.
func (p *prepared) recycle() {
	if d := p.rewritten; d != nil {
		p.rewritten = nil
		if cap(d.Msg) <= prw.MaxPooledBytes {
			rewrites.Put(d)
		}
	}
}

// release recycles p's rewritten request when Enqueue is done with it, if
// nothing that outlives Enqueue refers to it (see rewrites): its
// upstream's queue is on disk, and the handoff was given none of its
// chunks (see handingOff).
func (p *prepared) release() {
	if p.f != nil && p.f.dq != nil {
		p.recycle()
	}
}

// handingOff is called before p's handoff items go to the handoff, which
// then owns them: a chunk among them is bytes of p's rewritten request,
// which is then the handoff's, never recycled.
func (p *prepared) handingOff() {
	for i := range p.handoff {
		if p.handoff[i].whole == nil {
			p.rewritten = nil
			return
		}
	}
}

// commit appends p's items to the shards it reserved room in (in disk mode
// its records are on disk already) and counts what was dropped.
func (p *prepared) commit() {
	f := p.f
	f.handed(p.handedBy, p.handedS, p.handedH, p.handedE)
	f.drop(registry.DropRelabel, p.dropRelabel)
	f.drop(registry.DropUnsupported, p.dropUnsupported)
	if f.dq != nil {
		return
	}
	for i, sh := range p.shards {
		n := p.items[i].count()
		f.m.QueueLength.Add(float64(n))
		f.shards[sh].appendItems(p.items[i:i+1], n)
	}
}
