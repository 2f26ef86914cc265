package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

func TestSinkCounts(t *testing.T) {
	s, err := startSink()
	require.NoError(t, err)
	defer s.close()
	url, c := s.register("/run1/upstream0")

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

func TestCountWriteRequest(t *testing.T) {
	raw, err := rwtest.V1Request(123, 3).Marshal()
	require.NoError(t, err)
	samples, hists, err := countWriteRequest(raw)
	require.NoError(t, err)
	require.Equal(t, int64(369), samples)
	require.Zero(t, hists)
	_, _, err = countWriteRequest([]byte{0x0a, 0xff})
	require.Error(t, err)
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
	q := queueSettings{shards: 4, capacity: 50000, batch: 2000}
	gw := gatewayConfig([]string{"http://127.0.0.1:1/a", "http://127.0.0.1:1/b"}, q)
	require.Contains(t, gw, "name: sink1\n    url: http://127.0.0.1:1/b")
	require.Contains(t, gw, "max_shards: 4")
	prom := prometheusConfig([]string{"http://127.0.0.1:1/a"}, q)
	require.Contains(t, prom, "min_shards: 4\n      max_shards: 4")
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
