package forward

import (
	"os"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

// FuzzRecordDecoder: whatever bytes a queue record holds (the queue's
// checksums only say they are the bytes written), reading it never
// panics, an unreadable record is an error (which the reader counts), and what it yields is what the write handler would accept: its
// 1.0 encoding decodes without an error or a refused series, and its 2.0
// encoding encodes without an error.
func FuzzRecordDecoder(f *testing.F) {
	for _, p := range []prw.Protocol{prw.ProtoV1, prw.ProtoV2} {
		tenanted := recordItems()
		for i := range tenanted {
			tenanted[i].tenant = "team-a"
		}
		recs, _, err := newRecordEncoder().encode(tenanted, p, true, time.UnixMilli(1))
		require.NoError(f, err)
		f.Add(recs[0], false)
		recs, _, err = newRecordEncoder().encode(recordItems(), p, true, time.UnixMilli(1))
		require.NoError(f, err)
		f.Add(recs[0], false)
		msg, err := snappy.Decode(nil, recs[0][3:])
		require.NoError(f, err)
		f.Add(append([]byte{byte(p) + 1}, msg...), true)
	}
	for _, name := range []string{"testdata/record-v1.bin", "testdata/record-v2.bin"} {
		b, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(b, false)
	}
	f.Add(append([]byte{recordV3, 1, 0}, rwtest.Encode(rwtest.V1Request(2, 3))...), false)
	f.Add(append([]byte{recordV3, 2, 0}, rwtest.Encode(rwtest.V2Request(2, 3))...), false)
	// A plain protobuf body inside the snappy block, with a series whose
	// samples field has the wrong wire type.
	var msg []byte
	msg = protowire.AppendTag(msg, 1, protowire.BytesType)
	msg = protowire.AppendBytes(msg, []byte{0x0a, 0x05, 0x0a, 0x01, 'x', 0x12, 0x00, 0x10, 0x07})
	f.Add(append([]byte{1}, msg...), true)

	dec := newRecordDecoder(50, 1<<20)
	v1 := prw.NewV1Decoder()
	enc := newEncoder()
	// With body set, data is a protocol byte and an uncompressed body,
	// which the target compresses into a version 3 record: the protobuf
	// reading is then reached without the fuzzer having to find snappy.
	f.Fuzz(func(t *testing.T, data []byte, body bool) {
		rec := data
		if body && len(data) > 0 {
			rec = append([]byte{recordV3, data[0], 0}, snappy.Encode(nil, data[1:])...)
		}
		items, _, skipped, err := dec.decode(rec)
		if err != nil {
			require.Empty(t, items)
			return
		}
		require.GreaterOrEqual(t, skipped, 0)
		if len(items) == 0 {
			return
		}
		sent, st, err := enc.encode(prw.ProtoV1, items, true)
		require.NoError(t, err, "encode what a record yields in 1.0")
		want := st.points()
		msg, err := snappy.Decode(nil, sent)
		require.NoError(t, err)
		d, err := v1.Decode(msg)
		require.NoError(t, err, "the write handler decodes what replay sends")
		require.Zero(t, d.Invalid.Count, "the write handler refuses none of it: %s", d.Invalid.First)
		got := d.Req.Raw.Samples + d.Req.Raw.Histograms + d.Req.Raw.Exemplars
		v1.Release(d)
		require.Equal(t, want, got)
		_, _, err = enc.encode(prw.ProtoV2, items, true)
		require.NoError(t, err, "encode what a record yields in 2.0")
	})
}

// Records that are not records, or hold what the upstream would refuse,
// are skipped and counted, and the valid records around them are sent.
func TestUndecodableRecordsCounted(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(queue.Options{Dir: queueDir(dir, "u"), Upstream: "u"})
	require.NoError(t, err)
	good := append([]byte{recordV3, 1, 0}, rwtest.Encode(rwtest.V1Request(4, 5))...)
	garbage := [][]byte{{}, {recordV3}, {77, 1, 2, 3}, {recordV3, 1, 0, 0xff, 0xff}, {recordV1, 1, 2}}
	wantSkipped := 0
	recs := [][]byte{good}
	for _, g := range garbage {
		recs = append(recs, g, good)
		wantSkipped += len(g)
	}
	_, err = q.AppendAt(recs...)
	require.NoError(t, err)
	require.NoError(t, q.Close())

	u := newFakeUpstream(t, nil)
	_, _, _, qm := newTestManagerOpts(t, testConfig(testUpstream(t, "u", u.srv.URL, false)), diskOpts(dir))
	want := (len(garbage) + 1) * 4 * 5
	require.Eventually(t, func() bool { return u.samples() == want }, waitFor, tick)
	eventuallyValue(t, float64(wantSkipped), qm.CorruptBytes.WithLabelValues("u", corruptUndecodable))
	require.Equal(t, want, u.samples(), "nothing is sent twice")
}
