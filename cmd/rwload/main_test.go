package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/cmd/rwload/loadgen"
)

func TestParseFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		check   func(t *testing.T, o *options)
		wantErr string
	}{
		{
			name: "defaults",
			args: nil,
			check: func(t *testing.T, o *options) {
				require.Equal(t, "http://127.0.0.1:9201/api/v1/write", o.cfg.URL)
				require.Equal(t, 100_000, o.cfg.Series)
				require.Equal(t, 2000, o.cfg.SamplesPerRequest)
				require.Equal(t, 4, o.cfg.Concurrency)
				require.Equal(t, 30*time.Second, o.cfg.Duration)
				require.Zero(t, o.cfg.Rate)
				require.Equal(t, loadgen.ProtoV1, o.cfg.Protocol)
				require.Equal(t, loadgen.TimestampsAdvance, o.cfg.Timestamps)
				require.False(t, o.jsonOut)
				require.False(t, o.cfg.AllowRemote)
			},
		},
		{
			name: "all set, single and double dashes",
			args: []string{"-url=http://localhost:1/w", "--series", "5000", "-samples-per-request=500", "--protocol=2.0",
				"-concurrency=8", "-rate=200000", "-duration=10s", "-requests=7", "-timestamps=repeat", "-json", "--allow-remote"},
			check: func(t *testing.T, o *options) {
				require.Equal(t, "http://localhost:1/w", o.cfg.URL)
				require.Equal(t, 5000, o.cfg.Series)
				require.Equal(t, 500, o.cfg.SamplesPerRequest)
				require.Equal(t, loadgen.ProtoV2, o.cfg.Protocol)
				require.Equal(t, 8, o.cfg.Concurrency)
				require.Equal(t, 200000.0, o.cfg.Rate)
				require.Equal(t, 10*time.Second, o.cfg.Duration)
				require.Equal(t, int64(7), o.cfg.Requests)
				require.Equal(t, loadgen.TimestampsRepeat, o.cfg.Timestamps)
				require.True(t, o.jsonOut)
				require.True(t, o.cfg.AllowRemote)
			},
		},
		{name: "requests only", args: []string{"-duration=0", "-requests=10"}, check: func(t *testing.T, o *options) {
			require.Zero(t, o.cfg.Duration)
			require.Equal(t, int64(10), o.cfg.Requests)
		}},
		{name: "unbounded", args: []string{"-duration=0"}, wantErr: "-duration 0 needs -requests"},
		{name: "zero series", args: []string{"-series=0"}, wantErr: "series: must be positive"},
		{name: "zero samples", args: []string{"-samples-per-request=0"}, wantErr: "samples-per-request: must be positive"},
		{name: "zero concurrency", args: []string{"-concurrency=0"}, wantErr: "concurrency: must be positive"},
		{name: "samples above series", args: []string{"-series=10", "-samples-per-request=20"}, wantErr: "must not exceed series"},
		{name: "negative rate", args: []string{"-rate=-5"}, wantErr: "rate"},
		{name: "bad protocol", args: []string{"-protocol=3"}, wantErr: "protocol"},
		{name: "bad timestamps", args: []string{"-timestamps=now"}, wantErr: "timestamps"},
		{name: "bad url", args: []string{"-url=127.0.0.1:9201"}, wantErr: "url"},
		{name: "bad scheme", args: []string{"-url=tcp://127.0.0.1:9201"}, wantErr: "scheme"},
		{name: "zero timeout", args: []string{"-timeout=0"}, wantErr: "timeout"},
		{name: "unknown flag", args: []string{"-nope"}, wantErr: "not defined"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, o)
		})
	}
}

func TestRunRemoteRefused(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-url=http://192.0.2.1:9201/api/v1/write", "-requests=1"}, &stdout, &stderr)
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), "not a loopback address")
	require.Empty(t, stdout.String())
}

func TestRunJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	code := run([]string{"-url=" + srv.URL, "-series=1000", "-samples-per-request=100", "-requests=20", "-duration=10s", "-json"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	var res loadgen.Result
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), stdout.String())
	require.Equal(t, int64(20), res.Requests)
	require.Equal(t, int64(2000), res.AcceptedSamples)
	require.Equal(t, map[string]int64{"204": 20}, res.Status)
}

func TestRunText(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	code := run([]string{"-url=" + srv.URL, "-series=100", "-samples-per-request=100", "-requests=3"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	require.Contains(t, stdout.String(), "requests    3 (204: 3)")
	require.Contains(t, stdout.String(), "latency     p50")
}
