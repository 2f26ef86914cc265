package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCheckConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yml")
	require.NoError(t, os.WriteFile(bad, []byte("upstreams:\n- name: a\n  url: ftp://nowhere\n"), 0o600))
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"example", []string{"check", "config", "../../config/gateway.example.yml"}, 0},
		{"invalid", []string{"check", "config", bad}, 1},
		// Usage errors exit 2, as flag parsing does.
		{"unknown flag", []string{"--no-such-flag"}, 2},
		{"bad value", []string{"--storage.fsync=sometimes"}, 2},
		{"no file to check", []string{"check", "config"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, run0(tc.args))
		})
	}
}

// TestServeListenInUse: with its listen address taken, the gateway exits 1
// at once, however long its flush timeout.
func TestServeListenInUse(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer held.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gw.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("upstreams:\n- {name: up, url: http://127.0.0.1:1/api/v1/write}\n"), 0o600))

	code := make(chan int, 1)
	go func() {
		code <- run0([]string{
			"--config.file=" + cfg,
			"--web.listen-address=" + held.Addr().String(),
			"--storage.path=" + filepath.Join(dir, "data"),
			"--shutdown.flush-timeout=1h",
			"--log.level=error",
		})
	}()
	select {
	case got := <-code:
		require.Equal(t, 1, got)
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after its listen address was found taken")
	}
}

// A ratio outside (0, 1] is refused before anything starts.
func TestAutoGoMemLimitRatio(t *testing.T) {
	require.Equal(t, 1, run0([]string{"--config.file=../../config/gateway.example.yml", "--storage.path=" + t.TempDir(),
		"--web.listen-address=127.0.0.1:0", "--auto-gomemlimit.ratio=1.5"}))
}
