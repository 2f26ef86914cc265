package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// System names, in the order of every round.
const (
	sysGateway = "gateway"
	// sysBaseline is a second gateway binary (-baseline), typically built
	// from an earlier commit, run exactly like sysGateway: the "before" of
	// a before/after comparison.
	sysBaseline   = "gateway-baseline"
	sysVMAgent    = "vmagent"
	sysPrometheus = "prometheus"
)

// isGateway reports whether sys is a build of the gateway.
func isGateway(sys string) bool { return sys == sysGateway || sys == sysBaseline }

// queueSettings are the forwarding settings every system gets, as far as it
// has them.
type queueSettings struct {
	// shards is max_shards of the gateway and min_shards = max_shards of
	// Prometheus (so it does not spend the run resharding up from 1), and
	// -remoteWrite.queues of vmagent.
	shards int
	// capacity is queue_config.capacity (samples per shard) of the gateway
	// and Prometheus.
	capacity int
	// batch is max_samples_per_send of the gateway and Prometheus and
	// -remoteWrite.maxRowsPerBlock of vmagent.
	batch int
}

// binaries are the executables under test.
type binaries struct {
	gateway, vmagent, prometheus string
	// baseline is the gateway-baseline binary; empty without -baseline.
	baseline string
}

// of returns the binary of system sys, or "" for an unknown system.
func (b binaries) of(sys string) string {
	switch sys {
	case sysGateway:
		return b.gateway
	case sysBaseline:
		return b.baseline
	case sysVMAgent:
		return b.vmagent
	case sysPrometheus:
		return b.prometheus
	}
	return ""
}

// spec returns how to start system sys forwarding to every URL in sinks,
// with its files under dir.
func (b binaries) spec(sys, dir string, sinks []string, q queueSettings) (procSpec, error) {
	switch sys {
	case sysGateway, sysBaseline:
		// The same configuration and flags for both builds.
		return procSpec{
			name: sys, bin: b.of(sys), dir: dir, readyPath: "/-/ready",
			args: func(addr string) ([]string, error) {
				cfg := filepath.Join(dir, "gateway.yml")
				if err := os.WriteFile(cfg, []byte(gatewayConfig(sinks, q)), 0o644); err != nil {
					return nil, err
				}
				return []string{
					"--config.file=" + cfg,
					"--web.listen-address=" + addr,
					"--storage.path=" + filepath.Join(dir, "data"),
					"--log.level=warn",
				}, nil
			},
		}, nil
	case sysVMAgent:
		return procSpec{
			name: sys, bin: b.vmagent, dir: dir, readyPath: "/health",
			args: func(addr string) ([]string, error) {
				args := []string{
					"-httpListenAddr=" + addr,
					"-remoteWrite.tmpDataPath=" + filepath.Join(dir, "rw"),
					"-remoteWrite.queues=" + strconv.Itoa(q.shards),
					"-remoteWrite.maxRowsPerBlock=" + strconv.Itoa(q.batch),
					"-remoteWrite.flushInterval=1s",
					"-loggerLevel=WARN",
				}
				for _, u := range sinks {
					args = append(args, "-remoteWrite.url="+u)
				}
				return args, nil
			},
		}, nil
	case sysPrometheus:
		return procSpec{
			name: sys, bin: b.prometheus, dir: dir, readyPath: "/-/ready",
			args: func(addr string) ([]string, error) {
				cfg := filepath.Join(dir, "prometheus.yml")
				if err := os.WriteFile(cfg, []byte(prometheusConfig(sinks, q)), 0o644); err != nil {
					return nil, err
				}
				return []string{
					"--config.file=" + cfg,
					"--web.listen-address=" + addr,
					"--web.enable-remote-write-receiver",
					"--storage.tsdb.path=" + filepath.Join(dir, "data"),
					"--storage.tsdb.retention.time=1h",
					"--log.level=warn",
				}, nil
			},
		}, nil
	}
	return procSpec{}, fmt.Errorf("unknown system %q", sys)
}

// gatewayConfig returns a gateway configuration with one upstream per sink.
func gatewayConfig(sinks []string, q queueSettings) string {
	var b strings.Builder
	b.WriteString("upstreams:\n")
	for i, u := range sinks {
		fmt.Fprintf(&b, `  - name: sink%d
    url: %s
    protobuf_message: prometheus.WriteRequest
    queue_config:
      capacity: %d
      max_shards: %d
      max_samples_per_send: %d
      batch_send_deadline: 1s
`, i, u, q.capacity, q.shards, q.batch)
	}
	return b.String()
}

// prometheusConfig returns a Prometheus configuration that scrapes nothing
// and remote-writes to every sink.
func prometheusConfig(sinks []string, q queueSettings) string {
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 1m\nremote_write:\n")
	for i, u := range sinks {
		fmt.Fprintf(&b, `  - name: sink%d
    url: %s
    queue_config:
      capacity: %d
      min_shards: %d
      max_shards: %d
      max_samples_per_send: %d
      batch_send_deadline: 1s
    metadata_config:
      send: false
`, i, u, q.capacity, q.shards, q.shards, q.batch)
	}
	return b.String()
}

// versionOf returns the first line of `bin flag`, or "" if it fails.
func versionOf(bin string, flag string) string {
	out, err := exec.Command(bin, flag).CombinedOutput()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// peersEnv reads KEY=VALUE lines of .cache/peers/env under root.
func peersEnv(root string) map[string]string {
	m := map[string]string{}
	b, err := os.ReadFile(filepath.Join(root, ".cache", "peers", "env"))
	if err != nil {
		return m
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			m[k] = v
		}
	}
	return m
}

// debianVersion returns the version of Debian package pkg that
// scripts/peers.sh recorded, or "".
func debianVersion(root, pkg string) string {
	b, err := os.ReadFile(filepath.Join(root, ".cache", "peers", "packages.txt"))
	if err != nil {
		return ""
	}
	v := ""
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Package: "+pkg+" Version: "); ok {
			v = rest
		}
	}
	return v
}
