package forward

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	commoncfg "github.com/prometheus/common/config"
	pmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	tick    = 5 * time.Millisecond
	waitFor = 10 * time.Second
)

// gotRequest is one request a fake upstream decoded.
type gotRequest struct {
	proto    prw.Protocol
	header   http.Header
	series   []prw.Series
	metadata []prw.FamilyMetadata // 1.0 only
	// rawSeries are the 1.0 TimeSeries messages as they came.
	rawSeries [][]byte
}

// responder decides the answer to the n-th request (from 0). It may write the
// response itself and return 0.
type responder func(w http.ResponseWriter, r *http.Request, got *gotRequest, n int) int

// fakeUpstream is a remote-write receiver that records what it decodes.
type fakeUpstream struct {
	t       *testing.T
	srv     *httptest.Server
	respond responder
	calls   atomic.Int64

	mu   sync.Mutex
	reqs []*gotRequest
}

func newFakeUpstream(t *testing.T, respond responder) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{t: t, respond: respond}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	n := int(u.calls.Add(1) - 1)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	got, err := decodeRequest(r.Header, body)
	if err != nil {
		u.t.Errorf("fake upstream: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	code := http.StatusNoContent
	if u.respond != nil {
		code = u.respond(w, r, got, n)
	}
	if code == 0 {
		return
	}
	if code/100 == 2 {
		u.mu.Lock()
		u.reqs = append(u.reqs, got)
		u.mu.Unlock()
		if got.proto == prw.ProtoV2 && w.Header().Get(prw.HeaderSamplesWritten) == "" {
			s, h, e := pointCounts(got.series)
			w.Header().Set(prw.HeaderSamplesWritten, strconv.Itoa(s))
			w.Header().Set(prw.HeaderHistogramsWritten, strconv.Itoa(h))
			w.Header().Set(prw.HeaderExemplarsWritten, strconv.Itoa(e))
		}
	}
	w.WriteHeader(code)
}

// requests returns what was acknowledged so far.
func (u *fakeUpstream) requests() []*gotRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*gotRequest(nil), u.reqs...)
}

// series returns every acknowledged series, in arrival order.
func (u *fakeUpstream) series() []prw.Series {
	var out []prw.Series
	for _, r := range u.requests() {
		out = append(out, r.series...)
	}
	return out
}

// samples counts the acknowledged float samples.
func (u *fakeUpstream) samples() int {
	n := 0
	for _, s := range u.series() {
		n += len(s.Samples)
	}
	return n
}

func decodeRequest(h http.Header, body []byte) (*gotRequest, error) {
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, err
	}
	got := &gotRequest{header: h.Clone()}
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				break
			}
			got.rawSeries = append(got.rawSeries, v)
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			break
		}
		b = b[n:]
	}
	if strings.Contains(h.Get("Content-Type"), "proto=io.prometheus.write.v2.Request") {
		got.proto = prw.ProtoV2
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			return nil, err
		}
		var sb labels.ScratchBuilder
		for _, ts := range req.Timeseries {
			ls, err := ts.ToLabels(&sb, req.Symbols)
			if err != nil {
				return nil, err
			}
			s := prw.Series{Labels: ls, Histograms: ts.Histograms}
			for _, x := range ts.Samples {
				s.Samples = append(s.Samples, prw.Sample{Value: x.Value, Timestamp: x.Timestamp, StartTimestamp: x.StartTimestamp})
			}
			for _, e := range ts.Exemplars {
				ex, err := e.ToExemplar(&sb, req.Symbols)
				if err != nil {
					return nil, err
				}
				s.Exemplars = append(s.Exemplars, prw.Exemplar{Labels: ex.Labels, Value: ex.Value, Timestamp: ex.Ts})
			}
			s.Metadata = prw.Metadata{
				Type: ts.Metadata.Type,
				Help: req.Symbols[ts.Metadata.HelpRef],
				Unit: req.Symbols[ts.Metadata.UnitRef],
			}
			got.series = append(got.series, s)
		}
		return got, nil
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, err
	}
	for _, ts := range req.Timeseries {
		s := prw.Series{Labels: v1Labels(ts.Labels)}
		for _, x := range ts.Samples {
			s.Samples = append(s.Samples, prw.Sample{Value: x.Value, Timestamp: x.Timestamp})
		}
		for _, x := range ts.Histograms {
			s.Histograms = append(s.Histograms, prw.HistogramFromV1(x))
		}
		for _, e := range ts.Exemplars {
			s.Exemplars = append(s.Exemplars, prw.Exemplar{Labels: v1Labels(e.Labels), Value: e.Value, Timestamp: e.Timestamp})
		}
		got.series = append(got.series, s)
	}
	for _, md := range req.Metadata {
		got.metadata = append(got.metadata, prw.FamilyMetadata{
			MetricFamilyName: md.MetricFamilyName,
			Metadata:         prw.Metadata{Type: prw.MetricType(md.Type), Help: md.Help, Unit: md.Unit},
		})
	}
	return got, nil
}

func v1Labels(in []prompb.Label) labels.Labels {
	b := labels.NewScratchBuilder(len(in))
	for _, l := range in {
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	return b.Labels()
}

// testUpstream returns an upstream config for tests: small, fast queues.
func testUpstream(t testing.TB, name, rawURL string, v2 bool) *config.UpstreamConfig {
	t.Helper()
	u, err := url.Parse(rawURL)
	require.NoError(t, err)
	cfg := config.DefaultUpstreamConfig
	cfg.Name = name
	cfg.URL = &commoncfg.URL{URL: u}
	if v2 {
		cfg.ProtobufMessage = config.ProtobufMessageV2
	}
	cfg.RemoteTimeout = pmodel.Duration(5 * time.Second)
	cfg.QueueConfig.MaxShards = 2
	cfg.QueueConfig.Capacity = 10000
	cfg.QueueConfig.MaxSamplesPerSend = 100
	cfg.QueueConfig.BatchSendDeadline = pmodel.Duration(10 * time.Millisecond)
	cfg.QueueConfig.MinBackoff = pmodel.Duration(5 * time.Millisecond)
	cfg.QueueConfig.MaxBackoff = pmodel.Duration(20 * time.Millisecond)
	return &cfg
}

func testConfig(ups ...*config.UpstreamConfig) *config.Config {
	return &config.Config{Receiver: config.DefaultReceiverConfig, Upstreams: ups}
}

// testDisk makes newTestManager build disk-mode Managers; TestDiskMode sets
// it while it runs tests written for either mode. Tests in this package do
// not run in parallel.
var testDisk bool

// newTestManager builds a Manager on a pedantic registry and applies cfg. It
// is stopped at cleanup. Under testDisk its queues are on disk in a
// temporary directory.
func newTestManager(t *testing.T, cfg *config.Config) (*Manager, *prometheus.Registry, *registry.ForwardMetrics) {
	t.Helper()
	var opts Options
	if testDisk {
		opts.StoragePath = t.TempDir()
	}
	m, reg, metrics, _ := newTestManagerOpts(t, cfg, opts)
	return m, reg, metrics
}

// newTestManagerOpts is newTestManager with options; it also returns the
// queue metrics.
func newTestManagerOpts(t *testing.T, cfg *config.Config, opts Options) (*Manager, *prometheus.Registry, *registry.ForwardMetrics, *queue.Metrics) {
	t.Helper()
	require.NoError(t, cfg.Validate())
	reg := prometheus.NewPedanticRegistry()
	metrics := registry.NewForwardMetrics(reg)
	qm := queue.NewMetrics(reg)
	opts.UserAgent = "test-agent"
	if opts.FlushDeadline == 0 {
		opts.FlushDeadline = 5 * time.Second
	}
	opts.QueueMetrics = qm
	m := NewManager(nil, metrics, opts)
	require.NoError(t, m.ApplyConfig(cfg))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Stop(ctx)
	})
	return m, reg, metrics, qm
}

// floatSeries returns a series with n samples from timestamp ts0.
func floatSeries(ts0 int64, n int, kv ...string) prw.Series {
	s := prw.Series{Labels: labels.FromStrings(kv...)}
	for i := range n {
		s.Samples = append(s.Samples, prw.Sample{Value: float64(ts0) + float64(i), Timestamp: ts0 + int64(i)})
	}
	return s
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(entries)
}

func intString(n int) string { return strconv.Itoa(n) }

// drainBody reads a request body to its end.
func drainBody(r *http.Request) (int64, error) { return io.Copy(io.Discard, r.Body) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// eventuallyValue waits for c to read want: the fake upstream records a
// batch before the forwarder has counted its answer.
func eventuallyValue(t *testing.T, want float64, c prometheus.Collector) {
	t.Helper()
	require.Eventually(t, func() bool { return testutil.ToFloat64(c) == want }, waitFor, tick, "want %v, have %v", want, testutil.ToFloat64(c))
}

// allUpstreams is a Manager as the write handler's Enqueuer: every request
// goes to every upstream.
type allUpstreams struct{ m *Manager }

func (a allUpstreams) Enqueue(ctx context.Context, req *prw.Request) error {
	return a.m.Enqueue(ctx, req, "", nil)
}

// formItems returns req in the form, cut into chunks as a forwarder of
// batch limits maxN and maxB does, with its family metadata.
func formItems(req *prw.Request, maxN, maxB int) []item {
	return rawItems(req.Raw, maxN, maxB, true, false)
}

// pointCounts returns the numbers of samples, histograms and exemplars of
// ss.
func pointCounts(ss []prw.Series) (samples, histograms, exemplars int) {
	for i := range ss {
		samples += len(ss[i].Samples)
		histograms += len(ss[i].Histograms)
		exemplars += len(ss[i].Exemplars)
	}
	return samples, histograms, exemplars
}
