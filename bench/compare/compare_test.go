package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/relabel"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/config"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

func TestSinkCounts(t *testing.T) {
	s, err := startSink()
	require.NoError(t, err)
	defer s.close()
	url, c := s.register("/run1/upstream0", 0)

	post := func(url string, body []byte, enc string) int {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Encoding", enc)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusNoContent, post(url, rwtest.Encode(rwtest.V1Request(300, 2)), "snappy"))
	require.Equal(t, http.StatusNoContent, post(url, rwtest.Encode(rwtest.V1Request(50, 1)), "snappy"))
	require.Equal(t, http.StatusBadRequest, post(url, []byte("not snappy"), "snappy"))
	require.Equal(t, http.StatusUnsupportedMediaType, post(url, rwtest.Encode(rwtest.V1Request(1, 1)), "zstd"))
	require.Equal(t, int64(2), c.requests.Load())
	require.Equal(t, int64(650), c.samples.Load())
	require.Equal(t, int64(2), c.bad.Load())

	s.unregister("/run1/upstream0")
	require.Equal(t, http.StatusNoContent, post(url, rwtest.Encode(rwtest.V1Request(7, 1)), "snappy"))
	require.Equal(t, int64(7), s.stray.samples.Load(), "late requests of a finished run are stray")
	require.Equal(t, int64(650), c.samples.Load())
}

func TestSinkDelay(t *testing.T) {
	s, err := startSink()
	require.NoError(t, err)
	defer s.close()
	const delay = 50 * time.Millisecond
	url, c := s.register("/slow", delay)
	fast, fc := s.register("/fast", 0)

	post := func(url string) time.Duration {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(rwtest.Encode(rwtest.V1Request(10, 1))))
		require.NoError(t, err)
		req.Header.Set("Content-Encoding", "snappy")
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		return time.Since(t0)
	}
	require.GreaterOrEqual(t, post(url), delay)
	require.Equal(t, int64(10), c.samples.Load())
	post(fast)
	require.Equal(t, int64(10), fc.samples.Load())

	// A sender that gives up before the answer has not delivered.
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(rwtest.Encode(rwtest.V1Request(5, 1))))
	require.NoError(t, err)
	req.Header.Set("Content-Encoding", "snappy")
	_, err = (&http.Client{Timeout: delay / 5}).Do(req)
	require.Error(t, err)
	time.Sleep(2 * delay)
	require.Equal(t, int64(10), c.samples.Load(), "not counted: the sender timed out")
}

func TestCountWriteRequest(t *testing.T) {
	raw, err := rwtest.V1Request(123, 3).Marshal()
	require.NoError(t, err)
	samples, hists, err := countRequest(raw, fieldTimeseries, fieldHistograms)
	require.NoError(t, err)
	require.Equal(t, int64(369), samples)
	require.Zero(t, hists)
	_, _, err = countRequest([]byte{0x0a, 0xff}, fieldTimeseries, fieldHistograms)
	require.Error(t, err)
}

// TestSinkTakesV2: a 2.0 request is counted and answered with the Written
// headers, so a 2.0 sender does not take the sink for a 1.0 receiver.
func TestSinkTakesV2(t *testing.T) {
	s := &sink{}
	_, c := s.register("/v2", 0)
	r := rwtest.NewHTTPRequest(prw.ProtoV2, rwtest.Encode(rwtest.V2Request(7, 3)))
	r.URL.Path = "/v2"
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, r)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	require.Equal(t, "21", rec.Header().Get(prw.HeaderSamplesWritten))
	require.Equal(t, int64(21), c.samples.Load())
}

func TestParseStatCPU(t *testing.T) {
	// Fields from a real /proc/PID/stat, with a command name holding
	// spaces and a parenthesis; utime 1234 and stime 566 ticks.
	stat := "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 2000 0 0 0 1234 566 0 0 20 0 8 0 100 1000000 500 18446744073709551615"
	got, err := parseStatCPU(stat)
	require.NoError(t, err)
	require.InDelta(t, 18.0, got, 1e-9)
	_, err = parseStatCPU("4242 (x) S 1")
	require.Error(t, err)
}

func TestParseVmHWM(t *testing.T) {
	got, err := parseVmHWM(strings.NewReader("Name:\tgateway\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n"))
	require.NoError(t, err)
	require.Equal(t, int64(51200*1024), got)
	_, err = parseVmHWM(strings.NewReader("Name:\tx\n"))
	require.Error(t, err)
}

func TestConfigs(t *testing.T) {
	q := queueSettings{tuned: true, shards: 4, capacity: 50000, batch: 2000}
	sinks := []string{"http://127.0.0.1:1/a", "http://127.0.0.1:1/b"}
	gw := gatewayConfig(sinks, q)
	require.Contains(t, gw, "name: sink1\n    url: http://127.0.0.1:1/b")
	require.Contains(t, gw, "max_shards: 4")
	prom := prometheusConfig(sinks[:1], q)
	require.Contains(t, prom, "min_shards: 4\n      max_shards: 4")

	// At defaults: the URLs (and the gateway's required name), nothing else.
	q.tuned = false
	require.Equal(t, "upstreams:\n  - name: sink0\n    url: http://127.0.0.1:1/a\n  - name: sink1\n    url: http://127.0.0.1:1/b\n", gatewayConfig(sinks, q))
	require.Equal(t, "remote_write:\n  - url: http://127.0.0.1:1/a\n  - url: http://127.0.0.1:1/b\n", prometheusConfig(sinks, q))
}

// argsOf returns the arguments system sys starts with under settings q,
// forwarding to sinks, with its directory written as DIR.
func argsOf(t *testing.T, bins binaries, sys string, q queueSettings, sinks ...string) []string {
	t.Helper()
	dir := t.TempDir()
	spec, err := bins.spec(sys, dir, sinks, q)
	require.NoError(t, err)
	require.Equal(t, bins.of(sys), spec.bin)
	args, err := spec.args("127.0.0.1:9999")
	require.NoError(t, err)
	args = slices.Clone(args)
	for i := range args {
		args[i] = strings.ReplaceAll(args[i], dir, "DIR")
	}
	return args
}

func TestSettingsArgs(t *testing.T) {
	bins := binaries{gateway: "/gw", vmagent: "/vma", vmagentNewest: "/vmn", prometheus: "/prom"}
	defaults := queueSettings{shards: 4, capacity: 50000, batch: 2000}
	tuned := defaults
	tuned.tuned = true
	a, b := "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"

	// The newest vmagent: listen address, data path, URLs and the
	// protocol the sink decodes, one per URL; the same when tuned.
	want := []string{"-httpListenAddr=127.0.0.1:9999", "-remoteWrite.tmpDataPath=DIR/rw",
		"-remoteWrite.url=" + a, "-remoteWrite.forcePromProto=true", "-remoteWrite.url=" + b, "-remoteWrite.forcePromProto=true"}
	require.Equal(t, want, argsOf(t, bins, sysVMAgentNewest, defaults, a, b))
	require.Equal(t, want, argsOf(t, bins, sysVMAgentNewest, tuned, a, b))

	require.Equal(t, []string{"-httpListenAddr=127.0.0.1:9999", "-remoteWrite.tmpDataPath=DIR/rw", "-remoteWrite.url=" + a},
		argsOf(t, bins, sysVMAgent, defaults, a))
	require.Contains(t, argsOf(t, bins, sysVMAgent, tuned, a), "-remoteWrite.queues=4")

	require.Equal(t, []string{"--config.file=DIR/gateway.yml", "--web.listen-address=127.0.0.1:9999", "--storage.path=DIR/data"},
		argsOf(t, bins, sysGateway, defaults, a))
	require.Equal(t, argsOf(t, bins, sysGateway, defaults, a), argsOf(t, bins, sysGatewayV1, defaults, a), "the 1.0 reference is the same gateway")
	require.Contains(t, argsOf(t, bins, sysGateway, tuned, a), "--log.level=warn")

	require.Equal(t, []string{"--config.file=DIR/prometheus.yml", "--web.listen-address=127.0.0.1:9999", "--web.enable-remote-write-receiver", "--storage.tsdb.path=DIR/data"},
		argsOf(t, bins, sysPrometheus, defaults, a))
}

// fakeBins writes executable stand-ins for every system into a temporary
// directory and returns the flags naming them.
func fakeBins(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	var flags []string
	for _, f := range []string{"gateway", "vmagent", "vmagent-newest", "prometheus"} {
		p := filepath.Join(dir, f)
		require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755))
		flags = append(flags, "-"+f, p)
	}
	return flags
}

func TestSettingsFlag(t *testing.T) {
	bins := fakeBins(t)
	o, err := parseFlags(bins)
	require.NoError(t, err)
	require.Equal(t, settingsDefaults, o.settings)
	require.False(t, o.q.tuned)
	require.Equal(t, "gateway,vmagent-newest,vmagent,prometheus", o.systems)

	o, err = parseFlags(append(bins, "-settings", "tuned", "-shards", "8"))
	require.NoError(t, err)
	require.True(t, o.q.tuned)
	require.Equal(t, 8, o.q.shards)

	_, err = parseFlags(append(bins, "-shards", "8"))
	require.ErrorContains(t, err, "-shards: only with -settings tuned")
	_, err = parseFlags(append(bins, "-settings", "fast"))
	require.ErrorContains(t, err, "-settings")
	_, err = parseFlags(append(bins, "-systems", "gateway,vmagent-newest", "-vmagent-newest", filepath.Join(t.TempDir(), "none")))
	require.ErrorContains(t, err, "make vmagent-newest")
}

func TestScenarioList(t *testing.T) {
	o, err := parseFlags(fakeBins(t))
	require.NoError(t, err)
	list := o.scenarioList()
	var keys []string
	byKey := map[string]scenario{}
	for _, sc := range list {
		keys = append(keys, sc.key)
		byKey[sc.key] = sc
	}
	require.Equal(t, allScenarios, keys)

	closed := byKey[scClosedLoop]
	require.Zero(t, closed.rate, "closed loop")
	require.Equal(t, 100_000, closed.series)
	require.Equal(t, 1, closed.upstreams)
	require.Equal(t, 200_000.0, byKey[scOneUpstream].rate)
	require.Equal(t, 2, byKey[scTwoUpstreams].upstreams)
	require.Equal(t, 1_000_000, byKey[scLargeSeries].series)

	slow := byKey[scSlowUpstream]
	require.Equal(t, 20*time.Millisecond, slow.sinkDelay)
	require.Equal(t, 200_000.0, slow.rate)
	for _, sc := range list {
		if sc.key != scSlowUpstream {
			require.Zero(t, sc.sinkDelay, sc.key)
		}
	}

	v2 := byKey[scV2Input]
	require.Equal(t, []string{sysGateway, sysGatewayV1, sysVMAgentNewest, sysVMAgent, sysPrometheus}, v2.systems)
	require.Equal(t, "2.0", protocolOf(v2, sysGateway).String())
	require.Equal(t, "1.0", protocolOf(v2, sysGatewayV1).String())
	require.Equal(t, "2.0", protocolOf(v2, sysVMAgentNewest).String())
	for _, sc := range list {
		if sc.key != scV2Input && sc.key != scV2Upstream {
			require.NotContains(t, sc.systems, sysGatewayV1, sc.key)
		}
		require.Equal(t, sc.key == scV2Upstream, sc.upstreamV2, sc.key)
		if sc.key == scV2Input || sc.key == scV2Upstream {
			require.Equal(t, 200, sc.families, "2.0 requests of over 128 symbols: %s", sc.key)
		} else {
			require.Equal(t, 1, sc.families, sc.key)
		}
	}
	twoUp := byKey[scTwoUpstreams]
	require.Equal(t, []string{sysGateway, sysGatewayOneUp, sysVMAgentNewest, sysVMAgent, sysPrometheus}, twoUp.systems)
	require.Equal(t, 2, upstreamsOf(twoUp, sysGateway))
	require.Equal(t, 1, upstreamsOf(twoUp, sysGatewayOneUp), "the reference has the first upstream only")
	require.Equal(t, 2, upstreamsOf(twoUp, sysVMAgentNewest))
	for _, sc := range list {
		if sc.key != scTwoUpstreams {
			require.NotContains(t, sc.systems, sysGatewayOneUp, sc.key)
		}
	}
	v2up := byKey[scV2Upstream]
	require.Equal(t, []string{sysGateway, sysGatewayV1}, v2up.systems, "gateways only")
	require.Contains(t, gatewayConfig([]string{"http://127.0.0.1:1/a"}, queueSettings{upstreamV2: true}),
		"    protobuf_message: io.prometheus.write.v2.Request\n")

	// Without the gateway there is no 1.0 reference.
	o.systems = "vmagent"
	require.Equal(t, []string{sysVMAgent}, o.scenarioList()[4].systems)
}

func TestMedian(t *testing.T) {
	require.Equal(t, 2.0, median([]float64{3, 1, 2}))
	require.Equal(t, 2.5, median([]float64{4, 1, 2, 3}))
	require.True(t, median(nil) != median(nil), "NaN when empty")
}

func TestBaselineFlag(t *testing.T) {
	dir := t.TempDir()
	gw, base := filepath.Join(dir, "gateway"), filepath.Join(dir, "gateway-old")
	for _, p := range []string{gw, base} {
		require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755))
	}

	o, err := parseFlags([]string{"-gateway", gw, "-systems", "gateway", "-scenarios", "1up"})
	require.NoError(t, err)
	require.Equal(t, "gateway", o.systems, "no baseline: systems unchanged")

	o, err = parseFlags([]string{"-gateway", gw, "-baseline", base, "-systems", "gateway", "-scenarios", "1up"})
	require.NoError(t, err)
	require.Equal(t, "gateway,gateway-baseline", o.systems, "added right after gateway")
	require.Equal(t, base, o.bins.baseline)
	require.Equal(t, []string{sysGateway, sysBaseline}, o.scenarioList()[0].systems)

	o, err = parseFlags([]string{"-gateway", gw, "-baseline", base, "-systems", "gateway-baseline,gateway"})
	require.NoError(t, err)
	require.Equal(t, "gateway-baseline,gateway", o.systems, "an explicit order is kept")

	_, err = parseFlags([]string{"-gateway", gw, "-systems", "gateway,gateway-baseline"})
	require.ErrorContains(t, err, "needs -baseline")
	_, err = parseFlags([]string{"-gateway", gw, "-baseline", filepath.Join(dir, "missing"), "-systems", "gateway"})
	require.ErrorContains(t, err, "not found")

	// Both builds start with the same configuration and flags.
	bins := binaries{gateway: gw, baseline: base}
	q := queueSettings{shards: 4, capacity: 50000, batch: 2000}
	var args [2][]string
	for i, sys := range []string{sysGateway, sysBaseline} {
		sd := filepath.Join(dir, "run-"+sys)
		require.NoError(t, os.MkdirAll(sd, 0o755))
		spec, err := bins.spec(sys, sd, []string{"http://127.0.0.1:1/a"}, q)
		require.NoError(t, err)
		require.Equal(t, bins.of(sys), spec.bin)
		require.Equal(t, sys, spec.name)
		args[i], err = spec.args("127.0.0.1:9999")
		require.NoError(t, err)
		args[i] = slices.Clone(args[i])
		for j := range args[i] {
			args[i][j] = strings.ReplaceAll(args[i][j], sd, "DIR")
		}
	}
	require.Equal(t, args[0], args[1])
}

func TestBeforeAfterReport(t *testing.T) {
	run := func(round int, sys string, cpu float64, rss int64, p99 float64) measurement {
		return measurement{Scenario: "1up", Round: round, System: sys, LoadSeconds: 10,
			Accepted: 2_000_000, Sent: 2_000_000, Delivered: []int64{2_000_000}, Status: map[string]int64{"204": 1000},
			CPUSeconds: cpu, PeakRSSBytes: rss << 20, P99: p99}
	}
	r := scenarioResult{sc: scenario{key: "1up", title: "t", rounds: 3}, runs: []measurement{
		run(1, sysGateway, 1.8, 30, 0.004), run(1, sysBaseline, 2.0, 40, 0.005), run(1, sysVMAgent, 3.0, 60, 0.008),
		run(2, sysGateway, 1.6, 30, 0.004), run(2, sysBaseline, 2.0, 40, 0.004), run(2, sysVMAgent, 3.0, 60, 0.008),
		run(3, sysGateway, 2.0, 33, 0.006), run(3, sysBaseline, 2.0, 30, 0.005), run(3, sysVMAgent, 3.0, 60, 0.008),
	}}
	var b strings.Builder
	writeScenario(&b, r)
	out := b.String()
	// Medians: CPU-s/M 1.0 → 0.9; RSS 40 → 30 MiB; p99 5 → 4 ms. Median
	// of the rounds' ratios: CPU 0.9, RSS 0.75, p99 1.0.
	require.Contains(t, out, "CPU-s per M samples 1.000 → 0.900 (×0.90, -10%), peak RSS MiB 40.0 → 30.0 (×0.75, -25%), p99 ms 5.0 → 4.0 (×1.00, +0%)")
	require.Contains(t, out, "| round | CPU/M after ÷ before | RSS after ÷ before | p99 after ÷ before |\n")
	require.Contains(t, out, "| 3 | 1.00 | 1.10 | 1.20 |\n")
	require.Contains(t, out, "| **median** | **0.90** | **0.75** | **1.00** |\n")
	require.Contains(t, out, "| gateway-baseline | 3 | 200.0k | 200.0k | 1.000 | 40.0 | 5.0 |\n")
	// The peers' ratio table stays gateway ÷ peer, without the baseline.
	require.Contains(t, out, "| round | CPU/M vs vmagent | RSS vs vmagent | p99 vs vmagent |\n")
	require.NotContains(t, out, "vs gateway-baseline")

	// Without a baseline there is no before/after.
	r.runs = slices.DeleteFunc(slices.Clone(r.runs), func(m measurement) bool { return m.System == sysBaseline })
	b.Reset()
	writeScenario(&b, r)
	require.NotContains(t, b.String(), "after")
}

func TestProbeFailure(t *testing.T) {
	m := measurement{Sent: 1000, Accepted: 1000, Delivered: []int64{1000}, Status: map[string]int64{"204": 1}}
	require.Empty(t, m.probeFailure(), "it forwarded everything")
	m.Delivered = []int64{0}
	require.Contains(t, m.probeFailure(), "answered 2xx to 1000 samples")
	m = measurement{Sent: 1000, Delivered: []int64{0}, Status: map[string]int64{"400": 1}, LastError: "HTTP 400: unsupported"}
	require.Equal(t, "it answered 2xx to none of 1000 samples (responses 400×1; last: HTTP 400: unsupported)", m.probeFailure())
	m.Err = "start: exited"
	require.Empty(t, m.probeFailure(), "a failed run is reported as such, not as a probe")
}

func TestV2CostReport(t *testing.T) {
	run := func(round int, sys string, cpu float64, delivered int64) measurement {
		return measurement{Scenario: "v2", Round: round, System: sys, LoadSeconds: 10,
			Accepted: 2_000_000, Sent: 2_000_000, Delivered: []int64{delivered}, Status: map[string]int64{"204": 1000},
			CPUSeconds: cpu, PeakRSSBytes: 40 << 20, P99: 0.005}
	}
	r := scenarioResult{sc: scenario{key: "v2", title: "t", rounds: 2}, runs: []measurement{
		run(1, sysGateway, 4.0, 2_000_000), run(1, sysGatewayV1, 2.0, 2_000_000), run(1, sysVMAgentNewest, 0.5, 0),
		run(2, sysGateway, 3.0, 2_000_000), run(2, sysGatewayV1, 2.0, 2_000_000),
	}}
	var b strings.Builder
	writeScenario(&b, r)
	out := b.String()
	// Medians: CPU-s/M 1.0 → 1.75; ratios 2.0 and 1.5, median 1.75.
	require.Contains(t, out, "**Remote write 1.0 → 2.0 input** (gateway-rw1 → gateway; medians of the rounds, and the median of the rounds' 2.0 ÷ 1.0): CPU-s per M samples 1.000 → 1.750 (×1.75, +75%)")
	require.Contains(t, out, "| round | CPU/M 2.0 ÷ 1.0 | RSS 2.0 ÷ 1.0 | p99 2.0 ÷ 1.0 |\n")
	require.Contains(t, out, "| 1 | 2.00 | 1.00 | 1.00 |\n")
	// The reference is a gateway: no "vs gateway-rw1" column; the peer
	// that delivered nothing has no ratio.
	require.NotContains(t, out, "vs gateway-rw1")
	require.Contains(t, out, "No ratios: no round has the gateway and another system both delivering.")
}

func TestSecondUpstreamReport(t *testing.T) {
	run := func(round int, sys string, cpu float64, upstreams int) measurement {
		d := make([]int64, upstreams)
		for i := range d {
			d[i] = 2_000_000
		}
		return measurement{Scenario: "2up", Round: round, System: sys, LoadSeconds: 10, Upstreams: upstreams,
			Accepted: 2_000_000, Sent: 2_000_000, Delivered: d, Status: map[string]int64{"204": 1000},
			CPUSeconds: cpu, PeakRSSBytes: 40 << 20, P99: 0.005}
	}
	r := scenarioResult{sc: scenario{key: "2up", title: "t", rounds: 2, upstreams: 2}, runs: []measurement{
		run(1, sysGateway, 2.6, 2), run(1, sysGatewayOneUp, 2.0, 1), run(1, sysVMAgentNewest, 4.0, 2),
		run(2, sysGateway, 2.2, 2), run(2, sysGatewayOneUp, 2.0, 1), run(2, sysVMAgentNewest, 4.0, 2),
	}}
	var b strings.Builder
	writeScenario(&b, r)
	out := b.String()
	// Ratios 1.3 and 1.1, median 1.2: the second upstream adds 20%.
	require.Contains(t, out, "**One → two upstreams** (gateway-1up → gateway; medians of the rounds, and the median of the rounds' 2 ÷ 1): CPU-s per M samples 1.000 → 1.200 (×1.20, +20%)")
	require.Contains(t, out, "| 1 | 1.30 | 1.00 | 1.00 |\n")
	require.NotContains(t, out, "vs gateway-1up", "the reference is a gateway, not a peer")
	require.Contains(t, out, "CPU/M vs vmagent-newest")
}

func TestMarkdownHeader(t *testing.T) {
	o, err := parseFlags(fakeBins(t))
	require.NoError(t, err)
	rep := report{host: host{date: time.Unix(0, 0), cpus: 2}, o: o, versions: map[string]string{
		sysGateway: "gateway, version x", sysVMAgentNewest: "vmagent v1.151.0 (go install github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent, go1.26.8)",
	}}
	md := rep.markdown()
	require.Contains(t, md, "- gateway: `gateway, version x`\n- vmagent-newest: `vmagent v1.151.0")
	require.Contains(t, md, "- Settings: **defaults**")
	require.Contains(t, md, "rounds interleaved gateway, vmagent-newest, vmagent, prometheus.")
	require.Contains(t, md, "- Command: `make bench-compare` (0s in all).")

	o.q.tuned = true
	md = rep.markdown()
	require.Contains(t, md, "- Settings: **tuned**: 4 shards/queues per upstream and 2000 samples per forwarded request (gateway, vmagent, Prometheus), queue capacity 50000 samples per shard (gateway and Prometheus); vmagent-newest at its defaults.")
	require.Contains(t, md, "- Command: `make bench-compare` with `-settings tuned` (0s in all).")
}

func TestGoModuleVersion(t *testing.T) {
	// A test binary has build information but no module version.
	exe, err := os.Executable()
	require.NoError(t, err)
	require.NotPanics(t, func() { goModuleVersion(exe) })
	notGo := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(notGo, []byte("#!/bin/sh\n"), 0o755))
	require.Empty(t, goModuleVersion(notGo))
}

// The relabel and external scenarios, and the one of both, give every
// system the same rules or label: the gateway and Prometheus in their configuration (the gateway's
// loads, tuned or not), vmagent in a rules file named after each URL or by
// -remoteWrite.label.
func TestChangingScenarios(t *testing.T) {
	a := "http://127.0.0.1:1/a"
	for _, tc := range []struct {
		key     string
		q       queueSettings
		gateway func(t *testing.T, cfg *config.Config)
		prom    []string // in Prometheus's configuration
		vmagent []string // flags of the newest vmagent after -remoteWrite.url
		absent  string   // in neither configuration without the scenario
	}{
		{
			key: scRelabel, q: queueSettings{relabel: true},
			gateway: func(t *testing.T, cfg *config.Config) {
				rules := cfg.Upstreams[0].WriteRelabelConfigs
				require.Len(t, rules, 2)
				require.Equal(t, relabel.Drop, rules[0].Action)
				require.Equal(t, relabel.LabelDrop, rules[1].Action)
			},
			prom:    []string{"    write_relabel_configs:\n      - source_labels: [mode]\n"},
			vmagent: []string{"-remoteWrite.forcePromProto=true", "-remoteWrite.urlRelabelConfig=DIR/relabel.yml"},
			absent:  "relabel",
		},
		{
			key: scExternal, q: queueSettings{external: true},
			gateway: func(t *testing.T, cfg *config.Config) {
				require.Equal(t, `{replica="a"}`, cfg.Global.ExternalLabels.String())
				require.Empty(t, cfg.Upstreams[0].WriteRelabelConfigs)
			},
			prom:    []string{"global:\n", "  external_labels:\n    replica: a\n"},
			vmagent: []string{"-remoteWrite.forcePromProto=true", "-remoteWrite.label=replica=a"},
			absent:  "external_labels",
		},
		{
			key: scBoth, q: queueSettings{relabel: true, external: true},
			gateway: func(t *testing.T, cfg *config.Config) {
				require.Equal(t, `{replica="a"}`, cfg.Global.ExternalLabels.String())
				require.Len(t, cfg.Upstreams[0].WriteRelabelConfigs, 2)
			},
			prom:    []string{"  external_labels:\n    replica: a\n", "    write_relabel_configs:\n      - source_labels: [mode]\n"},
			vmagent: []string{"-remoteWrite.forcePromProto=true", "-remoteWrite.urlRelabelConfig=DIR/relabel.yml", "-remoteWrite.label=replica=a"},
			absent:  "external_labels",
		},
	} {
		t.Run(tc.key, func(t *testing.T) {
			o, err := parseFlags(append(fakeBins(t), "-scenarios", tc.key))
			require.NoError(t, err)
			sc := o.scenarioList()[0]
			require.Equal(t, tc.q.relabel, sc.relabel)
			require.Equal(t, tc.q.external, sc.external)
			require.Zero(t, sc.rate, "a closed loop")
			for _, tuned := range []bool{false, true} {
				q := tc.q
				q.tuned, q.shards, q.capacity, q.batch = tuned, 4, 50000, 2000
				cfg, err := config.Load([]byte(gatewayConfig([]string{a}, q)))
				require.NoError(t, err)
				require.Len(t, cfg.Upstreams, 1)
				tc.gateway(t, cfg)
				for _, want := range tc.prom {
					require.Contains(t, prometheusConfig([]string{a}, q), want)
				}
			}
			require.NotContains(t, gatewayConfig([]string{a}, queueSettings{}), tc.absent)
			require.NotContains(t, prometheusConfig([]string{a}, queueSettings{}), tc.absent)
			args := argsOf(t, binaries{vmagentNewest: "/vmn"}, sysVMAgentNewest, tc.q, a)
			require.Equal(t, append([]string{"-remoteWrite.url=" + a}, tc.vmagent...), args[2:])
			if tc.q.external {
				require.Contains(t, argsOf(t, binaries{vmagent: "/vm"}, sysVMAgent, tc.q, a), "-remoteWrite.label=replica=a")
				require.NotContains(t, argsOf(t, binaries{vmagent: "/vm"}, sysVMAgent, queueSettings{}, a), "-remoteWrite.label=replica=a")
			}
		})
	}
}
