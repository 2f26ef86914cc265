package main

import (
	"debug/buildinfo"
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
	sysBaseline = "gateway-baseline"
	// sysGatewayV1 is the gateway binary fed remote write 1.0 in the v2
	// scenario, right after sysGateway fed 2.0: the reference that the
	// gateway's 2.0 cost is compared with. Not a -systems name.
	sysGatewayV1 = "gateway-rw1"
	// sysGatewayOneUp is the gateway binary with one upstream in the 2up
	// scenario, right after sysGateway with two: the reference that the
	// second upstream's cost is measured against. Not a -systems name.
	sysGatewayOneUp = "gateway-1up"
	// sysVMAgentNewest is the newest vmagent, built from source with `go
	// install` (make vmagent-newest), always run at its defaults.
	sysVMAgentNewest = "vmagent-newest"
	// sysVMAgent is Debian's vmagent 1.79.5.
	sysVMAgent    = "vmagent"
	sysPrometheus = "prometheus"
)

// knownSystems are the names -systems accepts, in their default order.
var knownSystems = []string{sysGateway, sysBaseline, sysVMAgentNewest, sysVMAgent, sysPrometheus}

// isGateway reports whether sys is a build of the gateway.
func isGateway(sys string) bool {
	return sys == sysGateway || sys == sysBaseline || sys == sysGatewayV1 || sys == sysGatewayOneUp
}

// Values of -settings.
const (
	// settingsDefaults runs every system at its own defaults: only the
	// listen address, the upstream URL(s) and the data path are set, plus
	// what a system needs to receive remote write at all (Prometheus:
	// --web.enable-remote-write-receiver) or to send what the sink decodes
	// (vmagent-newest: -remoteWrite.forcePromProto).
	settingsDefaults = "defaults"
	// settingsTuned gives the gateway, vmagent 1.79.5 and Prometheus the
	// same forwarding settings (queueSettings), as far as each has them,
	// and quieter logs. vmagent-newest stays at its defaults.
	settingsTuned = "tuned"
)

// queueSettings are the forwarding settings every system gets, as far as it
// has them, when tuned; at defaults (the default) none of them is set.
type queueSettings struct {
	// upstreamV2: the gateway sends remote write 2.0 (the v2up scenario).
	upstreamV2 bool
	// relabel: every upstream has relabelRules (the relabel scenario).
	relabel bool
	// external: every series is given externalLabel (the external
	// scenario).
	external bool
	// tuned: set what follows; false: every system at its defaults.
	tuned bool
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
	// vmagentNewest is the go-installed newest vmagent.
	vmagentNewest string
	// baseline is the gateway-baseline binary; empty without -baseline.
	baseline string
}

// of returns the binary of system sys, or "" for an unknown system.
func (b binaries) of(sys string) string {
	switch sys {
	case sysGateway, sysGatewayV1, sysGatewayOneUp:
		return b.gateway
	case sysBaseline:
		return b.baseline
	case sysVMAgent:
		return b.vmagent
	case sysVMAgentNewest:
		return b.vmagentNewest
	case sysPrometheus:
		return b.prometheus
	}
	return ""
}

// spec returns how to start system sys forwarding to every URL in sinks,
// with its files under dir.
func (b binaries) spec(sys, dir string, sinks []string, q queueSettings) (procSpec, error) {
	switch sys {
	case sysGateway, sysBaseline, sysGatewayV1, sysGatewayOneUp:
		// The same configuration and flags for every build.
		return procSpec{
			name: sys, bin: b.of(sys), dir: dir, readyPath: "/-/ready",
			args: func(addr string) ([]string, error) {
				cfg := filepath.Join(dir, "gateway.yml")
				if err := os.WriteFile(cfg, []byte(gatewayConfig(sinks, q)), 0o644); err != nil {
					return nil, err
				}
				args := []string{
					"--config.file=" + cfg,
					"--web.listen-address=" + addr,
					"--storage.path=" + filepath.Join(dir, "data"),
				}
				if q.tuned {
					args = append(args, "--log.level=warn")
				}
				return args, nil
			},
		}, nil
	case sysVMAgent:
		return procSpec{
			name: sys, bin: b.vmagent, dir: dir, readyPath: "/health",
			args: func(addr string) ([]string, error) {
				args := []string{
					"-httpListenAddr=" + addr,
					"-remoteWrite.tmpDataPath=" + filepath.Join(dir, "rw"),
				}
				if q.tuned {
					args = append(args,
						"-remoteWrite.queues="+strconv.Itoa(q.shards),
						"-remoteWrite.maxRowsPerBlock="+strconv.Itoa(q.batch),
						"-remoteWrite.flushInterval=1s",
						"-loggerLevel=WARN",
					)
				}
				rl, err := vmagentRelabel(dir, q)
				if err != nil {
					return nil, err
				}
				for _, u := range sinks {
					args = append(args, "-remoteWrite.url="+u)
					args = append(args, rl...)
				}
				return append(args, vmagentLabel(q)...), nil
			},
		}, nil
	case sysVMAgentNewest:
		// At its defaults in both settings, but for the protocol: a recent
		// vmagent prefers VictoriaMetrics' own remote-write protocol
		// (zstd) and negotiates it with the upstream, while the sink, like
		// the gateway's upstreams, decodes only Prometheus remote write.
		return procSpec{
			name: sys, bin: b.vmagentNewest, dir: dir, readyPath: "/health",
			args: func(addr string) ([]string, error) {
				args := []string{
					"-httpListenAddr=" + addr,
					"-remoteWrite.tmpDataPath=" + filepath.Join(dir, "rw"),
				}
				rl, err := vmagentRelabel(dir, q)
				if err != nil {
					return nil, err
				}
				for _, u := range sinks {
					// -remoteWrite.forcePromProto and
					// -remoteWrite.urlRelabelConfig are per URL, in the
					// order of -remoteWrite.url.
					args = append(args, "-remoteWrite.url="+u, "-remoteWrite.forcePromProto=true")
					args = append(args, rl...)
				}
				return append(args, vmagentLabel(q)...), nil
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
				args := []string{
					"--config.file=" + cfg,
					"--web.listen-address=" + addr,
					// Not a tuning: without it Prometheus receives no
					// remote write at all.
					"--web.enable-remote-write-receiver",
					"--storage.tsdb.path=" + filepath.Join(dir, "data"),
				}
				if q.tuned {
					args = append(args, "--storage.tsdb.retention.time=1h", "--log.level=warn")
				}
				return args, nil
			},
		}, nil
	}
	return procSpec{}, fmt.Errorf("unknown system %q", sys)
}

// relabelRules are the relabel scenario's rules, a YAML list of Prometheus
// relabel_config: a drop by a label's value and a labeldrop.
const relabelRules = `- source_labels: [mode]
  regex: guest
  action: drop
- regex: rack
  action: labeldrop
`

// externalLabel is the external scenario's label, name and value.
var externalLabel = [2]string{"replica", "a"}

// vmagentRelabel writes relabelRules under dir for the relabel scenario
// and returns the flag that gives them to one -remoteWrite.url; else none.
func vmagentRelabel(dir string, q queueSettings) ([]string, error) {
	if !q.relabel {
		return nil, nil
	}
	file := filepath.Join(dir, "relabel.yml")
	if err := os.WriteFile(file, []byte(relabelRules), 0o644); err != nil {
		return nil, err
	}
	return []string{"-remoteWrite.urlRelabelConfig=" + file}, nil
}

// vmagentLabel returns the flag that adds externalLabel to every series
// for the external scenario; else none.
func vmagentLabel(q queueSettings) []string {
	if !q.external {
		return nil
	}
	return []string{"-remoteWrite.label=" + externalLabel[0] + "=" + externalLabel[1]}
}

// indent returns s with every line indented by n spaces.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+pad) + "\n"
}

// gatewayConfig returns a gateway configuration with one upstream per sink:
// only a name (required) and the URL at defaults.
func gatewayConfig(sinks []string, q queueSettings) string {
	var b strings.Builder
	if q.external {
		fmt.Fprintf(&b, "global:\n  external_labels:\n    %s: %s\n", externalLabel[0], externalLabel[1])
	}
	b.WriteString("upstreams:\n")
	for i, u := range sinks {
		msg := ""
		if q.upstreamV2 {
			msg = "    protobuf_message: io.prometheus.write.v2.Request\n"
		}
		if q.relabel {
			msg += "    write_relabel_configs:\n" + indent(relabelRules, 6)
		}
		if !q.tuned {
			fmt.Fprintf(&b, "  - name: sink%d\n    url: %s\n%s", i, u, msg)
			continue
		}
		if !q.upstreamV2 {
			msg = "    protobuf_message: prometheus.WriteRequest\n" + msg
		}
		fmt.Fprintf(&b, `  - name: sink%d
    url: %s
%s    queue_config:
      capacity: %d
      max_shards: %d
      max_samples_per_send: %d
      batch_send_deadline: 1s
`, i, u, msg, q.capacity, q.shards, q.batch)
	}
	return b.String()
}

// prometheusConfig returns a Prometheus configuration that scrapes nothing
// and remote-writes to every sink: only the URLs at defaults.
func prometheusConfig(sinks []string, q queueSettings) string {
	var b strings.Builder
	rules := ""
	if q.relabel {
		rules = "    write_relabel_configs:\n" + indent(relabelRules, 6)
	}
	global := ""
	if q.external {
		global = fmt.Sprintf("  external_labels:\n    %s: %s\n", externalLabel[0], externalLabel[1])
	}
	if !q.tuned {
		if global != "" {
			b.WriteString("global:\n" + global)
		}
		b.WriteString("remote_write:\n")
		for _, u := range sinks {
			fmt.Fprintf(&b, "  - url: %s\n%s", u, rules)
		}
		return b.String()
	}
	b.WriteString("global:\n  scrape_interval: 1m\n" + global + "remote_write:\n")
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
%s`, i, u, q.capacity, q.shards, q.shards, q.batch, rules)
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

// goModuleVersion describes a binary built by `go install module@version`
// from its embedded build information, e.g. "vmagent v1.151.0 (go install
// github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent, go1.26.8)", or
// returns "" if it has none. Such a build has no version ldflags: vmagent
// -version prints an empty line.
func goModuleVersion(bin string) string {
	info, err := buildinfo.ReadFile(bin)
	if err != nil || info.Main.Version == "" {
		return ""
	}
	return fmt.Sprintf("%s %s (go install %s, %s)", filepath.Base(info.Path), info.Main.Version, info.Path, info.GoVersion)
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
