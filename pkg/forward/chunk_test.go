package forward

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

// rawRequest marshals wr and describes its series as the receiver does.
func rawRequest(t *testing.T, wr *prompb.WriteRequest) ([]byte, []prw.RawSeries) {
	t.Helper()
	msg, err := wr.Marshal()
	require.NoError(t, err)
	var series []prw.RawSeries
	for b := msg; len(b) > 0; {
		num, _, k := protowire.ConsumeTag(b)
		v, m := protowire.ConsumeBytes(b[k:])
		require.Positive(t, k)
		require.Positive(t, m)
		off := len(msg) - len(b) + k + m - len(v)
		b = b[k+m:]
		if num != 1 {
			continue
		}
		rs, err := prw.SeriesPoints(v)
		require.NoError(t, err)
		rs.Hash, _, err = prw.HashSeries(v, nil)
		require.NoError(t, err)
		rs.Span = prw.Span{Off: uint32(off), Len: uint32(len(v))}
		series = append(series, rs)
	}
	return msg, series
}

// unevenRequest has series of 1 to 5 samples, and one of 40.
func unevenRequest(n int) *prompb.WriteRequest {
	wr := rwtest.V1Request(n, 5)
	for i := range wr.Timeseries {
		wr.Timeseries[i].Samples = wr.Timeseries[i].Samples[:i%5+1]
	}
	big := &wr.Timeseries[n/2]
	for j := range 40 {
		big.Samples = append(big.Samples, prompb.Sample{Value: float64(j), Timestamp: int64(1000 + j)})
	}
	return wr
}

// seriesOf returns the TimeSeries messages of a batch of chunks, in order.
func seriesOf(t *testing.T, items []item) [][]byte {
	t.Helper()
	var out [][]byte
	for i := range items {
		require.NoError(t, rangeChunk(items[i].raw, true, func(ts []byte, _ prw.RawSeries, _ int) bool {
			out = append(out, ts)
			return true
		}))
	}
	return out
}

// Chunks hold the series in order, within the batch limits, with their
// hashes; a series over them is an item of its own; the counts add up.
func TestChunkRaw(t *testing.T) {
	const maxN, maxB = 20, 2048
	wr := unevenRequest(200)
	msg, series := rawRequest(t, wr)
	items := chunkRaw(msg, series, maxN, maxB, false)

	var want [][]byte
	var wantHashes, hashes []uint64
	wantPoints := 0
	for _, rs := range series {
		want = append(want, bytes.Clone(rs.Bytes(msg)))
		wantHashes = append(wantHashes, rs.Hash)
		wantPoints += rs.Points()
	}
	points, singles := 0, 0
	for i := range items {
		it := &items[i]
		points += it.count()
		hashes = append(hashes, it.hashes...)
		require.Equal(t, len(it.raw), it.size)
		require.Len(t, it.hashes, len(seriesOf(t, []item{*it})))
		if it.count() > maxN {
			singles++
			require.Len(t, seriesOf(t, []item{*it}), 1, "only an oversized series is over the limit, alone")
			continue
		}
		require.LessOrEqual(t, len(it.raw), maxB)
		n := 0
		require.NoError(t, rangeChunk(it.raw, true, func(_ []byte, rs prw.RawSeries, _ int) bool {
			n += rs.Points()
			return true
		}))
		require.Equal(t, n, it.count())
		if i+1 < len(items) && items[i+1].count() <= maxN {
			next := items[i+1].count()
			require.True(t, it.count()+next > maxN || len(it.raw)+len(items[i+1].raw) > maxB, "chunks as full as the limits allow")
		}
	}
	require.Equal(t, 1, singles)
	require.Equal(t, wantPoints, points)
	require.Equal(t, wantHashes, hashes)
	clear(msg) // the items own their bytes
	require.Equal(t, want, seriesOf(t, items))
}

// A message the chunks may keep (owned) that starts with the series'
// fields in order is not copied: the chunks are its bytes, equal to the
// copies; in any other layout it is copied.
func TestChunkRawOwned(t *testing.T) {
	const maxN, maxB = 20, 2048
	msg, series := rawRequest(t, unevenRequest(200))
	owned := chunkRaw(msg, series, maxN, maxB, true)
	require.Equal(t, chunkRaw(msg, series, maxN, maxB, false), owned)
	require.Same(t, &msg[0], &owned[0].raw[0], "not copied")
	swapped := slices.Clone(series)
	swapped[0], swapped[1] = swapped[1], swapped[0]
	owned = chunkRaw(msg, swapped, maxN, maxB, true)
	require.Equal(t, chunkRaw(msg, swapped, maxN, maxB, false), owned)
	require.NotSame(t, &msg[0], &owned[0].raw[0], "copied")
}

// Splitting a chunk cuts it at a series boundary, keeps the bytes and the
// counts, and gives the head at most n points unless its first series
// alone has more.
// A request's chunks made one 2.0 record are one whole item of that
// record's body, with every series' hash and point, when they fit a batch;
// else, or with family metadata items, they stay as they are.
func TestRecordWhole(t *testing.T) {
	wr := unevenRequest(60)
	msg, series := rawRequest(t, wr)
	items := chunkRaw(msg, series, 20, 1<<20, false)
	require.Greater(t, len(items), 1)
	enc := newRecordEncoder()
	recs, _, err := enc.encode(items, prw.ProtoV2, true, time.Now())
	require.NoError(t, err)
	require.Len(t, recs, 1)

	got := enc.whole(items, 2000, 1<<20)
	require.Len(t, got, 1)
	w := got[0]
	require.NotNil(t, w.whole)
	require.Equal(t, prw.ProtoV2, w.whole.proto)
	require.Equal(t, countPoints(items), w.points())
	require.Equal(t, itemsSize(items), w.size)
	var hashes []uint64
	for i := range items {
		hashes = append(hashes, items[i].hashes...)
	}
	require.Equal(t, hashes, w.hashes)
	require.True(t, bytes.HasSuffix(recs[0], w.whole.wire), "the record's body")
	chunk, _, err := w.chunk()
	require.NoError(t, err)
	require.Equal(t, seriesOf(t, items), seriesOf(t, []item{{raw: chunk}}))

	require.Equal(t, items, enc.whole(items, countPoints(items)-1, 1<<20), "over max_samples_per_send")
	require.Equal(t, items, enc.whole(items, 2000, itemsSize(items)-1), "over max_bytes_per_send")
	withFamily := append(slices.Clone(items), item{family: &prw.FamilyMetadata{MetricFamilyName: "x"}})
	require.Equal(t, withFamily, enc.whole(withFamily, 2000, 1<<20))
}

func TestSplitChunk(t *testing.T) {
	wr := unevenRequest(30)
	wr.Timeseries = slices.Delete(wr.Timeseries, 15, 16) // no oversized one
	msg, series := rawRequest(t, wr)
	items := chunkRaw(msg, series, 1000, 1<<20, false)
	require.Len(t, items, 1)
	c := items[0]
	all := seriesOf(t, items)
	for n := 1; n < c.count(); n++ {
		head, tail, err := c.split(n)
		require.NoError(t, err)
		require.Equal(t, c.count(), head.count()+tail.count())
		require.Equal(t, c.samples, head.samples+tail.samples)
		hs := seriesOf(t, []item{head})
		require.NotEmpty(t, hs)
		require.LessOrEqual(t, head.count(), n, "n=%d head %d points in %d series", n, head.count(), len(hs))
		require.Equal(t, len(head.raw), head.size)
		require.Equal(t, len(tail.raw), tail.size)
		if bytes.Equal(c.raw, append(slices.Clip(head.raw), tail.raw...)) {
			require.Equal(t, all, append(hs, seriesOf(t, []item{tail})...))
			continue
		}
		// The first series was cut by its points: its samples are the
		// head's and the tail's first series', in order.
		var first, h, tl prompb.TimeSeries
		require.NoError(t, first.Unmarshal(all[0]))
		require.NoError(t, h.Unmarshal(hs[0]))
		ts := seriesOf(t, []item{tail})
		require.NoError(t, tl.Unmarshal(ts[0]))
		require.Len(t, hs, 1)
		require.Equal(t, first.Labels, h.Labels)
		require.Equal(t, first.Labels, tl.Labels)
		require.Equal(t, first.Samples, append(h.Samples, tl.Samples...))
		require.Equal(t, all[1:], ts[1:])
	}
}

// A batch of chunks encodes to the WriteRequest of their series.
func TestChunkEncode(t *testing.T) {
	wr := unevenRequest(60)
	msg, series := rawRequest(t, wr)
	sorted := chunkRaw(msg, series, 25, 4096, false)

	data, st, err := newEncoder().encode(prw.ProtoV1, sorted, true)
	require.NoError(t, err)
	body, err := snappy.Decode(nil, data)
	require.NoError(t, err)
	var got prompb.WriteRequest
	require.NoError(t, got.Unmarshal(body))
	total := 0
	for _, ts := range wr.Timeseries {
		total += len(ts.Samples)
	}
	require.Equal(t, total, st.samples)
	var gotSeries, wantSeries []string
	for _, ts := range got.Timeseries {
		b, err := ts.Marshal()
		require.NoError(t, err)
		gotSeries = append(gotSeries, string(b))
	}
	for _, b := range seriesOf(t, sorted) {
		wantSeries = append(wantSeries, string(b))
	}
	require.Equal(t, wantSeries, gotSeries, "the batch holds the chunks' series in order")
}

// The handoff gives the reader the entry of the position it reads, refuses
// entries of positions it has passed, drops the ones it skipped, and holds
// at most maxHandoffBytes.
func TestHandoff(t *testing.T) {
	q, err := queue.Open(queue.Options{Dir: t.TempDir(), Upstream: "u", MaxBytes: 1 << 20, Metrics: queue.NewMetrics(prometheus.NewRegistry())})
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close() })
	var pos []queue.Position
	for i := range 4 {
		p, err := q.AppendAt([]byte{byte(i)})
		require.NoError(t, err)
		pos = append(pos, p)
	}
	var h handoff
	now := time.Now()
	one := []item{{raw: []byte("x"), samples: 1}}
	require.True(t, h.put(pos[0], one, now, 10))
	require.True(t, h.put(pos[2], one, now, 10))
	require.True(t, h.put(pos[3], one, now, 10))
	got, at, ok := h.take(pos[0])
	require.True(t, ok)
	require.Equal(t, one, got)
	require.Equal(t, now, at)
	_, _, ok = h.take(pos[1])
	require.False(t, ok, "nothing was put for it")
	require.False(t, h.put(pos[1], one, now, 10), "the reader passed it")
	_, _, ok = h.take(pos[3])
	require.True(t, ok, "skipping 2")
	require.Empty(t, h.entries, "the entry of the skipped record is gone")
	require.Zero(t, h.bytes)

	var h2 handoff
	require.True(t, h2.wants(maxHandoffBytes))
	require.True(t, h2.put(pos[0], one, now, maxHandoffBytes))
	require.False(t, h2.wants(1))
	require.False(t, h2.put(pos[1], one, now, 1), "full")
	require.Equal(t, 2, h.hits)
	require.Equal(t, 1, h.misses)
	require.True(t, bytes.Equal(got[0].raw, []byte("x")))
}

// Upstreams of the same chunk layout share one copy of a request; another
// layout gets its own.
func TestSharedChunks(t *testing.T) {
	wr := rwtest.V1Request(50, 1)
	msg, series := rawRequest(t, wr)
	raw := &prw.RawV1{Msg: msg, Series: series, Samples: 50}
	fwd := func(shards, maxN int) *forwarder {
		u := testUpstream(t, "u", "http://127.0.0.1:1/", false)
		u.QueueConfig.MaxSamplesPerSend = maxN
		return &forwarder{cfg: u, shards: make([]*shard, shards)}
	}
	a, b, c := fwd(4, 100), fwd(2, 100), fwd(4, 20)
	var r request
	ia := r.chunksFor(a, raw)
	ib := r.chunksFor(b, raw)
	ic := r.chunksFor(c, raw)
	require.Same(t, &ia[0], &ib[0], "same batch limits, same chunks, whatever the shards")
	require.NotSame(t, &ia[0].raw[0], &ic[0].raw[0])
	require.Len(t, r.chunks, 2)
	var sa, sc int
	for i := range ia {
		sa += ia[i].count()
	}
	for i := range ic {
		sc += ic[i].count()
	}
	require.Equal(t, 50, sa)
	require.Equal(t, 50, sc)
}
