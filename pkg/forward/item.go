package forward

import (
	"github.com/rwgateway/gateway/pkg/prw"
)

// item is one queued entry: a chunk, a run of series of one shard in the
// form (see prw.AppendSeries) as consecutive TimeSeries fields of a 1.0
// WriteRequest; or, when family is set, one 1.0 family metadata entry.
//
// A chunk holds at most max_samples_per_send points and max_bytes_per_send
// bytes, so that a batch is whole chunks; a series over either limit alone
// is a chunk of its own, which take splits by points. Its bytes are
// read-only and may be shared by the items of several upstreams. Any item
// may go to any shard (see order.go).
type item struct {
	raw []byte
	// samples, histograms and exemplars count the chunk's points; empty its
	// series that have none (2.0 series of metadata only).
	samples, histograms, exemplars, empty uint32

	ext    bool   // a series may have the form's 2.0 extensions
	tenant string // the tenant's id, for an upstream with a tenant_header
	family *prw.FamilyMetadata
	size   int            // encoded bytes, estimated for a family
	rec    *pendingRecord // the disk queue record it was read from
	whole  *wholeRequest  // a client's whole request, sent as is (whole.go)
	// families is the family metadata of a whole request that was changed
	// (see item.metadata), sent with its series.
	families []*prw.FamilyMetadata
	// hashes are the shard hashes of its series (read-only, shared); seq
	// and gate are its number and the earlier items it waits for, set as
	// it is queued (see order).
	hashes []uint64
	seq    uint64
	gate   []mark
}

// count is what the item weighs in the queue: its points, plus 1 for each
// series without any; 1 for a family metadata entry.
func (it *item) count() int {
	if it.family != nil {
		return 1
	}
	return int(it.samples + it.histograms + it.exemplars + it.empty)
}

// points returns the item's samples, histograms and exemplars (none for a
// family metadata entry).
func (it *item) points() int { return int(it.samples + it.histograms + it.exemplars) }

// weight is what a series weighs in the queue (see item.count).
func weight(rs prw.RawSeries) int { return max(rs.Points(), 1) }

// countPoints returns the samples, histograms and exemplars of items.
func countPoints(items []item) int {
	n := 0
	for i := range items {
		n += items[i].points()
	}
	return n
}

// itemsSize returns the estimated bytes of items.
func itemsSize(items []item) int {
	n := 0
	for i := range items {
		n += items[i].size
	}
	return n
}

// split cuts the chunk it, 0 < n < it.count(), into head, its longest run
// of first series with at most n points (or the first n points of a first
// series with more, in the order the series holds them), and tail.
func (it *item) split(n int) (head, tail item, err error) {
	raw, families, err := it.chunk()
	if err != nil {
		return *it, item{}, err
	}
	head = it.like(nil)
	cut := 0
	var first []byte // the first series' TimeSeries message
	var firstRS prw.RawSeries
	err = rangeChunk(raw, true, func(ts []byte, rs prw.RawSeries, end int) bool {
		if cut > 0 && head.count()+weight(rs) > n {
			return false
		}
		if cut == 0 {
			first, firstRS = ts, rs
		}
		cut = end
		head.add(&rs)
		return true
	})
	if err != nil {
		return *it, item{}, err
	}
	if head.count() <= n {
		head.raw, head.size, head.families = raw[:cut:cut], cut, families
		return head, it.rest(&head, raw[cut:]), nil
	}
	// Only the first series, over n: cut it by its points.
	h, hrs, _, scratch, err := prw.FilterPoints(nil, first, firstRS, func(_ int, _ int64, i int) bool { return i < n }, nil)
	if err != nil {
		return *it, item{}, err
	}
	t, _, _, _, err := prw.FilterPoints(nil, first, firstRS, func(_ int, _ int64, i int) bool { return i >= n }, scratch)
	if err != nil {
		return *it, item{}, err
	}
	head = it.like(h)
	head.add(&hrs)
	head.families = families
	return head, it.rest(&head, append(t, raw[cut:]...)), nil
}

// like returns an item of the chunk raw like it, with no points counted.
func (it *item) like(raw []byte) item {
	return item{raw: raw, size: len(raw), ext: it.ext, tenant: it.tenant, rec: it.rec, seq: it.seq, gate: it.gate}
}

// add counts the points of the series rs (see count).
func (it *item) add(rs *prw.RawSeries) {
	it.samples += rs.Samples
	it.histograms += rs.Histograms
	it.exemplars += rs.Exemplars
	if rs.Points() == 0 {
		it.empty++
	}
}

// rest returns the item of the chunk raw: what it holds besides head.
func (it *item) rest(head *item, raw []byte) item {
	t := it.like(raw)
	t.samples, t.histograms = it.samples-head.samples, it.histograms-head.histograms
	t.exemplars, t.empty = it.exemplars-head.exemplars, it.empty-head.empty
	return t
}

// keepPoints returns the chunk it with only the points keep reports true
// for (see prw.FilterPoints), and the number left out; it itself when none
// is, else a chunk of its own: queued chunks are never modified.
func (it *item) keepPoints(keep func(kind int, t int64, i int) bool) (item, int, error) {
	out := it.like(nil)
	var (
		b, scratch []byte
		dropped    int
		ferr       error
	)
	raw, families, err := it.chunk()
	if err != nil {
		return *it, 0, err
	}
	err = rangeChunk(raw, false, func(ts []byte, rs prw.RawSeries, _ int) bool {
		var kept prw.RawSeries
		var d int
		mark := len(b)
		b, kept, d, scratch, ferr = prw.FilterPoints(b, ts, rs, keep, scratch)
		if ferr != nil {
			return false
		}
		if kept.Points() == 0 && d > 0 {
			b = b[:mark] // nothing left of the series
		} else {
			out.add(&kept) // one without points had none: metadata only
		}
		dropped += d
		return true
	})
	if err == nil {
		err = ferr
	}
	if err != nil || dropped == 0 {
		return *it, 0, err
	}
	out.raw, out.size, out.families = b, len(b), families
	return out, dropped, nil
}
