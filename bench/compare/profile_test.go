package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/require"
)

func TestProfileSeconds(t *testing.T) {
	require.Equal(t, 1, profileSeconds(300*time.Millisecond))
	require.Equal(t, 10, profileSeconds(10*time.Second))
	require.Equal(t, 10, profileSeconds(10900*time.Millisecond), "never past the load window")
}

func TestProfilesMerged(t *testing.T) {
	if testing.Short() {
		t.Skip("profiles for two seconds")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// Two runs one after the other, as in a scenario, with something to
	// sample.
	var ps profiles
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	wait1 := ps.start(context.Background(), srv.URL, time.Second, "run 1")
	wait1()
	wait2 := ps.start(context.Background(), srv.URL, time.Second, "run 2")
	wait2()

	path := filepath.Join(t.TempDir(), "default.pgo")
	n, err := ps.write(path)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	p, err := profile.Parse(f)
	require.NoError(t, err)
	require.Equal(t, "cpu", p.SampleType[len(p.SampleType)-1].Type)
	require.NotEmpty(t, p.Sample)
	require.GreaterOrEqual(t, p.DurationNanos, int64(2*time.Second), "durations add up")
}

func TestProfilesFailureWritesNothing(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "default.pgo")
	require.NoError(t, os.WriteFile(path, []byte("previous"), 0o644))

	var ps profiles
	ps.start(context.Background(), srv.URL, time.Second, "closed round 1 gateway")()
	_, err := ps.write(path)
	require.ErrorContains(t, err, "closed round 1 gateway")
	require.ErrorContains(t, err, "404")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "previous", string(b), "left alone")
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left")

	_, err = (&profiles{}).write(path)
	require.ErrorContains(t, err, "no run of the gateway was profiled")
}

func TestProfileFlag(t *testing.T) {
	bins := fakeBins(t)
	o, err := parseFlags(append(bins, "-systems", "gateway", "-profile", "x.pgo"))
	require.NoError(t, err)
	require.Equal(t, "x.pgo", o.profile)
	_, err = parseFlags(append(bins, "-systems", "vmagent", "-profile", "x.pgo"))
	require.ErrorContains(t, err, "-profile")
}
