package loadgen

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sink is a remote-write 1.0 receiver that counts what it decodes and
// checks that every series' timestamps strictly increase.
type sink struct {
	t      *testing.T
	mu     sync.Mutex
	code   int // response status; 0 means 204
	reqs   int
	samps  int
	lastTS map[string]int64
	bad    []string
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("Content-Encoding") != "snappy" || r.Header.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" {
		s.bad = append(s.bad, "headers: "+r.Header.Get("Content-Encoding")+" "+r.Header.Get("X-Prometheus-Remote-Write-Version"))
	}
	s.reqs++
	n := 0
	for _, ts := range req.Timeseries {
		key := labelsOf(ts.Labels).String()
		for _, smp := range ts.Samples {
			if last, ok := s.lastTS[key]; ok && smp.Timestamp <= last {
				s.bad = append(s.bad, key+" timestamp did not increase: "+strconv.FormatInt(smp.Timestamp, 10))
			}
			s.lastTS[key] = smp.Timestamp
			n++
		}
	}
	s.samps += n
	if s.code != 0 {
		http.Error(w, "refused", s.code)
		return
	}
	w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(n))
	w.WriteHeader(http.StatusNoContent)
}

func newSink(t *testing.T, code int) (*sink, *httptest.Server) {
	s := &sink{t: t, code: code, lastTS: map[string]int64{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func TestRunOneSecond(t *testing.T) {
	s, srv := newSink(t, 0)
	const rate = 20_000
	c := Config{
		URL:               srv.URL + "/api/v1/write",
		Series:            1000,
		SamplesPerRequest: 100,
		Concurrency:       2,
		Rate:              rate,
		Duration:          time.Second,
	}
	res, err := Run(context.Background(), c, nil)
	require.NoError(t, err)

	s.mu.Lock()
	defer s.mu.Unlock()
	require.Empty(t, s.bad)
	require.Len(t, s.lastTS, 1000, "every series sent")
	require.Equal(t, int64(s.reqs), res.Requests)
	require.Equal(t, int64(s.samps), res.Samples)
	require.Equal(t, res.Samples, res.AcceptedSamples)
	require.Equal(t, map[string]int64{"204": res.Requests}, res.Status)
	require.Zero(t, res.Errors)
	require.Equal(t, res.AcceptedSamples, res.ConfirmedSamples)
	require.Equal(t, res.Requests, res.Confirmations)

	// Paced: never above the rate (plus what was in flight), and not far
	// below it on a loopback, even on a busy machine under -race.
	require.GreaterOrEqual(t, res.ElapsedSeconds, 0.9)
	require.Less(t, res.ElapsedSeconds, 5.0)
	require.LessOrEqual(t, res.Samples, int64(rate*res.ElapsedSeconds)+int64(c.Concurrency*c.SamplesPerRequest))
	require.GreaterOrEqual(t, res.Samples, int64(rate/4))
	require.Positive(t, res.Latency.P50)
	require.LessOrEqual(t, res.Latency.P50, res.Latency.P99)
	require.LessOrEqual(t, res.Latency.P99, res.Latency.Max)
}

func TestRunRequestBound(t *testing.T) {
	for _, mode := range []string{TimestampsAdvance, TimestampsRepeat} {
		t.Run(mode, func(t *testing.T) {
			s, srv := newSink(t, 0)
			res, err := Run(context.Background(), Config{
				URL: srv.URL, Series: 500, SamplesPerRequest: 100, Concurrency: 3,
				Requests: 12, Duration: time.Minute, Timestamps: mode,
			}, nil)
			require.NoError(t, err)
			require.Equal(t, int64(12), res.Requests)
			require.Equal(t, int64(1200), res.AcceptedSamples)
			s.mu.Lock()
			defer s.mu.Unlock()
			require.Equal(t, 12, s.reqs)
			if mode == TimestampsAdvance {
				require.Empty(t, s.bad)
			} else {
				require.NotEmpty(t, s.bad, "repeat mode resends the same timestamps")
			}
		})
	}
}

func TestRunRefused(t *testing.T) {
	_, srv := newSink(t, http.StatusServiceUnavailable)
	res, err := Run(context.Background(), Config{
		URL: srv.URL, Series: 100, SamplesPerRequest: 50, Concurrency: 1, Requests: 4,
	}, nil)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"503": 4}, res.Status)
	require.Equal(t, int64(200), res.Samples)
	require.Zero(t, res.AcceptedSamples)
	require.Contains(t, res.LastError, "HTTP 503: refused")
}

func TestRunTransportErrors(t *testing.T) {
	_, srv := newSink(t, 0)
	url := srv.URL
	srv.Close()
	res, err := Run(context.Background(), Config{URL: url, Series: 100, SamplesPerRequest: 100, Concurrency: 1, Requests: 3}, nil)
	require.NoError(t, err)
	require.Equal(t, int64(3), res.Errors)
	require.Empty(t, res.Status)
	require.NotEmpty(t, res.LastError)
}

func TestRunCancel(t *testing.T) {
	_, srv := newSink(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	t0 := time.Now()
	res, err := Run(ctx, Config{URL: srv.URL, Series: 100, SamplesPerRequest: 10, Rate: 1000, Duration: time.Minute}, nil)
	require.NoError(t, err)
	require.Less(t, time.Since(t0), 5*time.Second)
	require.Positive(t, res.Requests)
}

func TestRunRefusesRemote(t *testing.T) {
	_, err := Run(context.Background(), Config{URL: "http://192.0.2.1/api/v1/write", Series: 10, SamplesPerRequest: 10, Requests: 1}, nil)
	require.ErrorIs(t, err, ErrNotLoopback)
}

func TestRunPayloadMismatch(t *testing.T) {
	p, err := NewPayloads(ProtoV2, 100, 10, 1)
	require.NoError(t, err)
	_, err = Run(context.Background(), Config{URL: "http://127.0.0.1:1/", Series: 100, SamplesPerRequest: 10, Requests: 1}, p)
	require.ErrorContains(t, err, "payloads are")
	_, err = Run(context.Background(), Config{URL: "http://127.0.0.1:1/", Protocol: ProtoV2, Series: 100, SamplesPerRequest: 10, Families: 20, Requests: 1}, p)
	require.ErrorContains(t, err, "payloads are", "other families")
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	require.Zero(t, h.quantile(0.99))
	for i := 1; i <= 1000; i++ {
		h.observe(time.Duration(i) * time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.quantile(tc.q)
		require.InEpsilon(t, tc.want.Seconds(), got.Seconds(), 1.0/32, "q%v", tc.q)
	}
	require.Equal(t, time.Second, h.quantile(1), "capped at the maximum")

	var small histogram
	small.observe(5 * time.Microsecond)
	require.Equal(t, 5*time.Microsecond, small.quantile(0.5))

	for _, us := range []uint64{0, 63, 64, 65, 1000, 1 << 20, 1<<40 + 12345} {
		i := bucketOf(us)
		require.GreaterOrEqual(t, upperOf(i), us, "value %d", us)
		if i > 0 {
			require.Less(t, upperOf(i-1), us, "value %d", us)
		}
	}
}

func TestPacer(t *testing.T) {
	p := pacer{rate: 1000}
	t0 := time.Unix(1000, 0)
	p.start(t0)
	require.Equal(t, t0, p.reserve(100, t0))
	require.Equal(t, t0.Add(100*time.Millisecond), p.reserve(100, t0))
	// Far behind schedule: catch up at most maxCatchUp.
	late := t0.Add(10 * time.Second)
	require.Equal(t, late.Add(-maxCatchUp), p.reserve(100, late))
	require.True(t, (&pacer{}).reserve(100, t0).IsZero(), "no rate, no wait")
}
