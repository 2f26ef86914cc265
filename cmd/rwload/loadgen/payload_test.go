package loadgen

import (
	"time"

	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
)

// decoded is one request in protocol-neutral form.
type decoded struct {
	labels  []labels.Labels
	values  []float64
	times   []int64
	helps   []string // 2.0: each series' help text
	symbols int      // 2.0: the symbol table's length
	samples int
}

func decode(t *testing.T, p Protocol, body []byte) decoded {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	require.NoError(t, err)
	var d decoded
	if p == ProtoV2 {
		var req writev2.Request
		require.NoError(t, req.Unmarshal(raw))
		b := labels.NewScratchBuilder(12)
		for _, ts := range req.Timeseries {
			ls, err := ts.ToLabels(&b, req.Symbols)
			require.NoError(t, err)
			d.labels = append(d.labels, ls)
			require.Equal(t, writev2.Metadata_METRIC_TYPE_COUNTER, ts.Metadata.Type)
			d.helps = append(d.helps, req.Symbols[ts.Metadata.HelpRef])
			for _, s := range ts.Samples {
				require.Less(t, s.StartTimestamp, s.Timestamp)
				d.values, d.times = append(d.values, s.Value), append(d.times, s.Timestamp)
			}
			d.samples += len(ts.Samples)
		}
		d.symbols = len(req.Symbols)
		return d
	}
	var req prompb.WriteRequest
	require.NoError(t, req.Unmarshal(raw))
	for _, ts := range req.Timeseries {
		d.labels = append(d.labels, labelsOf(ts.Labels))
		for _, s := range ts.Samples {
			d.values, d.times = append(d.values, s.Value), append(d.times, s.Timestamp)
		}
		d.samples += len(ts.Samples)
	}
	return d
}

func labelsOf(ls []prompb.Label) labels.Labels {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	return b.Labels()
}

func TestPayloadsDecode(t *testing.T) {
	cases := []struct {
		name                   string
		series, perReq, fams   int
		wantRequests           int
		wantLastReqSample      int
		minSymbols, maxSymbols int // of a full 2.0 request
	}{
		{name: "even split", series: 10_000, perReq: 2000, fams: 1, wantRequests: 5, wantLastReqSample: 2000, maxSymbols: 127},
		{name: "families", series: 10_000, perReq: 2000, fams: 200, wantRequests: 5, wantLastReqSample: 2000, minSymbols: 500},
		{name: "remainder", series: 1001, perReq: 250, fams: 1, wantRequests: 5, wantLastReqSample: 1},
		{name: "one request", series: 300, perReq: 300, fams: 7, wantRequests: 1, wantLastReqSample: 300},
	}
	for _, p := range []Protocol{ProtoV1, ProtoV2} {
		for _, tc := range cases {
			t.Run(p.String()+"/"+tc.name, func(t *testing.T) {
				pl, err := NewPayloads(p, tc.series, tc.perReq, tc.fams)
				require.NoError(t, err)
				require.Equal(t, tc.wantRequests, pl.Requests())
				require.Equal(t, tc.wantLastReqSample, pl.Samples(pl.Requests()-1))

				ts0 := time.Now().UnixMilli()
				seen := map[string]int{}
				for round := range 3 {
					total := 0
					for k := range pl.Requests() {
						body, ts, err := pl.Encode(nil, k, round, ts0) // same ts each round: must be raised
						require.NoError(t, err)
						require.Equal(t, ts0+int64(round), ts)
						d := decode(t, p, body)
						require.Equal(t, pl.Samples(k), d.samples)
						require.Len(t, d.labels, d.samples, "one sample per series")
						if p == ProtoV2 && d.samples == tc.perReq {
							require.GreaterOrEqual(t, d.symbols, tc.minSymbols)
							if tc.maxSymbols > 0 {
								require.LessOrEqual(t, d.symbols, tc.maxSymbols)
							}
						}
						for n, ls := range d.labels {
							i := k*tc.perReq + n
							require.Equal(t, SeriesLabels(i, tc.fams), ls, "series %d", i)
							require.Equal(t, FamilyName(i%tc.fams), ls.Get(labels.MetricName))
							if p == ProtoV2 {
								require.Equal(t, familyHelp(i%tc.fams), d.helps[n], "series %d", i)
							}
							require.Equal(t, SampleValue(i, round), d.values[n], "series %d round %d", i, round)
							require.Equal(t, ts, d.times[n])
							if round == 0 {
								seen[ls.String()]++
							}
						}
						total += d.samples
					}
					require.Equal(t, tc.series, total, "a round sends every series once")
				}
				require.Len(t, seen, tc.series, "distinct series")
			})
		}
	}
}

func TestSeriesLabelsShape(t *testing.T) {
	for _, families := range []int{1, 200} {
		seen := map[string]bool{}
		sizes := map[int]int{}
		names := map[string]bool{}
		for i := range 100_000 {
			ls := SeriesLabels(i, families)
			n := ls.Len()
			require.GreaterOrEqual(t, n, 8, "series %d: %s", i, ls)
			require.LessOrEqual(t, n, 12, "series %d: %s", i, ls)
			sizes[n]++
			names[ls.Get(labels.MetricName)] = true
			s := ls.String()
			require.False(t, seen[s], "series %d repeats %s", i, s)
			seen[s] = true
		}
		require.Len(t, sizes, 3, "label counts vary: %v", sizes)
		require.Len(t, names, families, "metric families")
		require.Equal(t, SeriesLabels(42, families), SeriesLabels(42, families), "deterministic")
	}
}

func TestEncodeTimestampRange(t *testing.T) {
	pl, err := NewPayloads(ProtoV1, 10, 10, 1)
	require.NoError(t, err)
	_, _, err = pl.Encode(nil, 0, 0, 1) // 1970: a one-byte varint
	require.ErrorIs(t, err, errTimestampRange)
}

func TestNewPayloadsInvalid(t *testing.T) {
	_, err := NewPayloads(ProtoV1, 0, 10, 1)
	require.Error(t, err)
	_, err = NewPayloads(ProtoV1, 10, 0, 1)
	require.Error(t, err)
	_, err = NewPayloads(ProtoV1, 10, 10, 0)
	require.Error(t, err)
}

func BenchmarkEncode(b *testing.B) {
	for _, p := range []Protocol{ProtoV1, ProtoV2} {
		b.Run(p.String(), func(b *testing.B) {
			pl, err := NewPayloads(p, 2000, 2000, 1)
			require.NoError(b, err)
			buf := make([]byte, pl.MaxEncodedLen())
			ts := int64(1_780_000_000_000)
			b.ReportAllocs()
			round := 0
			for b.Loop() {
				_, _, err := pl.Encode(buf, 0, round, ts)
				if err != nil {
					b.Fatal(err)
				}
				round++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/2000, "ns/sample")
		})
	}
}
