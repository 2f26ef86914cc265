package receiver

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/model"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

// benchSizes are samples per request: one sample per node_exporter-like
// 10-label series, as Prometheus sends them.
var benchSizes = []int{100, 2000, 10000}

type nopQueue struct{}

func (nopQueue) Enqueue(context.Context, *model.Request) error { return nil }

// benchWriter is a ResponseWriter that costs nothing per request.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

func benchBody(p model.Protocol, samples int) []byte {
	if p == model.ProtoV2 {
		return rwtest.Encode(rwtest.V2Request(samples, 1))
	}
	return rwtest.Encode(rwtest.V1Request(samples, 1))
}

func BenchmarkHandlerV1(b *testing.B) { benchHandler(b, model.ProtoV1) }

func BenchmarkHandlerV2(b *testing.B) { benchHandler(b, model.ProtoV2) }

func benchHandler(b *testing.B, p model.Protocol) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("samples=%d", n), func(b *testing.B) {
			body := benchBody(p, n)
			h := NewHandler(nil, registry.NewReceiverMetrics(prometheus.NewRegistry()), nopQueue{}, Options{})
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
	for _, p := range []model.Protocol{model.ProtoV1, model.ProtoV2} {
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
			body := benchBody(model.ProtoV1, n)
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
// WriteRequest (depth 0), TimeSeries (1) and Label/Sample (2).
func floorScan(msg []byte, depth int) uint64 {
	var sum uint64
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return sum
		}
		msg = msg[n:]
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return sum
			}
			if depth < 2 {
				sum += floorScan(v, depth+1)
			} else {
				sum += uint64(len(v))
			}
			msg = msg[m:]
		case protowire.Fixed64Type:
			v, m := protowire.ConsumeFixed64(msg)
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
