package forward

import (
	"math"
	"slices"
	"sync"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/rwgateway/gateway/pkg/prw"
)

// request is one request in the form (see prw.AppendSeries), shared by the
// preparation of every upstream it goes to, with what is made of it on
// first use (the fields after lb). 1.0 upstreams are sent its series
// without the form's extensions, which only 2.0 data has (see
// encoder.marshalV1); a 2.0 request decoded as 1.0 data has none.
type request struct {
	req      *prw.Request
	form     *prw.RawV1
	tenant   string
	external labels.Labels
	lb       *labels.Builder // reused by relabeling
	// chunks are a view's chunks for each chunk layout, shared read-only
	// by the upstreams of that layout: fanning out copies the request
	// once, not once per upstream.
	chunks      []chunkLayout
	families    map[string]prw.Metadata // 1.0 family metadata by name, for 2.0 upstreams
	hasExternal *bool                   // whether every series has every external label
	// wholes are the request as a whole item (see whole.go) in 1.0 and
	// 2.0, shared read-only; an item's whole is nil if it cannot be one.
	wholes [2]*item
	// compressed holds a 2.0 request's 1.0 body (see wholeFor).
	compressed *[]byte
}

type chunkLayout struct {
	key   chunkKey
	items []item
}

type chunkKey struct {
	raw        *prw.RawV1
	maxN, maxB int
	meta       bool
}

// compressedBufs hold the 1.0 bodies of 2.0 requests until Enqueue returns.
var compressedBufs = sync.Pool{New: func() any { return new([]byte) }}

// release gives back the request's buffers; the request no longer points
// into them.
func (r *request) release() {
	if r.compressed == nil {
		return
	}
	r.form.Compressed, r.form.AsSent = nil, false
	if cap(*r.compressed) <= prw.MaxPooledBytes {
		compressedBufs.Put(r.compressed)
	}
}

// externalPresent reports whether every series of raw, a view of the
// request (both have the same labels), has every external label with a
// non-empty value, so that adding them changes nothing.
func (r *request) externalPresent(raw *prw.RawV1) bool {
	if r.external.IsEmpty() {
		return true
	}
	if r.hasExternal == nil {
		var names []string
		r.external.Range(func(l labels.Label) { names = append(names, l.Name) })
		ok := !slices.ContainsFunc(raw.Series, func(rs prw.RawSeries) bool {
			// Both are sorted by name: one merge, no lookups.
			found, missing := 0, false
			err := prw.RangeRawLabels(rs.Bytes(raw.Msg), func(name, value []byte) bool {
				switch {
				case names[found] < string(name): // it sorts before this label: none
					missing = true
				case names[found] == string(name):
					missing, found = len(value) == 0, found+1
				}
				return !missing && found < len(names)
			})
			return err != nil || missing || found < len(names)
		})
		r.hasExternal = &ok
	}
	return *r.hasExternal
}

// family returns the 1.0 family metadata of the series named name, from
// the metadata of raw, the form: that of the name itself, or of the name
// without a _bucket, _count, _sum or _total suffix.
func (r *request) family(raw *prw.RawV1, name []byte) (prw.Metadata, bool) {
	if r.families == nil {
		r.families = make(map[string]prw.Metadata, len(raw.Metadata))
		rangeFamilies(raw, func(fm *prw.FamilyMetadata) { addFamily(r.families, fm) })
	}
	return familyOf(r.families, name)
}

// addFamily adds fm to families unless its family has an entry: the first
// entry of a family counts.
func addFamily(families map[string]prw.Metadata, fm *prw.FamilyMetadata) {
	if _, ok := families[fm.MetricFamilyName]; !ok {
		families[fm.MetricFamilyName] = fm.Metadata
	}
}

// familyOf returns the metadata of the family of the series named name in
// families: the name's own, or that of the name without a _bucket, _count,
// _sum or _total suffix.
func familyOf(families map[string]prw.Metadata, name []byte) (prw.Metadata, bool) {
	if md, ok := families[string(name)]; ok {
		return md, true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum", "_total"} {
		if len(name) > len(suffix) && string(name[len(name)-len(suffix):]) == suffix {
			md, ok := families[string(name[:len(name)-len(suffix)])]
			return md, ok
		}
	}
	return prw.Metadata{}, false
}

// chunksFor returns the chunks of raw, a view of the request, for f. The
// caller must not modify them.
func (r *request) chunksFor(f *forwarder, raw *prw.RawV1) []item {
	q := &f.cfg.QueueConfig
	key := chunkKey{raw: raw, maxN: q.MaxSamplesPerSend, maxB: q.MaxBytesPerSend,
		meta: f.cfg.MetadataConfig.Send && f.proto() == prw.ProtoV1}
	for _, l := range r.chunks {
		if l.key == key {
			return l.items
		}
	}
	items := rawItems(raw, key.maxN, key.maxB, key.meta, false)
	r.chunks = append(r.chunks, chunkLayout{key, items})
	return items
}

// wholeFor returns raw, the request's view for proto, as a whole item for
// an upstream of batch limits maxN and maxB that sends metadata if meta,
// or an item of nil whole if it cannot be one. The caller must not modify
// what it points to.
func (r *request) wholeFor(raw *prw.RawV1, proto prw.Protocol, maxN, maxB int, meta bool) item {
	if r.wholes[proto] == nil {
		if proto == prw.ProtoV1 && r.req.Proto == prw.ProtoV2 && raw == r.form && !raw.Ext && raw.Compressed == nil {
			// A 2.0 request decoded as 1.0 data is what a 1.0 client
			// would have sent: compressed once, for every 1.0 upstream
			// and its queue record, it is a body as sent.
			r.compressed = compressedBufs.Get().(*[]byte)
			*r.compressed = appendSnappy((*r.compressed)[:0], raw.Msg)
			raw.Compressed, raw.AsSent = *r.compressed, true
		}
		it, _ := wholeItem(raw, proto, math.MaxInt, math.MaxInt)
		r.wholes[proto] = &it
	}
	if w := r.wholes[proto]; w.whole != nil && w.count() <= maxN && w.size <= maxB && (meta || w.whole.metadata == 0) {
		return *w
	}
	return item{}
}
