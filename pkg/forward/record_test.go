package forward

import (
	"bytes"
	"math"
	"os"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

// recordRequest has data of every kind: float samples with start
// timestamps and NaN payloads (stale markers), histograms, exemplars,
// series and family metadata.
func recordRequest() *prw.Request {
	stale := math.Float64frombits(value.StaleNaN)
	return prw.NewRequest(prw.ProtoV1, []prw.Series{
		{
			Labels: labels.FromStrings("__name__", "x", "job", "j"),
			Samples: []prw.Sample{
				{Value: 1.5, Timestamp: 1000, StartTimestamp: 900},
				{Value: stale, Timestamp: 2000},
				{Value: math.Float64frombits(0x7ff8000000000abc), Timestamp: -5},
			},
			Metadata: prw.Metadata{Type: prw.MetricType(2), Help: "help", Unit: "seconds"},
		},
		{
			Labels:     labels.FromStrings("__name__", "h"),
			Histograms: []prw.Histogram{intHistogram(3000, 2500), floatHistogram(4000)},
			Exemplars:  []prw.Exemplar{{Labels: labels.FromStrings("trace_id", "abc"), Value: 2, Timestamp: 3000}},
		},
	}, []prw.FamilyMetadata{{MetricFamilyName: "x", Metadata: prw.Metadata{Type: prw.MetricType(1), Help: "h"}}})
}

// recordItems are recordRequest's items, as one shard queues them.
func recordItems() []item { return formItems(recordRequest(), math.MaxInt, math.MaxInt) }

// batchBytes is what a shard sends of items in p.
func batchBytes(t *testing.T, p prw.Protocol, items []item) []byte {
	t.Helper()
	b, _, err := newEncoder().encode(p, items, true)
	require.NoError(t, err)
	return bytes.Clone(b)
}

// A record is what goes on the wire: the items read back from it are
// sent byte for byte as the items written, in either protocol.
func TestRecordRoundTrip(t *testing.T) {
	for _, p := range []prw.Protocol{prw.ProtoV1, prw.ProtoV2} {
		t.Run(p.Label(), func(t *testing.T) {
			items := recordItems()
			enc := newRecordEncoder()
			at := time.UnixMilli(1_700_000_000_123)
			recs, size, err := enc.encode(items, p, true, at)
			require.NoError(t, err)
			require.Len(t, recs, 1)
			require.Equal(t, int64(len(recs[0])), size)
			require.Equal(t, []byte{recordV3, byte(p) + 1}, recs[0][:2])

			dec := newRecordDecoder(0, 0)
			got, appended, skipped, err := dec.decode(recs[0])
			require.NoError(t, err)
			require.Zero(t, skipped)
			require.True(t, at.Equal(appended))
			require.Equal(t, batchBytes(t, p, items), batchBytes(t, p, got))

			// Damage is an error or a skip, never a panic.
			for n := range len(recs[0]) {
				_, _, _, _ = dec.decode(recs[0][:n])
			}
			_, _, _, err = dec.decode(append([]byte{99}, recs[0][1:]...))
			require.ErrorContains(t, err, "unknown record version 99")
		})
	}
}

// Records that earlier builds wrote stay readable: version 1 (the
// gateway's own layout) and version 2 (a 1.0 request), from files those
// builds wrote.
func TestRecordLegacyVersions(t *testing.T) {
	dec := newRecordDecoder(0, 0)
	v1, err := os.ReadFile("testdata/record-v1.bin")
	require.NoError(t, err)
	require.Equal(t, byte(recordV1), v1[0])
	got, appended, skipped, err := dec.decode(v1)
	require.NoError(t, err)
	require.Zero(t, skipped)
	require.Equal(t, int64(1_700_000_000_123), appended.UnixMilli())
	for _, p := range []prw.Protocol{prw.ProtoV1, prw.ProtoV2} {
		require.Equal(t, batchBytes(t, p, recordItems()), batchBytes(t, p, got), "version 1 record sent in %s", p.Label())
	}

	v2, err := os.ReadFile("testdata/record-v2.bin")
	require.NoError(t, err)
	require.Equal(t, byte(recordV2), v2[0])
	got, _, skipped, err = dec.decode(v2)
	require.NoError(t, err)
	require.Zero(t, skipped)
	want, err := rwtest.V1Request(3, 2).Marshal()
	require.NoError(t, err)
	sent, err := snappy.Decode(nil, batchBytes(t, prw.ProtoV1, got))
	require.NoError(t, err)
	require.Equal(t, want, sent, "a version 2 record is sent as the request it holds")
}

// Replay validates as strictly as the write handler: a series the handler
// would refuse (here one whose samples field has the wrong wire type) is
// skipped and its size counted, and the intact series of the same record
// are sent.
func TestRecordReplayValidates(t *testing.T) {
	wr := rwtest.V1Request(3, 35)
	var msg []byte
	var badLen int
	for i := range wr.Timeseries {
		ts, err := wr.Timeseries[i].Marshal()
		require.NoError(t, err)
		if i == 1 {
			// The samples field as a varint: a well-framed message the
			// handler refuses.
			var bad []byte
			bad = protowire.AppendTag(bad, 1, protowire.BytesType)
			bad = protowire.AppendBytes(bad, []byte{0x0a, 0x01, 'x'})
			bad = protowire.AppendTag(bad, 2, protowire.VarintType)
			bad = protowire.AppendVarint(bad, 7)
			ts = bad
			badLen = 1 + len(protowire.AppendBytes(nil, ts)) // the whole field
		}
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendBytes(msg, ts)
	}
	for _, version := range []byte{recordV2, recordV3} {
		rec := []byte{version}
		if version == recordV3 {
			rec = append(rec, 1)
		}
		rec = protowire.AppendVarint(rec, 1000)
		rec = append(rec, snappy.Encode(nil, msg)...)
		got, _, skipped, err := newRecordDecoder(0, 0).decode(rec)
		require.NoError(t, err)
		require.Equal(t, badLen, skipped, "version %d", version)
		var sent prompb.WriteRequest
		body, err := snappy.Decode(nil, batchBytes(t, prw.ProtoV1, got))
		require.NoError(t, err)
		require.NoError(t, sent.Unmarshal(body))
		require.Len(t, sent.Timeseries, 2)
		require.Equal(t, wr.Timeseries[0].Labels, sent.Timeseries[0].Labels)
		require.Equal(t, wr.Timeseries[2].Labels, sent.Timeseries[1].Labels)
		require.Len(t, sent.Timeseries[1].Samples, 35)
	}
}

func TestRecordSplitsLargeRequests(t *testing.T) {
	items := benchItems(30000) // ~ 5 MiB estimated
	recs, _, err := newRecordEncoder().encode(items, prw.ProtoV1, true, time.Now())
	require.NoError(t, err)
	require.Greater(t, len(recs), 1)
	dec := newRecordDecoder(0, 0)
	n := 0
	for _, r := range recs {
		got, _, _, err := dec.decode(r)
		require.NoError(t, err)
		n += countPoints(got)
	}
	require.Equal(t, countPoints(items), n)
}
