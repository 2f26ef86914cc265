package prw

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
)

// checkSampleV2's reading of the usual layout gives what the field by
// field check gives, for samples of every layout, cut anywhere, with
// over-long varints, and for random bytes.
func TestCheckSampleV2Layouts(t *testing.T) {
	field := func(num protowire.Number, v uint64) []byte {
		if num == 1 {
			return protowire.AppendFixed64(protowire.AppendTag(nil, 1, protowire.Fixed64Type), v)
		}
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	long := func(num protowire.Number, v uint64) []byte { // v's varint padded to 10 bytes
		b := protowire.AppendTag(nil, num, protowire.VarintType)
		for range 9 {
			b, v = append(b, byte(v)|0x80), v>>7
		}
		return append(b, byte(v))
	}
	value, ts, start, zero := field(1, math.Float64bits(2.5)), field(2, 1<<40), field(3, 1<<39), field(3, 0)
	var cases [][]byte
	for _, parts := range [][][]byte{
		{value, ts}, {value, ts, start}, {value, ts, zero}, {value, long(2, 7), start},
		{value, ts, long(3, 5)}, {value, field(2, 0), start}, {value, ts, start, zero},
		{value, ts, start, start}, {value, start, ts}, {start, value, ts}, {value, ts, field(4, 1)},
		{value, ts, start, field(4, 1)}, {value, ts, field(2, 1)}, {value}, {ts}, {},
	} {
		msg := bytes.Join(parts, nil)
		for n := range len(msg) + 1 {
			cases = append(cases, msg[:n])
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		msg := bytes.Join([][]byte{value, ts, start}, nil)
		for range 1 + r.IntN(3) {
			msg[r.IntN(len(msg))] = byte(r.Uint32())
		}
		cases = append(cases, msg)
	}
	fast := 0
	for _, msg := range cases {
		start, ext, err := checkSampleV2(msg)
		wantStart, wantExt, wantErr := checkSampleFields(msg)
		require.Equal(t, wantErr == nil, err == nil, "% x", msg)
		if err == nil {
			require.Equal(t, wantStart, start, "% x", msg)
			require.Equal(t, wantExt, ext, "% x", msg)
		}
		if len(msg) > 10 && msg[0] == 0x09 && msg[9] == 0x10 {
			fast++
		}
	}
	require.Greater(t, fast, 1000, "samples in the usual layout")
}

// A decoded 2.0 message of many tiny symbols holds many times its size by
// symbol: it is not pooled once that is past MaxPooledBytes, though the
// message is not.
func TestDecodedOfManySymbolsIsNotPooled(t *testing.T) {
	message := func(symbols int) []byte {
		var msg []byte
		for range symbols {
			msg = protowire.AppendBytes(protowire.AppendTag(msg, 4, protowire.BytesType), nil)
		}
		return msg
	}
	dec := NewPlainV2Decoder()
	for _, tc := range []struct {
		symbols  int
		poolable bool
	}{{1000, true}, {500_000, false}} {
		msg := message(tc.symbols)
		require.Less(t, len(msg), MaxPooledBytes)
		d, err := dec.Decode(msg)
		require.NoError(t, err)
		require.Equal(t, tc.poolable, d.poolable(), "%d symbols", tc.symbols)
		dec.Release(d)
	}
}
