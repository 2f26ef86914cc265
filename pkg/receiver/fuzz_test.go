package receiver

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
	"github.com/rwgateway/gateway/pkg/registry"
)

var writeFuzzCorpus = flag.Bool("write-fuzz-corpus", false, "write the seed corpus of the fuzz targets to testdata/fuzz")

// fuzzSeeds returns real protobuf messages (not snappy-encoded) of protocol p.
func fuzzSeeds(p prw.Protocol) [][]byte {
	marshal := func(m rwtest.Marshaler) []byte {
		b, err := m.Marshal()
		if err != nil {
			panic(err)
		}
		return b
	}
	all := roundTripSeries()
	invalid := []tseries{
		validSeries("ok", 1),
		{labels: []string{"__name__", "dup", "a", "1", "a", "2"}, samples: []prw.Sample{{Value: 1}}},
		histogramSeries("bad", withHistogram(intExpHistogram, func(h *prw.Histogram) { h.Count = &writev2.Histogram_CountInt{CountInt: 1} })),
	}
	md := []prw.FamilyMetadata{{MetricFamilyName: "up", Metadata: prw.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "Up."}}}
	if p == prw.ProtoV2 {
		return [][]byte{
			marshal(buildV2(nil)),
			marshal(rwtest.V2Request(3, 2)),
			marshal(buildV2(all)),
			marshal(buildV2(invalid)),
			marshal(buildV2([]tseries{histogramSeries("h", staleHistogram, intCustomHistogram)})),
		}
	}
	return [][]byte{
		marshal(buildV1(nil, nil)),
		marshal(rwtest.V1Request(3, 2)),
		marshal(buildV1(all, md)),
		marshal(buildV1(invalid, nil)),
		marshal(buildV1([]tseries{{labels: []string{"__name__", "ex"}, exemplars: []prw.Exemplar{{Labels: labels.FromStrings("trace_id", "t"), Value: 1}}}}, nil)),
	}
}

// acceptingQueue accepts everything, after checking the invariants the
// handler promises an Enqueuer.
type acceptingQueue struct{ t *testing.T }

func (q acceptingQueue) Enqueue(_ context.Context, req *prw.Request) error {
	for _, s := range copyRequest(q.t, req).Series {
		if len(s.Samples)+len(s.Histograms)+len(s.Exemplars) == 0 && !s.Metadata.Empty() {
			s.Samples = []prw.Sample{{}} // a 2.0 series of metadata only is valid
		}
		if _, detail, ok := prw.ValidateSeries(&s); !ok {
			q.t.Errorf("enqueued an invalid series %s: %s", s.Labels, detail)
		}
	}
	return nil
}

func FuzzHandlerV1(f *testing.F) { fuzzHandler(f, prw.ProtoV1) }

func FuzzHandlerV2(f *testing.F) { fuzzHandler(f, prw.ProtoV2) }

// fuzzHandler feeds the handler bytes as the compressed body (encode false)
// or as the protobuf message inside valid snappy framing (encode true). The
// handler must not panic and must answer 204 or 4xx: a client can never
// cause a 5xx.
func fuzzHandler(f *testing.F, p prw.Protocol) {
	for _, msg := range fuzzSeeds(p) {
		f.Add(snappy.Encode(nil, msg), false)
		f.Add(msg, true)
	}
	if *writeFuzzCorpus {
		writeCorpus(f, p)
	}
	var q acceptingQueue
	m := registry.NewReceiverMetrics(prometheus.NewRegistry())
	// Small limits, so the fuzzer reaches them.
	h := NewHandler(nil, m, &q, Options{MaxRequestBytes: 1 << 20, MaxDecodedBytes: 4 << 20})
	f.Fuzz(func(t *testing.T, data []byte, encode bool) {
		q.t = t
		body := data
		if encode {
			body = snappy.Encode(nil, data)
		}
		rec := serve(h, rwtest.NewHTTPRequest(p, body))
		if rec.Code != http.StatusNoContent && (rec.Code < 400 || rec.Code > 499) {
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	})
}

// writeCorpus writes the seeds as files of testdata/fuzz, the checked-in
// corpus: go test -run=Fuzz -write-fuzz-corpus ./pkg/receiver
func writeCorpus(f *testing.F, p prw.Protocol) {
	dir := filepath.Join("testdata", "fuzz", "FuzzHandlerV1")
	if p == prw.ProtoV2 {
		dir = filepath.Join("testdata", "fuzz", "FuzzHandlerV2")
	}
	require.NoError(f, os.MkdirAll(dir, 0o755))
	for i, msg := range fuzzSeeds(p) {
		for _, enc := range []bool{false, true} {
			data := msg
			if !enc {
				data = snappy.Encode(nil, msg)
			}
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nbool(%t)\n", strconv.Quote(string(data)), enc)
			name := fmt.Sprintf("seed-%d-%s", i, map[bool]string{false: "snappy", true: "protobuf"}[enc])
			require.NoError(f, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
		}
	}
}
