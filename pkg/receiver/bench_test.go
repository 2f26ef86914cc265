package receiver

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

// benchSizes are samples per request: one sample per node_exporter-like
// 10-label series, as Prometheus sends them.
var benchSizes = []int{100, 2000, 10000}

type nopQueue struct{}

func (nopQueue) Enqueue(context.Context, *prw.Request) error { return nil }

// benchWriter is a ResponseWriter that costs nothing per request.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

func benchBody(p prw.Protocol, samples int) []byte {
	if p == prw.ProtoV2 {
		return rwtest.Encode(rwtest.V2Request(samples, 1))
	}
	return rwtest.Encode(rwtest.V1Request(samples, 1))
}

func BenchmarkHandlerV1(b *testing.B) { benchHandler(b, prw.ProtoV1, Options{}, benchBody) }

func BenchmarkHandlerV2(b *testing.B) { benchHandler(b, prw.ProtoV2, Options{}, benchBody) }

// BenchmarkHandlerV2Plain reads 2.0 as 1.0 data, as when no upstream takes 2.0.
func BenchmarkHandlerV2Plain(b *testing.B) {
	benchHandler(b, prw.ProtoV2, Options{PlainV2: true}, benchBody)
}

// BenchmarkHandlerV2PlainWide is BenchmarkHandlerV2Plain of requests whose
// series come after 1,000 other symbols: every label reference takes two
// bytes, as most do in a Prometheus request of many metric families (the
// others' symbol tables stay under 128).
func BenchmarkHandlerV2PlainWide(b *testing.B) {
	benchHandler(b, prw.ProtoV2, Options{PlainV2: true}, func(_ prw.Protocol, samples int) []byte {
		req := rwtest.V2Request(samples, 1)
		st := writev2.NewSymbolTable()
		for i := range 1000 {
			st.Symbolize(fmt.Sprint("help of family ", i))
		}
		for i := range req.Timeseries {
			req.Timeseries[i].LabelsRefs = st.SymbolizeLabels(rwtest.SeriesLabels(i), nil)
			req.Timeseries[i].Metadata.HelpRef = st.Symbolize(rwtest.MetricHelp)
			req.Timeseries[i].Metadata.UnitRef = st.Symbolize(rwtest.MetricUnit)
		}
		req.Symbols = st.Symbols()
		return rwtest.Encode(req)
	})
}

// BenchmarkHandlerV2PlainFamilies and BenchmarkHandlerV1Families are
// requests of series that interleave 200 metric families, each with its
// help text in 2.0, as a request of a sender's many shards does: the 2.0
// request has several hundred symbols, and each series' family and
// metadata differ from the one before.
func BenchmarkHandlerV2PlainFamilies(b *testing.B) {
	benchHandler(b, prw.ProtoV2, Options{PlainV2: true}, familiesBody)
}

func BenchmarkHandlerV1Families(b *testing.B) { benchHandler(b, prw.ProtoV1, Options{}, familiesBody) }

func familiesBody(p prw.Protocol, samples int) []byte {
	v1, v2 := rwtest.V1Request(samples, 1), rwtest.V2Request(samples, 1)
	st := writev2.NewSymbolTable()
	for i := range v2.Timeseries {
		f := i % 200
		ls := labels.NewBuilder(rwtest.SeriesLabels(i)).Set(labels.MetricName, fmt.Sprint(rwtest.MetricName, "_", f)).Labels()
		v1.Timeseries[i].Labels = prompb.FromLabels(ls, nil)
		ts := &v2.Timeseries[i]
		ts.LabelsRefs = st.SymbolizeLabels(ls, nil)
		ts.Metadata.HelpRef = st.Symbolize(fmt.Sprint(rwtest.MetricHelp, " of family ", f))
		ts.Metadata.UnitRef = st.Symbolize(rwtest.MetricUnit)
	}
	v2.Symbols = st.Symbols()
	if p == prw.ProtoV2 {
		return rwtest.Encode(v2)
	}
	return rwtest.Encode(v1)
}

func benchHandler(b *testing.B, p prw.Protocol, opts Options, body func(prw.Protocol, int) []byte) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("samples=%d", n), func(b *testing.B) {
			body := body(p, n)
			h := NewHandler(nil, registry.NewReceiverMetrics(prometheus.NewRegistry()), nopQueue{}, opts)
			r := rwtest.NewHTTPRequest(p, body)
			br := bytes.NewReader(body)
			w := &benchWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				br.Reset(body)
				r.Body = io.NopCloser(br)
				clear(w.h)
				h.ServeHTTP(w, r)
				if w.code != http.StatusNoContent {
					b.Fatalf("status %d", w.code)
				}
			}
			runtime.ReadMemStats(&after)
			samples := float64(b.N * n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/samples, "allocs/sample")
		})
	}
}

// BenchmarkSnappyDecodeFloor is snappy decoding alone of the handler
// benchmarks' bodies, into a reused buffer: the floor under the handler.
func BenchmarkSnappyDecodeFloor(b *testing.B) {
	for _, p := range []prw.Protocol{prw.ProtoV1, prw.ProtoV2} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("proto=%s/samples=%d", p.Label(), n), func(b *testing.B) {
				body := benchBody(p, n)
				dLen, err := snappy.DecodedLen(body)
				if err != nil {
					b.Fatal(err)
				}
				dst := make([]byte, dLen)
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := snappy.Decode(dst, body); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
			})
		}
	}
}

// BenchmarkHandlerFloorScan is the floor under the 1.0 handler: snappy
// decoding into a reused buffer plus a zero-allocation protowire walk of
// every field, down to labels, samples' values and timestamps.
func BenchmarkHandlerFloorScan(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("samples=%d", n), func(b *testing.B) {
			body := benchBody(prw.ProtoV1, n)
			dLen, err := snappy.DecodedLen(body)
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, dLen)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var sink uint64
			for b.Loop() {
				msg, err := snappy.Decode(dst, body)
				if err != nil {
					b.Fatal(err)
				}
				sink += floorScan(msg, 0)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
			_ = sink
		})
	}
}

// floorScan walks every field of msg, recursing into the messages of a
// WriteRequest (depth 0), TimeSeries (1) and Label/Sample (2). Tags and
// lengths under 128 are read inline, as any tuned decoder does, so that
// the floor is not slower than the handler it bounds.
func floorScan(msg []byte, depth int) uint64 {
	var sum uint64
	for len(msg) > 0 {
		var (
			num protowire.Number
			typ protowire.Type
		)
		if msg[0] < 0x80 {
			num, typ = protowire.Number(msg[0]>>3), protowire.Type(msg[0]&7)
			msg = msg[1:]
		} else {
			var n int
			if num, typ, n = protowire.ConsumeTag(msg); n < 0 {
				return sum
			}
			msg = msg[n:]
		}
		switch typ {
		case protowire.BytesType:
			var l, n int
			if len(msg) > 0 && msg[0] < 0x80 {
				l, n = int(msg[0]), 1
			} else {
				v, m := protowire.ConsumeVarint(msg)
				if m < 0 {
					return sum
				}
				l, n = int(v), m
			}
			if l > len(msg)-n {
				return sum
			}
			v := msg[n : n+l]
			if depth < 2 {
				sum += floorScan(v, depth+1)
			} else {
				sum += uint64(len(v))
			}
			msg = msg[n+l:]
		case protowire.Fixed64Type:
			if len(msg) < 8 {
				return sum
			}
			sum += binary.LittleEndian.Uint64(msg)
			msg = msg[8:]
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return sum
			}
			sum += v
			msg = msg[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, msg)
			if m < 0 {
				return sum
			}
			msg = msg[m:]
		}
	}
	return sum
}
