package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

const benchBatch = 2000

// nodeExporterRequest returns n node_exporter-like series of 10 labels with
// one sample each.
func nodeExporterRequest(n int) *prw.Request {
	var ss []prw.Series
	ts := time.Now().UnixMilli()
	modes := []string{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"}
	for i := range n {
		ss = append(ss, prw.Series{
			Labels: labels.FromStrings(
				"__name__", "node_cpu_seconds_total",
				"az", "eu-west-1b",
				"cluster", "prod-eu-1",
				"cpu", fmt.Sprint(i/len(modes)),
				"env", "production",
				"instance", fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal:9100", i/250, i%250),
				"job", "node",
				"mode", modes[i%len(modes)],
				"region", "eu-west-1",
				"team", "platform",
			),
			Samples: []prw.Sample{{Value: float64(i) * 1.5, Timestamp: ts}},
		})
	}
	return prw.NewRequest(prw.ProtoV1, ss, nil)
}

// benchItems returns n node_exporter-like series, one chunk each.
func benchItems(n int) []item {
	return formItems(nodeExporterRequest(n), 1, math.MaxInt)
}

func benchmarkEncode(b *testing.B, proto prw.Protocol) {
	items := benchItems(benchBatch)
	enc := newEncoder()
	var size int
	b.ReportAllocs()
	for b.Loop() {
		data, _, err := enc.encode(proto, items, true)
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/sample")
	b.ReportMetric(float64(size), "bytes/batch")
}

func BenchmarkEncodeV1(b *testing.B) { benchmarkEncode(b, prw.ProtoV1) }
func BenchmarkEncodeV2(b *testing.B) { benchmarkEncode(b, prw.ProtoV2) }

// BenchmarkEnqueue measures Enqueue for one upstream with write relabeling
// and external labels: copy, relabel, shard and append. The shards are not
// started; their queues are emptied after each call.
func BenchmarkEnqueue(b *testing.B) {
	u := testUpstream(b, "u", "http://example.invalid/", false)
	u.QueueConfig = config.DefaultQueueConfig
	u.WriteRelabelConfigs = relabelConfigs(b, `
- source_labels: [__name__]
  regex: go_.*
  action: drop
- regex: team
  action: labeldrop
`)
	m := NewManager(nil, registry.NewForwardMetrics(nil), Options{})
	f, err := newForwarder(m.logger, m.metrics, u, "bench", time.Minute, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	m.set = &upstreamSet{fwds: []*forwarder{f}, byName: map[string]*forwarder{"u": f}, external: labels.FromStrings("gateway", "gw-1")}
	req := nodeExporterRequest(benchBatch)
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Enqueue(b.Context(), req, "", nil); err != nil {
			b.Fatal(err)
		}
		for _, s := range f.shards {
			s.fifo = fifo{}
			s.points.used.Store(0)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/sample")
}

// BenchmarkEndToEnd measures Enqueue → upstream acknowledgement per sample,
// for a memory and a disk queue: requests of 2000 node_exporter-like series
// are enqueued and the benchmark waits until a local sink answering 204 has
// received them all. The sink decodes nothing; encoding, sending and (for
// disk) the record write, read and decode are all counted.
// It enqueues a decoded prw.Request, so it measures the slow path; see
// BenchmarkEndToEndRaw for the fast one.
func BenchmarkEndToEnd(b *testing.B) {
	for _, mode := range []string{config.StorageMemory, config.StorageDisk} {
		b.Run("queue="+mode, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			u := testUpstream(b, "u", srv.URL, false)
			u.QueueConfig = config.DefaultQueueConfig
			u.QueueConfig.MaxShards = 4
			u.QueueConfig.Storage = mode
			reg := registry.NewForwardMetrics(nil)
			m := NewManager(nil, reg, Options{StoragePath: b.TempDir()})
			cfg := testConfig(u)
			if err := cfg.Validate(); err != nil {
				b.Fatal(err)
			}
			if err := m.ApplyConfig(cfg); err != nil {
				b.Fatal(err)
			}
			defer m.Stop(context.Background())
			sent := reg.SentSamples.WithLabelValues("u")
			req := nodeExporterRequest(benchBatch)
			b.ReportAllocs()
			want := 0.0
			for b.Loop() {
				for {
					err := m.Enqueue(b.Context(), req, "", nil)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrQueueFull) {
						b.Fatal(err)
					}
					time.Sleep(50 * time.Microsecond) // the memory queue is full: wait for room
				}
				want += benchBatch
			}
			for testutil.ToFloat64(sent) < want {
				time.Sleep(50 * time.Microsecond)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/sample")
		})
	}
}

// BenchmarkEndToEndRaw is BenchmarkEndToEnd from the HTTP request: the
// same series, 1.0-encoded and snappy-compressed, go through the
// receiver's handler (decode included), so they take the raw fast path.
// The 2.0 input is read in the form, as when another upstream takes 2.0,
// or as 1.0 data (v2plain), as when none does; the 1.0 input to a 2.0
// upstream (upstream=2.0) is encoded again.
func BenchmarkEndToEndRaw(b *testing.B) {
	for _, in := range []struct {
		name     string
		proto    prw.Protocol
		body     []byte
		upstream prw.Protocol
		plain    bool
	}{
		{"raw", prw.ProtoV1, rwtest.Encode(rwtest.V1Request(benchBatch, 1)), prw.ProtoV1, false},
		{"v2", prw.ProtoV2, rwtest.Encode(rwtest.V2Request(benchBatch, 1)), prw.ProtoV1, false},
		{"v2plain", prw.ProtoV2, rwtest.Encode(rwtest.V2Request(benchBatch, 1)), prw.ProtoV1, true},
		{"raw/upstream=2.0", prw.ProtoV1, rwtest.Encode(rwtest.V1Request(benchBatch, 1)), prw.ProtoV2, false},
	} {
		for _, mode := range []string{config.StorageMemory, config.StorageDisk} {
			benchEndToEndHTTP(b, mode, in.name, in.proto, in.body, in.upstream, receiver.Options{PlainV2: in.plain})
		}
	}
}

// benchEndToEndHTTP is one run of BenchmarkEndToEndRaw: body, a request of
// benchBatch samples in proto, to an upstream of protocol up with a mode
// queue, through a handler of options opts.
func benchEndToEndHTTP(b *testing.B, mode, input string, proto prw.Protocol, body []byte, up prw.Protocol, opts receiver.Options) {
	{
		b.Run("queue="+mode+"/input="+input, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if up == prw.ProtoV2 {
					w.Header().Set(prw.HeaderSamplesWritten, "1") // a 2.0 receiver: no fallback
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			u := testUpstream(b, "u", srv.URL, up == prw.ProtoV2)
			u.QueueConfig = config.DefaultQueueConfig
			u.QueueConfig.MaxShards = 4
			u.QueueConfig.Storage = mode
			reg := registry.NewForwardMetrics(nil)
			m := NewManager(nil, reg, Options{StoragePath: b.TempDir()})
			cfg := testConfig(u)
			if err := cfg.Validate(); err != nil {
				b.Fatal(err)
			}
			if err := m.ApplyConfig(cfg); err != nil {
				b.Fatal(err)
			}
			defer m.Stop(context.Background())
			h := receiver.NewHandler(nil, registry.NewReceiverMetrics(prometheus.NewRegistry()), allUpstreams{m}, opts)
			sent := reg.SentSamples.WithLabelValues("u")
			b.ReportAllocs()
			want := 0.0
			for b.Loop() {
				for {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, rwtest.NewHTTPRequest(proto, body))
					if rec.Code == http.StatusNoContent {
						break
					}
					if rec.Code != http.StatusServiceUnavailable {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
					time.Sleep(50 * time.Microsecond) // the memory queue is full: wait for room
				}
				want += benchBatch
			}
			for testutil.ToFloat64(sent) < want {
				time.Sleep(50 * time.Microsecond)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/sample")
		})
	}
}

// BenchmarkOrderPlace places items of 2000 series, out of many, on 4
// shards, with 40 items in flight (8 shards' default capacity of 10,000
// samples, as in a closed loop) or each sent before the next (paced): the
// order lookups of every queued item.
func BenchmarkOrderPlace(b *testing.B) {
	for _, bc := range []struct{ series, inFlight int }{{100_000, 40}, {1_000_000, 40}, {10_000, 0}} {
		series := bc.series
		b.Run(fmt.Sprintf("series=%d/in-flight=%d", series, bc.inFlight), func(b *testing.B) {
			hashes := make([]uint64, series)
			for i := range hashes {
				hashes[i] = rand.Uint64() // series hashes are seeded, as random
			}
			o := newOrder(4)
			type placed struct {
				shard int
				seq   uint64
			}
			var inFlight []placed
			it, next := &item{hashes: make([]uint64, benchBatch)}, 0
			load := func(int) int64 { return 0 }
			for b.Loop() {
				for i := range it.hashes {
					it.hashes[i] = hashes[next]
					next = (next + 1) % series
				}
				sh := o.place(it, 4, load)
				if inFlight = append(inFlight, placed{sh, it.seq}); len(inFlight) > bc.inFlight {
					o.done(inFlight[0].shard, inFlight[0].seq)
					inFlight = inFlight[1:]
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/series")
		})
	}
}
