package forward

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"

	"github.com/prometheus/client_golang/prometheus/testutil"
	pmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

// TestOrderGates: an item waits for the latest earlier item of each other
// shard that holds one of its series and is not sent, and for nothing once
// those are done; a sweep forgets series whose last item was sent.
func TestOrderGates(t *testing.T) {
	o := newOrder(3)
	queue := func(shard int, hashes ...uint64) item {
		o.mu.Lock()
		defer o.mu.Unlock()
		it := item{hashes: hashes}
		o.queue(&it, shard)
		return it
	}
	a := queue(0, 1, 2)          // seq 1
	b := queue(1, 3)             // seq 2
	c := queue(0, 2, 4)          // seq 3: same shard as 1 and 2's last item
	d := queue(2, 1, 2, 3, 4, 5) // seq 4
	require.Nil(t, a.gate)
	require.Nil(t, b.gate)
	require.Nil(t, c.gate, "a series' earlier item in the same shard is sent first anyway")
	require.Equal(t, []mark{{seq: 3, shard: 0}, {seq: 2, shard: 1}}, d.gate, "the latest item per shard")
	require.False(t, o.ready(d.gate))

	o.done(0, 1)
	require.False(t, o.ready(d.gate), "seq 3 of shard 0 is still pending")
	o.done(0, 3)
	o.done(1, 2)
	require.True(t, o.ready(d.gate))
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	o.wait(ctx, d.gate)
	require.NoError(t, ctx.Err(), "wait returns at once when ready")

	e := queue(1, 5) // seq 5: 5 is pending in shard 2
	require.Equal(t, []mark{{seq: 4, shard: 2}}, e.gate)
	waited := make(chan struct{})
	go func() { o.wait(t.Context(), e.gate); close(waited) }()
	select {
	case <-waited:
		t.Fatal("wait returned before the item it waits for was sent")
	case <-time.After(50 * time.Millisecond):
	}
	o.done(2, 4)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return once the item was sent")
	}

	o.mu.Lock()
	o.reserve(len(o.last.entries)) // a rebuild
	require.Equal(t, 1, o.last.n, "only the series of the pending item are kept")
	m, ok := o.last.get(5)
	require.True(t, ok)
	require.Equal(t, mark{seq: 5, shard: 1}, m)
	o.mu.Unlock()

	// A whole item goes to the shard of the latest pending item of its
	// series, waiting for the others; with none pending, to the least
	// loaded shard.
	load := func(sh int) int64 { return []int64{5, 1, 3}[sh] }
	queue(0, 7) // seq 6
	w := item{hashes: []uint64{7, 5, 8}}
	require.Equal(t, 0, o.route(w.hashes, 3, load), "seq 6 is the latest")
	require.Equal(t, 0, o.place(&w, 3, load))
	require.Equal(t, uint64(7), w.seq)
	require.Equal(t, []mark{{seq: 5, shard: 1}}, w.gate)
	require.Equal(t, 0, o.route([]uint64{7}, 1, load), "the latest item of its series")
	o.done(0, 7)
	require.Equal(t, 1, o.route([]uint64{7}, 3, load), "none pending: the least loaded")
	require.Equal(t, 0, o.route([]uint64{5}, 1, load), "not to a shard no longer in use (seq 5 is in shard 1)")
	queue(2, 9) // seq 8
	v := item{hashes: []uint64{8, 9}}
	require.Equal(t, 2, o.place(&v, 3, load), "to the shard of seq 8, not the least loaded (1)")
	require.Nil(t, v.gate)
	o.done(2, v.seq)

	// With nothing pending, a rebuild empties the table where it is.
	o.done(1, 5)
	size := len(o.last.entries)
	many := make([]uint64, size/4+10)
	for i := range many {
		many[i] = uint64(1000 + i)
	}
	o.done(0, queue(0, many...).seq)
	o.mu.Lock()
	first := &o.last.entries[0]
	o.reserve(size/2 - 1) // past three quarters full: a rebuild, to this size
	require.Len(t, o.last.entries, size)
	require.Zero(t, o.last.n)
	require.Same(t, first, &o.last.entries[0], "emptied, not made anew")
	_, ok = o.last.get(5)
	require.False(t, ok)
	o.mu.Unlock()
	f := queue(2, 5, 7)
	require.Nil(t, f.gate)
	require.Equal(t, 2, o.route([]uint64{5}, 3, load), "f, pending in shard 2, is the latest of 5")
}

func TestDesiredShards(t *testing.T) {
	sec := float64(time.Second)
	for _, tc := range []struct {
		name          string
		cur, lo, hi   int
		in, out, busy float64 // points/s, points/s, seconds busy per second
		pending       int64
		want          int
	}{
		{"nothing sent: kept", 3, 1, 50, 1000, 0, 0, 0, 3},
		{"a fast upstream at a low rate: one shard", 4, 1, 50, 1000, 1000, 0.01, 0, 1},
		{"2.5 senders busy: 3 shards", 1, 1, 50, 100000, 100000, 2.5, 0, 3},
		{"within the headroom: kept", 3, 1, 50, 100000, 100000, 2.5, 0, 3},
		{"one shard behind: two", 1, 1, 50, 2_600_000, 2_300_000, 1, 0, 2},
		{"a little below: kept", 2, 1, 50, 100000, 100000, 0.99, 0, 2},
		{"down, keeping headroom", 10, 1, 50, 100000, 100000, 3, 0, 4},
		{"a backlog adds shards", 1, 1, 50, 10000, 10000, 0.5, 500_000, 6},
		{"bounded by max_shards", 1, 1, 8, 100000, 100000, 20, 0, 8},
		{"bounded by min_shards", 10, 4, 50, 100, 100, 0.01, 0, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := desiredShards(tc.cur, tc.lo, tc.hi, tc.in, tc.out, tc.busy*sec, tc.pending)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestUpdateShardsFollowsRates feeds the rates a forwarder measures and
// checks the number of shards it updates to.
func TestUpdateShardsFollowsRates(t *testing.T) {
	u := testUpstream(t, "u", "http://example.invalid/", false)
	u.QueueConfig.MinShards, u.QueueConfig.MaxShards = 1, 10
	f, err := newForwarder(discardLogger(), registry.NewForwardMetrics(nil), u, "ua", time.Minute, nil, nil, nil)
	require.NoError(t, err)
	interval := shardUpdateInterval
	feed := func(points int64, busy time.Duration) {
		f.rates.in.add(points)
		f.rates.out.add(points)
		f.rates.busy.add(int64(busy))
		f.lastSend.Store(time.Now().UnixNano())
		f.updateShards(interval)
	}
	require.Equal(t, 1, f.activeShards())
	feed(100_000, 3500*time.Millisecond) // 3.5 senders busy
	require.Equal(t, 4, f.activeShards())
	require.Equal(t, 4.0, testutil.ToFloat64(f.m.Shards))
	// The rates are averages, so it takes a few intervals to come down to
	// one shard.
	for range 20 {
		feed(1_000, 10*time.Millisecond)
	}
	require.Equal(t, 1, f.activeShards())

	// An upstream that took nothing recently is not resharded for.
	f.rates.in.add(1_000_000)
	f.rates.out.add(1_000_000)
	f.rates.busy.add(int64(100 * time.Second))
	f.lastSend.Store(time.Now().Add(-time.Hour).UnixNano())
	f.updateShards(interval)
	require.Equal(t, 1, f.activeShards())
}

// TestReshardKeepsSeriesOrder reshards from one shard to four while the
// first request is still being sent by shard 0: the series that move to
// the idle shards 1 to 3 must not overtake their earlier samples.
func TestReshardKeepsSeriesOrder(t *testing.T) {
	for _, disk := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "disk"}[disk], func(t *testing.T) {
			testDisk = disk
			defer func() { testDisk = false }()
			up := newFakeUpstream(t, func(_ http.ResponseWriter, _ *http.Request, got *gotRequest, _ int) int {
				for _, s := range got.series {
					if len(s.Samples) > 0 && s.Samples[0].Timestamp == 1 {
						time.Sleep(200 * time.Millisecond) // the first request's batches arrive late
						break
					}
				}
				return http.StatusNoContent
			})
			u := testUpstream(t, "u", up.srv.URL, false)
			u.QueueConfig.MinShards, u.QueueConfig.MaxShards = 1, 4
			m, _, _ := newTestManager(t, testConfig(u))
			f := m.set.byName["u"]
			const series = 64
			req := func(ts int64) *prw.Request {
				var ss []prw.Series
				for i := range series {
					ss = append(ss, floatSeries(ts, 1, "__name__", "m", "i", intString(i)))
				}
				return prw.NewRequest(prw.ProtoV1, ss, nil)
			}
			require.NoError(t, m.Enqueue(t.Context(), req(1), "", nil))
			// Once the first request is queued in the one shard: four shards
			// from now on.
			require.Eventually(t, func() bool { return f.shards[0].points.used.Load() == series }, waitFor, tick)
			f.setShards(1, 4)
			require.NoError(t, m.Enqueue(t.Context(), req(2), "", nil))
			require.Eventually(t, func() bool { return up.samples() == 2*series }, waitFor, tick)
			n, _ := requireSeriesInOrder(t, up.series())
			require.Equal(t, series, n)
		})
	}
}

// TestLowRateRequestLeavesWhole: at a low rate a sender's request of a few
// series leaves as one upstream request, not one per shard: at the defaults
// (one shard in use), and at four shards, sent as it came or relabeled.
func TestLowRateRequestLeavesWhole(t *testing.T) {
	for _, c := range []struct {
		disk, relabel bool
		minShards     int
	}{{false, false, 1}, {true, false, 1}, {false, true, 4}, {true, true, 4}} {
		t.Run(fmt.Sprintf("disk=%v,relabel=%v,min_shards=%d", c.disk, c.relabel, c.minShards), func(t *testing.T) {
			testDisk = c.disk
			defer func() { testDisk = false }()
			up := newFakeUpstream(t, nil)
			u := testUpstream(t, "u", up.srv.URL, false)
			u.QueueConfig.MinShards, u.QueueConfig.MaxShards = c.minShards, 50
			u.QueueConfig.BatchSendDeadline = pmodel.Duration(50 * time.Millisecond)
			if c.relabel {
				u.WriteRelabelConfigs = relabelConfigs(t, `
- target_label: via
  replacement: gw
`)
			}
			m, _, _ := newTestManager(t, testConfig(u))
			for round := range 3 {
				var ss []prw.Series
				for i := range 6 {
					ss = append(ss, floatSeries(int64(round+1), 1, "__name__", "node_load1", "instance", "host-"+intString(i)))
				}
				r := prw.NewRequest(prw.ProtoV1, ss, nil)
				require.NoError(t, m.Enqueue(t.Context(), r, "", nil))
				require.Eventually(t, func() bool { return up.samples() == 6*(round+1) }, waitFor, tick)
				require.Len(t, up.requests(), round+1, "each request of 6 series leaves as one")
			}
		})
	}
}

// clientRequest decodes body, a compressed 1.0 request, as the write handler
// does: in the form as it came, with the client's body.
func clientRequest(t *testing.T, body []byte) *prw.Request {
	t.Helper()
	msg, err := snappy.Decode(nil, body)
	require.NoError(t, err)
	dec := prw.NewV1Decoder()
	d, err := dec.Decode(msg)
	require.NoError(t, err)
	require.True(t, d.Req.Raw.AsSent)
	d.Req.Raw.Compressed = body
	return &d.Req
}

// TestWholeRequestSentAsItCame: a request the upstream takes unchanged
// leaves with the client's own bytes, whatever the number of shards, and
// its series arrive in order across requests; cut after a 413, all of it
// arrives.
func TestWholeRequestSentAsItCame(t *testing.T) {
	for _, disk := range []bool{false, true} {
		for _, tc := range []struct {
			name           string
			minShards      int
			limit          int // the upstream answers 413 above this many samples
			wantSameBytes  bool
			wantMinBatches int
		}{
			{"one shard", 1, 0, true, 3},
			{"four shards", 4, 0, true, 3},
			{"one shard, 413", 1, 40, false, 6},
		} {
			t.Run(map[bool]string{false: "memory", true: "disk"}[disk]+"/"+tc.name, func(t *testing.T) {
				testDisk = disk
				defer func() { testDisk = false }()
				up := newFakeUpstream(t, func(_ http.ResponseWriter, r *http.Request, got *gotRequest, _ int) int {
					n := 0
					for _, s := range got.series {
						n += len(s.Samples)
					}
					if tc.limit > 0 && n > tc.limit {
						return http.StatusRequestEntityTooLarge
					}
					return http.StatusNoContent
				})
				rec, url := recordBodies(t, up, nil)
				u := testUpstream(t, "u", url, false)
				u.QueueConfig.MinShards, u.QueueConfig.MaxShards = tc.minShards, 4
				u.QueueConfig.MaxSamplesPerSend = 2000
				m, _, _ := newTestManager(t, testConfig(u))
				var sent [][]byte
				ts := int64(0)
				for i := range 3 {
					req := &prompb.WriteRequest{}
					for s := range 50 {
						pts := make([]prompb.Sample, i+1)
						for j := range pts {
							pts[j] = prompb.Sample{Timestamp: ts + int64(j) + 1, Value: float64(s)}
						}
						req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: prompb.FromLabels(rwtest.SeriesLabels(s), nil), Samples: pts})
					}
					ts += int64(i + 1)
					msg, err := req.Marshal()
					require.NoError(t, err)
					body := literalSnappy(msg)
					sent = append(sent, body)
					require.NoError(t, m.Enqueue(t.Context(), clientRequest(t, body), "", nil))
				}
				want := 50 * (1 + 2 + 3)
				require.Eventually(t, func() bool { return up.samples() == want }, waitFor, tick)
				bodies := rec.get()
				require.GreaterOrEqual(t, len(bodies), tc.wantMinBatches)
				same := 0
				for _, b := range bodies {
					for _, s := range sent {
						if bytes.Equal(s, b) {
							same++
						}
					}
				}
				switch {
				case tc.wantSameBytes:
					require.Len(t, bodies, len(sent))
					require.Equal(t, len(sent), same, "each request sent as it came")
				default:
					require.Equal(t, 1, same, "only the first attempt, refused, is the client's bytes")
				}
				// Every sample once, each series in order.
				_, n := requireSeriesInOrder(t, up.series())
				require.Equal(t, want, n)
			})
		}
	}
}

// TestWholeRequestWaitsForItsSeries: requests sent whole go to different
// shards; one holding series of two earlier ones, still being sent by two
// shards, waits for both, so its series arrive in order, and still leaves
// as it came.
func TestWholeRequestWaitsForItsSeries(t *testing.T) {
	for _, disk := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "disk"}[disk], func(t *testing.T) {
			testDisk = disk
			defer func() { testDisk = false }()
			up := newFakeUpstream(t, func(_ http.ResponseWriter, _ *http.Request, got *gotRequest, _ int) int {
				switch got.series[0].Samples[0].Timestamp {
				case 1:
					time.Sleep(400 * time.Millisecond)
				case 2:
					time.Sleep(100 * time.Millisecond)
				}
				return http.StatusNoContent
			})
			rec, url := recordBodies(t, up, nil)
			u := testUpstream(t, "u", url, false)
			u.QueueConfig.MinShards, u.QueueConfig.MaxShards = 4, 4
			m, _, _ := newTestManager(t, testConfig(u))
			body := func(ts int64, lo, hi int) []byte {
				req := &prompb.WriteRequest{}
				for s := lo; s < hi; s++ {
					req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: prompb.FromLabels(rwtest.SeriesLabels(s), nil),
						Samples: []prompb.Sample{{Timestamp: ts, Value: 1}}})
				}
				msg, err := req.Marshal()
				require.NoError(t, err)
				return literalSnappy(msg)
			}
			// Series 0-9 at 1, 10-19 at 2 (each its own shard, as the
			// least loaded), then 0-19 at 3.
			bodies := [][]byte{body(1, 0, 10), body(2, 10, 20), body(3, 0, 20)}
			for _, b := range bodies {
				require.NoError(t, m.Enqueue(t.Context(), clientRequest(t, b), "", nil))
				time.Sleep(20 * time.Millisecond) // placed before the next comes
			}
			require.Eventually(t, func() bool { return up.samples() == 40 }, waitFor, tick)
			n, _ := requireSeriesInOrder(t, up.series())
			require.Equal(t, 20, n)
			require.Equal(t, bodies, rec.get(), "each sent as it came, in the order of their series")
		})
	}
}

// TestWholeV2RequestSentAsItCame: a 2.0 request, every series of it
// accepted, leaves for a 2.0 upstream as it came (also when read back from
// disk), and converted for a 1.0 upstream: in no more requests than were
// sent, each with the family metadata of its series. (Where no upstream
// takes 2.0, the request is read as 1.0 data and sent whole: see
// TestWholeV1ViewOfV2Request.)
func TestWholeV2RequestSentAsItCame(t *testing.T) {
	for _, disk := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "disk"}[disk], func(t *testing.T) {
			testDisk = disk
			defer func() { testDisk = false }()
			up2, up1 := newFakeUpstream(t, nil), newFakeUpstream(t, nil)
			rec2, url2 := recordBodies(t, up2, nil)
			rec1, url1 := recordBodies(t, up1, nil)
			m, _, _ := newTestManager(t, testConfig(testUpstream(t, "v2", url2, true), testUpstream(t, "v1", url1, false)))
			var sent [][]byte
			for i := range 3 {
				req := rwtest.V2Request(20, i+1)
				for j := range req.Timeseries {
					for k := range req.Timeseries[j].Samples {
						req.Timeseries[j].Samples[k].Timestamp += int64(100 * i)
					}
				}
				msg, err := req.Marshal()
				require.NoError(t, err)
				body := literalSnappy(msg)
				sent = append(sent, body)
				dec := prw.NewV2Decoder()
				d, err := dec.Decode(msg)
				require.NoError(t, err)
				require.Zero(t, d.Invalid.Count)
				d.Req.Raw.Compressed = body // as the write handler does
				require.NoError(t, m.Enqueue(t.Context(), &d.Req, "", nil))
				dec.Release(d)
			}
			const want = 20 * (1 + 2 + 3)
			require.Eventually(t, func() bool { return up2.samples() == want && up1.samples() == want }, waitFor, tick)
			require.Equal(t, sent, rec2.get(), "sent to the 2.0 upstream as it came")
			require.LessOrEqual(t, len(rec1.get()), len(sent), "no more requests than were sent")
			for _, b := range rec1.get() {
				require.NotContains(t, sent, b, "converted for the 1.0 upstream")
			}
			for _, r := range up1.requests() {
				require.NotEmpty(t, r.metadata, "with its family metadata")
			}
			f := m.set.byName["v1"]
			md := 0
			for _, r := range up1.requests() {
				md += len(r.metadata)
			}
			require.Eventually(t, func() bool { return testutil.ToFloat64(f.m.SentMetadata) == float64(md) }, waitFor, tick,
				"counted once answered")
			for _, s := range up2.series() {
				require.False(t, s.Metadata.Empty(), "metadata kept")
			}
			require.Eventually(t, func() bool {
				return testutil.ToFloat64(m.set.byName["v2"].m.SentMetadata) == float64(len(up2.series()))
			}, waitFor, tick, "each series' metadata counted")
		})
	}
}

// requireSeriesInOrder checks that every series' samples arrived in
// timestamp order, each once, and returns the number of series and of
// samples.
func requireSeriesInOrder(t *testing.T, got []prw.Series) (series, samples int) {
	t.Helper()
	last := map[string]int64{}
	for _, s := range got {
		key := s.Labels.String()
		for _, x := range s.Samples {
			require.Greater(t, x.Timestamp, last[key], "series %s out of order", key)
			last[key] = x.Timestamp
			samples++
		}
	}
	return len(last), samples
}

// literalSnappy returns msg as a valid snappy block of literals only, as
// no encoder here writes it: bytes sent unchanged are told apart from
// bytes compressed again.
func literalSnappy(msg []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(msg)))
	for len(msg) > 0 {
		n := min(len(msg), 1<<16)
		b = append(b, 61<<2, byte(n-1), byte((n-1)>>8)) // a literal of n bytes, length in 2 bytes
		b = append(b, msg[:n]...)
		msg = msg[n:]
	}
	return b
}

// TestBacklogSentAsItCame: a backlog read from disk after a restart, with
// nothing handed over from Enqueue, is sent with the client's bytes too.
func TestBacklogSentAsItCame(t *testing.T) {
	dir := t.TempDir()
	var sw switchable
	sw.code.Store(http.StatusServiceUnavailable)
	up := newFakeUpstream(t, sw.respond)
	rec, url := recordBodies(t, up, func() bool { return sw.code.Load() == http.StatusNoContent })
	u := testUpstream(t, "u", url, false)
	u.QueueConfig.MaxSamplesPerSend = 2000

	m1, _, _, _ := newTestManagerOpts(t, testConfig(u), diskOpts(dir))
	var sent [][]byte
	for i := range 3 {
		req := &prompb.WriteRequest{}
		for s := range 20 {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: prompb.FromLabels(rwtest.SeriesLabels(s), nil), Samples: []prompb.Sample{{Timestamp: int64(i + 1), Value: 1}}})
		}
		msg, err := req.Marshal()
		require.NoError(t, err)
		sent = append(sent, literalSnappy(msg))
		require.NoError(t, m1.Enqueue(t.Context(), clientRequest(t, sent[i]), "", nil))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	m1.Stop(ctx)
	cancel()
	time.Sleep(50 * time.Millisecond) // an attempt cancelled by Stop is answered 503 still

	sw.code.Store(http.StatusNoContent)
	newTestManagerOpts(t, testConfig(u), diskOpts(dir))
	require.Eventually(t, func() bool { return up.samples() == 60 }, waitFor, tick)
	require.Equal(t, sent, rec.get(), "each record sent as the client's bytes, in order")
}

// TestWaitedForBatchIsSentAtOnce: a batch that is not full waits for
// batch_send_deadline, unless another shard's batch waits for it (its
// series moved there in a reshard): then both are sent at once.
func TestWaitedForBatchIsSentAtOnce(t *testing.T) {
	up := newFakeUpstream(t, nil)
	u := testUpstream(t, "u", up.srv.URL, false)
	u.QueueConfig.MinShards, u.QueueConfig.MaxShards = 1, 4
	u.QueueConfig.MaxSamplesPerSend = 100
	u.QueueConfig.BatchSendDeadline = pmodel.Duration(time.Minute)
	m, _, _ := newTestManager(t, testConfig(u))
	f := m.set.byName["u"]
	// 10 series, none of which stays in shard 0 when 4 shards send.
	var moved []labels.Labels
	for i := 0; len(moved) < 10; i++ {
		ls := labels.FromStrings("__name__", "m", "i", intString(i))
		raw := prw.NewRequest(prw.ProtoV1, []prw.Series{{Labels: ls}}, nil).Raw
		if raw.Series[0].ShardHash(raw.Msg)%4 != 0 {
			moved = append(moved, ls)
		}
	}
	req := func(ts int64, n int) *prw.Request {
		var ss []prw.Series
		for _, ls := range moved {
			ss = append(ss, floatSeries(ts, n, "__name__", "m", "i", ls.Get("i")))
		}
		return prw.NewRequest(prw.ProtoV1, ss, nil)
	}
	require.NoError(t, m.Enqueue(t.Context(), req(1, 1), "", nil))
	time.Sleep(50 * time.Millisecond)
	require.Zero(t, up.samples(), "a batch that is not full waits for the deadline")
	f.setShards(1, 4)
	// Their next samples go to shards 1 to 3, as full batches (a series of
	// 100 samples each) that wait for shard 0's.
	require.NoError(t, m.Enqueue(t.Context(), req(2, 100), "", nil))
	require.Eventually(t, func() bool { return up.samples() == 1010 }, 5*time.Second, tick)
	n, _ := requireSeriesInOrder(t, up.series())
	require.Equal(t, 10, n)
}

// TestBacklogMultipliesShards: shards that fall further behind (here: a
// memory queue refused a request and more is pending than before) are
// multiplied by backlogGrowth at once, at most every 500 ms, and none is
// removed soon after.
func TestBacklogMultipliesShards(t *testing.T) {
	u := testUpstream(t, "u", "http://example.invalid/", false)
	u.QueueConfig.MinShards, u.QueueConfig.MaxShards = 1, 8
	f, err := newForwarder(discardLogger(), registry.NewForwardMetrics(nil), u, "ua", time.Minute, nil, nil, nil)
	require.NoError(t, err)
	f.lastSend.Store(time.Now().UnixNano())
	behind := func(pending int64) {
		f.pending.Store(pending)
		f.refused.Store(true)
		f.checkBacklog()
	}
	behind(1000)
	require.Equal(t, 8, f.activeShards(), "multiplied by backlogGrowth")
	f.setShards(8, 2)
	behind(2000)
	require.Equal(t, 2, f.activeShards(), "at most one step every 500 ms")
	f.reshardAt.Store(time.Now().Add(-time.Second).UnixNano())
	behind(1500)
	require.Equal(t, 2, f.activeShards(), "catching up: kept")
	behind(3000)
	require.Equal(t, 8, f.activeShards(), "up to max_shards")
	f.checkBacklog()
	require.Equal(t, 8, f.activeShards(), "no backlog, no change")

	// The rates call for one shard, but the shards fell behind just now.
	f.rates.in.add(1000)
	f.rates.out.add(1000)
	f.rates.busy.add(int64(time.Millisecond))
	f.updateShards(shardUpdateInterval)
	require.Equal(t, 8, f.activeShards())
	f.backlogAt.Store(time.Now().Add(-backlogHold).UnixNano())
	f.updateShards(shardUpdateInterval)
	require.Equal(t, 1, f.activeShards())
}

// bodyRecorder keeps the bodies of the requests an upstream received, as
// they came.
type bodyRecorder struct {
	mu     sync.Mutex
	bodies [][]byte
}

// recordBodies returns a server that answers as up does and records the
// bodies of the requests (of those keep reports true for, if not nil).
func recordBodies(t *testing.T, up *fakeUpstream, keep func() bool) (*bodyRecorder, string) {
	rec := &bodyRecorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if keep == nil || keep() {
			rec.mu.Lock()
			rec.bodies = append(rec.bodies, body)
			rec.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		up.serve(w, r)
	}))
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

func (b *bodyRecorder) get() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.bodies)
}
