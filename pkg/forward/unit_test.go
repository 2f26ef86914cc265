package forward

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	pmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name, in string
		want     time.Duration
	}{
		{name: "empty", in: "", want: 0},
		{name: "seconds", in: "3", want: 3 * time.Second},
		{name: "zero", in: "0", want: 0},
		{name: "negative", in: "-4", want: 0},
		{name: "http date", in: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{name: "date in the past", in: now.Add(-time.Hour).Format(http.TimeFormat), want: 0},
		{name: "capped", in: "86400", want: maxRetryAfter},
		{name: "garbage", in: "soon", want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, parseRetryAfter(tc.in, now))
		})
	}
}

func TestFamilyName(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  prw.MetricType
		want string
	}{
		{name: "http_duration_seconds_bucket", typ: writev2.Metadata_METRIC_TYPE_HISTOGRAM, want: "http_duration_seconds"},
		{name: "rpc_seconds_sum", typ: writev2.Metadata_METRIC_TYPE_SUMMARY, want: "rpc_seconds"},
		{name: "requests_total", typ: writev2.Metadata_METRIC_TYPE_COUNTER, want: "requests_total"},
		{name: "jobs_count", typ: writev2.Metadata_METRIC_TYPE_GAUGE, want: "jobs_count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, prw.FamilyName(tc.name, tc.typ))
		})
	}
	// A 2.0 upstream finds a series' 1.0 family metadata by its name, or
	// by its name without a suffix.
	gauge := prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "g"}
	counter := prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: "c"}
	raw := prw.NewRequest(prw.ProtoV1, nil, []prw.FamilyMetadata{
		{MetricFamilyName: "up", Metadata: gauge}, {MetricFamilyName: "requests", Metadata: counter},
	}).Raw
	var r request
	for name, want := range map[string]prw.Metadata{"up": gauge, "requests_total": counter, "requests": counter, "up_total": gauge, "down": {}} {
		got, ok := r.family(raw, []byte(name))
		require.Equal(t, want, got, name)
		require.Equal(t, want != prw.Metadata{}, ok, name)
	}
}

// seriesRequest returns a request of the given series.
func seriesRequest1(ss ...prw.Series) *prw.Request { return prw.NewRequest(prw.ProtoV1, ss, nil) }

// decodeChunk returns the series of a chunk.
func decodeChunk(t *testing.T, it *item) []prompb.TimeSeries {
	t.Helper()
	var out []prompb.TimeSeries
	require.NoError(t, rangeChunk(it.raw, true, func(b []byte, _ prw.RawSeries, _ int) bool {
		var ts prompb.TimeSeries
		require.NoError(t, ts.Unmarshal(b))
		out = append(out, ts)
		return true
	}))
	return out
}

// newTestShard returns a shard of a forwarder that is never started.
func newTestShard(t *testing.T, q func(*config.QueueConfig)) *shard {
	t.Helper()
	u := testUpstream(t, "u", "http://example.invalid/", false)
	u.QueueConfig.MaxShards = 1
	q(&u.QueueConfig)
	f, err := newForwarder(discardLogger(), registry.NewForwardMetrics(nil), u, "ua", time.Minute, nil, nil, nil)
	require.NoError(t, err)
	return f.shards[0]
}

func TestTakeCutsBatches(t *testing.T) {
	t.Run("by samples, splitting a long series", func(t *testing.T) {
		s := newTestShard(t, func(q *config.QueueConfig) { q.MaxSamplesPerSend = 10 })
		items := formItems(seriesRequest1(floatSeries(0, 25, "__name__", "x")), math.MaxInt, math.MaxInt)
		require.Len(t, items, 1)
		require.True(t, s.points.take(25))
		s.appendItems(items, 25)
		var got []int64
		for {
			b, n, _, _ := s.take()
			if n == 0 {
				break
			}
			require.LessOrEqual(t, n, 10)
			for _, ts := range decodeChunk(t, &b[0]) {
				for _, x := range ts.Samples {
					got = append(got, x.Timestamp)
				}
			}
		}
		require.Len(t, got, 25)
		for i, ts := range got {
			require.Equal(t, int64(i), ts)
		}
	})
	t.Run("by bytes", func(t *testing.T) {
		const maxBytes = 2048
		s := newTestShard(t, func(q *config.QueueConfig) { q.MaxBytesPerSend = maxBytes })
		var ss []prw.Series
		for i := range 100 {
			ss = append(ss, floatSeries(0, 3, "__name__", "node_cpu_seconds_total", "instance", "host-0123456789.example.com:9100", "i", intString(i)))
		}
		req := prw.NewRequest(prw.ProtoV1, ss, nil)
		items := formItems(req, 3, math.MaxInt) // a chunk per series
		require.True(t, s.points.take(300))
		s.appendItems(items, 300)
		enc := newEncoder()
		total := 0
		var sizes []int
		for {
			b, n, _, _ := s.take()
			if n == 0 {
				break
			}
			total += n
			data, _, err := enc.encode(prw.ProtoV1, b, true)
			require.NoError(t, err)
			msg, err := snappy.Decode(nil, data)
			require.NoError(t, err)
			require.LessOrEqual(t, len(msg), maxBytes, "encoded batch within max_bytes_per_send")
			sizes = append(sizes, len(msg))
		}
		require.Equal(t, 300, total)
		for _, n := range sizes[:len(sizes)-1] {
			require.Greater(t, n, maxBytes/2, "estimate is close: %v", sizes)
		}
	})
}

func TestReserveAdmitsOversizeIntoEmptyShard(t *testing.T) {
	s := newTestShard(t, func(q *config.QueueConfig) { q.Capacity = 10 })
	require.True(t, s.points.take(50), "an empty shard takes a request larger than its capacity")
	require.False(t, s.points.take(1))
	s.points.give(50)
	require.True(t, s.points.take(10))
	require.False(t, s.points.take(1))
}

func TestSampleAgeLimit(t *testing.T) {
	s := newTestShard(t, func(q *config.QueueConfig) { q.SampleAgeLimit = pmodel.Duration(time.Hour) })
	now := time.Now().UnixMilli()
	old := now - 2*time.Hour.Milliseconds()
	items := formItems(seriesRequest1(
		prw.Series{Labels: labels.FromStrings("__name__", "a"), Samples: []prw.Sample{{Value: 1, Timestamp: old}, {Value: 2, Timestamp: now}}},
		prw.Series{Labels: labels.FromStrings("__name__", "b"), Samples: []prw.Sample{{Value: 3, Timestamp: old}}},
		prw.Series{Labels: labels.FromStrings("__name__", "c"), Samples: []prw.Sample{{Value: 4, Timestamp: now}}},
	), 1, math.MaxInt)
	require.Len(t, items, 3)
	got := s.dropTooOld(items)
	require.Len(t, got, 2)
	require.Equal(t, []prompb.Sample{{Value: 2, Timestamp: now}}, decodeChunk(t, &got[0])[0].Samples)
	require.Equal(t, 2, items[0].count(), "queued items are not modified")
	require.Len(t, decodeChunk(t, &items[0])[0].Samples, 2)
}

// TestWholeItemKeepsOnlyTheClientBody: a whole 1.0 item holds the client's
// body and no decoded copy; the age limit, a split and 2.0 encoding read
// the body, and leave the item as it was.
func TestWholeItemKeepsOnlyTheClientBody(t *testing.T) {
	s := newTestShard(t, func(q *config.QueueConfig) { q.SampleAgeLimit = pmodel.Duration(time.Hour) })
	now := time.Now().UnixMilli()
	old := now - 2*time.Hour.Milliseconds()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "a"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: old}, {Value: 2, Timestamp: now}}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "b"}}, Samples: []prompb.Sample{{Value: 3, Timestamp: now}}},
	}}
	msg, err := req.Marshal()
	require.NoError(t, err)
	body := literalSnappy(msg)
	it, ok := wholeItem(clientRequest(t, body).Raw, prw.ProtoV1, math.MaxInt, math.MaxInt)
	require.True(t, ok)
	require.Nil(t, it.raw, "no decoded copy")
	require.Equal(t, body, it.whole.wire)
	require.Equal(t, len(msg), it.size)
	require.Len(t, it.hashes, 2)

	got := s.dropTooOld([]item{it})
	require.Len(t, got, 1)
	require.Nil(t, got[0].whole, "changed: no longer the client's body")
	ts := decodeChunk(t, &got[0])
	require.Equal(t, []prompb.Sample{{Value: 2, Timestamp: now}}, ts[0].Samples)
	require.Equal(t, []prompb.Sample{{Value: 3, Timestamp: now}}, ts[1].Samples)

	head, tail, err := it.split(2)
	require.NoError(t, err)
	require.Equal(t, req.Timeseries[:1], decodeChunk(t, &head))
	require.Equal(t, req.Timeseries[1:], decodeChunk(t, &tail))

	data, st, err := newEncoder().encode(prw.ProtoV2, []item{it}, false)
	require.NoError(t, err)
	require.Equal(t, 3, st.samples)
	got2, err := decodeRequest(http.Header{"Content-Type": {prw.ContentTypeV2}}, data)
	require.NoError(t, err)
	require.Len(t, got2.series, 2)
	require.Equal(t, "a", got2.series[0].Labels.Get("__name__"))
	require.Len(t, got2.series[0].Samples, 2)
	require.Nil(t, it.raw, "the item is as it was")
}

// TestWholeV2ItemKeepsOnlyTheClientBody: a whole 2.0 item holds the
// client's body only; sent to an upstream that fell back to 1.0, or split,
// it is decoded again into the form it came in.
func TestWholeV2ItemKeepsOnlyTheClientBody(t *testing.T) {
	req := rwtest.V2Request(4, 3)
	msg, err := req.Marshal()
	require.NoError(t, err)
	body := literalSnappy(msg)
	dec := prw.NewV2Decoder()
	d, err := dec.Decode(msg)
	require.NoError(t, err)
	d.Req.Raw.Compressed = body
	form := slices.Clone(d.Req.Raw.Msg)
	it, ok := wholeItem(d.Req.Raw, prw.ProtoV2, math.MaxInt, math.MaxInt)
	dec.Release(d)
	require.True(t, ok)
	require.Nil(t, it.raw, "no decoded copy")
	got, _, err := it.chunk()
	require.NoError(t, err)
	require.Equal(t, form, got, "the form, decoded again")

	data, st, err := newEncoder().encode(prw.ProtoV1, []item{it}, true)
	require.NoError(t, err)
	require.Equal(t, 12, st.samples)
	got1, err := decodeRequest(http.Header{}, data)
	require.NoError(t, err)
	require.Len(t, got1.series, 4)
	require.Len(t, got1.series[3].Samples, 3)

	head, tail, err := it.split(6)
	require.NoError(t, err)
	require.Equal(t, 6, head.count())
	require.Equal(t, 6, tail.count())

	// Sent as it came, its series' metadata count; an upstream that sends
	// no metadata gets the series without it, as from any other item.
	h2 := http.Header{"Content-Type": {prw.ProtoV2.ContentType()}}
	for _, meta := range []bool{true, false} {
		data, st, err := newEncoder().encode(prw.ProtoV2, []item{it}, meta)
		require.NoError(t, err)
		require.Equal(t, meta, bytes.Equal(body, data), "as it came")
		got2, err := decodeRequest(h2, data)
		require.NoError(t, err)
		withMeta := 0
		for _, s := range got2.series {
			if !s.Metadata.Empty() {
				withMeta++
			}
		}
		require.Equal(t, map[bool]int{true: 4, false: 0}[meta], withMeta)
		require.Equal(t, withMeta, st.metadata)
	}
}

// TestWholeV1ViewOfV2Request: a 2.0 request decoded as 1.0 data is
// compressed once and sent whole, its family metadata in it; split, the
// metadata goes with the first part.
func TestWholeV1ViewOfV2Request(t *testing.T) {
	req := rwtest.V2Request(4, 3)
	msg, err := req.Marshal()
	require.NoError(t, err)
	dec := prw.NewPlainV2Decoder()
	d, err := dec.Decode(msg)
	require.NoError(t, err)
	defer dec.Release(d)
	require.False(t, d.Whole, "the client's 2.0 body does not stand for 1.0 data")
	r := &request{req: &d.Req, form: d.Req.Raw}
	view := r.form
	require.NotEmpty(t, view.Metadata)
	require.Nil(t, r.wholeFor(view, prw.ProtoV1, math.MaxInt, math.MaxInt, false).whole, "not whole where metadata is not sent")
	it := r.wholeFor(view, prw.ProtoV1, math.MaxInt, math.MaxInt, true)
	require.NotNil(t, it.whole)
	require.Equal(t, view.Compressed, it.whole.wire)
	require.NotSame(t, &view.Compressed[0], &it.whole.wire[0], "the item owns its body")
	r.release()
	require.Nil(t, view.Compressed, "the request points into no released buffer")
	require.False(t, view.AsSent)

	data, st, err := newEncoder().encode(prw.ProtoV1, []item{it}, true)
	require.NoError(t, err)
	require.Equal(t, it.whole.wire, data, "sent as compressed once")
	require.Equal(t, 12, st.samples)
	got, err := decodeRequest(http.Header{}, data)
	require.NoError(t, err)
	require.Len(t, got.series, 4)
	require.Len(t, got.metadata, len(view.Metadata))
	require.Equal(t, len(got.metadata), st.metadata)
	require.Equal(t, len(view.Metadata), it.whole.metadata)

	head, tail, err := it.split(6)
	require.NoError(t, err)
	for _, c := range []struct {
		it   item
		meta bool
	}{{head, true}, {tail, false}} {
		data, st, err := newEncoder().encode(prw.ProtoV1, []item{c.it}, true)
		require.NoError(t, err)
		got, err := decodeRequest(http.Header{}, data)
		require.NoError(t, err)
		require.Equal(t, 6, st.samples)
		require.Len(t, got.metadata, map[bool]int{true: len(view.Metadata)}[c.meta], "read from the body")
	}
}

// Retries wait longer each time, up to max_backoff, jitter and all.
func TestBackoffGrows(t *testing.T) {
	const minB, maxB = 30 * time.Millisecond, 5 * time.Second
	for range 1000 {
		backoff, prev := time.Duration(minB), time.Duration(0)
		for i := range 20 {
			sleep := jitter(backoff, maxB)
			require.GreaterOrEqual(t, sleep, prev, "retry %d waits less than the one before", i)
			require.GreaterOrEqual(t, sleep, backoff)
			require.LessOrEqual(t, sleep, maxB)
			prev, backoff = sleep, min(backoff*2, maxB)
		}
		require.Equal(t, time.Duration(maxB), prev)
	}
}

func TestEncoderPoolDropsOversizedEncoders(t *testing.T) {
	var p encoderPool
	for range 20 {
		big := p.get()
		big.pbuf = make([]byte, 0, maxPooledEncoderBytes+1)
		p.put(big)
		require.NotSame(t, big, p.get(), "an encoder grown past maxPooledEncoderBytes is not kept")
	}
}

func TestDefaultUserAgent(t *testing.T) {
	m := NewManager(nil, registry.NewForwardMetrics(prometheus.NewRegistry()), Options{})
	require.Regexp(t, `^rw-gateway/\S+$`, m.opts.UserAgent)
}

// TestEncodeCompressesPiecesAsOneBlock: chunks compressed one after the
// other, in place, are one snappy block of the batch's message, whatever
// their size (over snappy's 64 KiB fragments too) and kind.
// An empty batch encodes as a request without series, in either protocol.
func TestEncodeNoItems(t *testing.T) {
	for _, p := range []prw.Protocol{prw.ProtoV1, prw.ProtoV2} {
		data, st, err := newEncoder().encode(p, nil, true)
		require.NoError(t, err)
		require.Zero(t, st.points())
		got, err := decodeRequest(http.Header{"Content-Type": {p.ContentType()}}, data)
		require.NoError(t, err)
		require.Empty(t, got.series)
	}
}

func TestEncodeCompressesPiecesAsOneBlock(t *testing.T) {
	var series []prw.Series
	for i := range 3000 {
		s := floatSeries(int64(i), 1+i%4, "__name__", "node_cpu_seconds_total", "instance", "host-"+intString(i%7)+".example.com:9100", "i", intString(i))
		if i%500 == 0 {
			s.Metadata = prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: "with 2.0 metadata"}
		}
		series = append(series, s)
	}
	req := prw.NewRequest(prw.ProtoV1, series, []prw.FamilyMetadata{{MetricFamilyName: "fam", Metadata: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "h"}}})
	items := formItems(req, 1000, math.MaxInt)
	require.Greater(t, len(items), 6)
	ext := slices.ContainsFunc(items, func(it item) bool { return it.ext })
	require.True(t, ext, "some chunks have the form's extensions")
	enc := newEncoder()
	data, st, err := enc.encode(prw.ProtoV1, items, true)
	require.NoError(t, err)
	msg, err := snappy.Decode(nil, data)
	require.NoError(t, err)
	var want []byte
	for i := range enc.pieces {
		want = append(want, enc.pieces[i].raw...)
	}
	require.Equal(t, want, msg)
	require.Greater(t, len(msg), 4<<16)
	require.Less(t, len(data), len(snappy.Encode(nil, msg))*11/10, "compressed about as well as in one piece")
	var wr prompb.WriteRequest
	require.NoError(t, wr.Unmarshal(msg))
	require.Len(t, wr.Timeseries, 3000)
	require.Equal(t, 2, st.metadata, "the family and the series' family")
	n := 0
	for _, ts := range wr.Timeseries {
		n += len(ts.Samples)
	}
	require.Equal(t, st.samples, n)
}

// TestEncodeV2AttachesFamilyMetadata: items prepared as 1.0 (during a
// fallback) and sent as 2.0 carry their family metadata on the family's
// series, as prepare attaches it; a series keeps its own.
func TestEncodeV2AttachesFamilyMetadata(t *testing.T) {
	counter := prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: "A counter."}
	hist := prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, Help: "A histogram.", Unit: "seconds"}
	own := prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "Its own."}
	want := map[string]prw.Metadata{}
	var series []prw.Series
	for i := range 300 { // enough for the attached series to outgrow a buffer
		pad := strings.Repeat("x", 40+i%7)
		for _, s := range []struct {
			name string
			md   prw.Metadata
		}{{"fam_total", counter}, {"lat_bucket", hist}, {"lat_sum", hist}, {"lat_count", hist}, {"own", own}, {"nofam", prw.Metadata{}}} {
			ss := floatSeries(1000, 1, "__name__", s.name, "i", fmt.Sprint(i), "pad", pad)
			if s.name == "own" {
				ss.Metadata = own
			}
			series = append(series, ss)
			want[ss.Labels.String()] = s.md
		}
	}
	fams := []prw.FamilyMetadata{
		{MetricFamilyName: "fam", Metadata: counter},
		{MetricFamilyName: "lat", Metadata: hist},
		{MetricFamilyName: "own", Metadata: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "The family's."}},
	}
	req := prw.NewRequest(prw.ProtoV1, series, fams)
	items := rawItems(req.Raw, math.MaxInt, math.MaxInt, true, false)
	h2 := http.Header{"Content-Type": {prw.ProtoV2.ContentType()}}
	for _, meta := range []bool{true, false} {
		data, st, err := newEncoder().encode(prw.ProtoV2, items, meta)
		require.NoError(t, err)
		got, err := decodeRequest(h2, data)
		require.NoError(t, err)
		require.Len(t, got.series, len(series))
		withMeta := 0
		for _, s := range got.series {
			w, ok := want[s.Labels.String()]
			require.True(t, ok, "labels intact: %s", s.Labels)
			if !meta {
				w = prw.Metadata{}
			}
			require.Equal(t, w, s.Metadata, s.Labels.String())
			if !s.Metadata.Empty() {
				withMeta++
			}
		}
		require.Equal(t, withMeta, st.metadata)
	}
}
