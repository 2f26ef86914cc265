package main

import (
	"bytes"
	"net/http"
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
