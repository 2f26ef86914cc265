// Command compare runs the gateway, the newest vmagent, vmagent 1.79.5 and
// Prometheus 2.42 (as a receive-and-forward relay) in turn under the same
// remote-write load and compares what each accepts and delivers, and at
// what cost: CPU seconds per million samples, peak RSS and request
// latency. Run it with `make bench-compare`; docs/BENCHMARKS.md describes
// the method.
//
// By default every system runs at its own defaults (-settings defaults);
// -settings tuned gives the gateway, vmagent 1.79.5 and Prometheus the same
// shards, capacity and batch size. Every system forwards to the same
// in-process counting sink. Rounds are interleaved (gateway,
// vmagent-newest, vmagent, Prometheus, gateway, ...) so that the shared
// machine's background load spreads over all of them. With -baseline a
// second gateway build runs as gateway-baseline, right after gateway in
// every round, and each scenario reports the change from it to gateway.
// Every process is started fresh for each run on 127.0.0.1 and stopped by
// PID afterwards, on Ctrl-C too. With -profile it also writes one CPU
// profile of the gateway, merged from every load window: how `make pgo`
// makes cmd/gateway/default.pgo.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rwgateway/gateway/cmd/rwload/loadgen"
)

// Scenario keys, for -scenarios.
const (
	scClosedLoop   = "closed"
	scOneUpstream  = "1up"
	scTwoUpstreams = "2up"
	scLargeSeries  = "1m"
	scV2Input      = "v2"
	scV2Upstream   = "v2up"
	scSlowUpstream = "slow"
	scRelabel      = "relabel"
	scExternal     = "external"
	scBoth         = "relabel-external"
)

// allScenarios are the scenarios in their default order.
var allScenarios = []string{scClosedLoop, scOneUpstream, scTwoUpstreams, scLargeSeries, scV2Input, scV2Upstream, scSlowUpstream, scRelabel, scExternal, scBoth}

// defaultVMAgentNewest is where `make vmagent-newest` links the newest
// vmagent it built (.cache/bin/vmagent-<version>/vmagent).
const defaultVMAgentNewest = ".cache/bin/vmagent-newest"

// perRunOverhead is the time a run takes beyond its load and drain
// (starting, stopping): used to skip runs that would overrun -budget.
const perRunOverhead = 15 * time.Second

// drainStall ends the drain early when the sink has received nothing new
// for this long.
const drainStall = 3 * time.Second

type options struct {
	rate            float64
	rounds          int
	duration        time.Duration
	drain           time.Duration
	series          int
	closedSeries    int
	v2Families      int
	largeSeries     int
	largeRounds     int
	largeDuration   time.Duration
	upstreamLatency time.Duration
	concurrency     int
	perRequest      int
	scenarios       string
	systems         string
	settings        string
	budget          time.Duration
	out             string
	jsonOut         string
	profile         string
	keep            bool
	q               queueSettings
	bins            binaries
}

type scenario struct {
	key       string
	title     string
	upstreams int
	series    int
	families  int // metric families of the series (loadgen.SeriesLabels)
	protocol  loadgen.Protocol
	// rate is the offered load in samples/s; 0 is a closed loop: every
	// connection sends its next request as soon as the last is answered.
	rate float64
	// sinkDelay is how long the sink takes to answer each forwarded
	// request.
	sinkDelay time.Duration
	rounds    int
	duration  time.Duration
	systems   []string
	// probe drops a system from later rounds when its first run delivered
	// (almost) nothing: a peer that does not speak the protocol.
	probe bool
	// upstreamV2 configures the gateway fed protocol (not gateway-rw1) to
	// send remote write 2.0, which the sink takes.
	upstreamV2 bool
	// relabel gives every system's upstream relabelRules.
	relabel bool
	// external gives every system the external label externalLabel.
	external bool
	notes    []string
}

// measurement is one run of one system.
type measurement struct {
	Scenario string `json:"scenario"`
	Round    int    `json:"round"`
	System   string `json:"system"`
	Settings string `json:"settings"`
	Protocol string `json:"protocol"`

	OfferedRate     float64          `json:"offered_samples_per_second"` // 0: closed loop
	UpstreamDelay   float64          `json:"upstream_delay_seconds"`
	LoadSeconds     float64          `json:"load_seconds"`
	DrainSeconds    float64          `json:"drain_seconds"`
	Accepted        int64            `json:"accepted_samples"`
	Sent            int64            `json:"sent_samples"`
	Status          map[string]int64 `json:"status"`
	Errors          int64            `json:"errors"`
	LastError       string           `json:"last_error,omitempty"`
	Upstreams       int              `json:"upstreams"`
	Delivered       []int64          `json:"delivered_samples"` // per upstream
	Stray           int64            `json:"stray_samples"`
	CPULoadSeconds  float64          `json:"cpu_seconds_load"`  // load window only
	CPUSeconds      float64          `json:"cpu_seconds_total"` // load window and drain
	PeakRSSBytes    int64            `json:"peak_rss_bytes"`
	P50, P99        float64          `json:"-"`
	LatencySeconds  loadgen.Latency  `json:"latency_seconds"`
	Killed          bool             `json:"killed_at_stop"`
	Err             string           `json:"error,omitempty"`
	EncoderWait     float64          `json:"generator_wait_seconds"`
	GeneratorEncode float64          `json:"generator_encode_seconds"`
}

func (m *measurement) acceptedRate() float64 { return rate(m.Accepted, m.LoadSeconds) }

// deliveredPerUpstream is the smallest count of any upstream: the one that
// lost the most.
func (m *measurement) deliveredPerUpstream() int64 {
	if len(m.Delivered) == 0 {
		return 0
	}
	return slices.Min(m.Delivered)
}

func (m *measurement) deliveredRate() float64 { return rate(m.deliveredPerUpstream(), m.LoadSeconds) }

// cpuPerMillion is CPU seconds (load and drain) per million accepted samples.
func (m *measurement) cpuPerMillion() float64 {
	if m.Accepted == 0 {
		return 0
	}
	return m.CPUSeconds / (float64(m.Accepted) / 1e6)
}

func rate(n int64, sec float64) float64 {
	if sec <= 0 {
		return 0
	}
	return float64(n) / sec
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func parseFlags(args []string) (*options, error) {
	var o options
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.Float64Var(&o.rate, "rate", 200_000, "Offered load in samples per second of the paced scenarios (all but closed), the same for every system.")
	fs.IntVar(&o.rounds, "rounds", 3, "Rounds of every scenario but 1m (each runs every system once).")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "Load window of one run.")
	fs.DurationVar(&o.drain, "drain", 8*time.Second, "Longest wait after the load for the sink to receive everything accepted.")
	fs.IntVar(&o.series, "series", 10_000, "Distinct series of the 1up, 2up, v2 and slow scenarios.")
	fs.IntVar(&o.closedSeries, "closed-series", 100_000, "Distinct series of the closed scenario.")
	fs.IntVar(&o.v2Families, "v2-families", 200, "Metric families the series of the v2 and v2up scenarios are spread over (the others have one): enough for a 2.0 request of over 128 symbols, whose label references mostly take two bytes, as in a Prometheus request of a node_exporter.")
	fs.IntVar(&o.largeSeries, "large-series", 1_000_000, "Distinct series of the 1m scenario.")
	fs.IntVar(&o.largeRounds, "large-rounds", 1, "Rounds of the 1m scenario.")
	fs.DurationVar(&o.largeDuration, "large-duration", 20*time.Second, "Load window of the 1m scenario.")
	fs.DurationVar(&o.upstreamLatency, "upstream-latency", 20*time.Millisecond, "How long the sink takes to answer each forwarded request in the slow scenario.")
	fs.IntVar(&o.concurrency, "concurrency", 4, "Connections of the load generator.")
	fs.IntVar(&o.perRequest, "samples-per-request", 2000, "Samples per generated request.")
	fs.StringVar(&o.settings, "settings", settingsDefaults, "Forwarding settings: "+settingsDefaults+" (every system at its own defaults: only listen address, upstream URL and data path set) or "+settingsTuned+" (-shards, -capacity and -batch for the gateway, vmagent and Prometheus; vmagent-newest stays at its defaults).")
	fs.IntVar(&o.q.shards, "shards", 4, "With -settings tuned: forwarding shards/queues per upstream of the gateway, vmagent and Prometheus.")
	fs.IntVar(&o.q.capacity, "capacity", 50_000, "With -settings tuned: queue_config.capacity (samples per shard) of the gateway and Prometheus.")
	fs.IntVar(&o.q.batch, "batch", 2000, "With -settings tuned: samples per forwarded request of the gateway, vmagent and Prometheus.")
	fs.StringVar(&o.scenarios, "scenarios", strings.Join(allScenarios, ","), "Scenarios to run, comma-separated: "+strings.Join(allScenarios, ", ")+".")
	fs.StringVar(&o.systems, "systems", strings.Join([]string{sysGateway, sysVMAgentNewest, sysVMAgent, sysPrometheus}, ","), "Systems to run, comma-separated, in the order of every round.")
	fs.DurationVar(&o.budget, "budget", 35*time.Minute, "Runs that would end after this much time are skipped (and reported so).")
	fs.StringVar(&o.out, "out", "docs/BENCHMARKS.md", "Markdown file whose results section is replaced; empty for none.")
	fs.StringVar(&o.jsonOut, "json", "", "Also write every measurement as JSON to this file.")
	fs.StringVar(&o.profile, "profile", "", "Also fetch a CPU profile (/debug/pprof/profile) of the system "+sysGateway+" during the load window of each of its runs, merge them and write them to this file (gzipped pprof protobuf, as `go build -pgo` reads it; `make pgo`). Profiling costs the gateway some CPU: its figures of such a run are not for comparison. Empty for none.")
	fs.BoolVar(&o.keep, "keep", false, "Keep the temporary directory with the processes' logs and data.")
	fs.StringVar(&o.bins.gateway, "gateway", envOr("GATEWAY_BIN", "bin/gateway"), "Gateway binary ($GATEWAY_BIN).")
	fs.StringVar(&o.bins.baseline, "baseline", "", "A second gateway binary (e.g. built from an earlier commit) to compare with -gateway: adds the system "+sysBaseline+", run like gateway, and a before/after ratio of the two. Empty for none.")
	fs.StringVar(&o.bins.prometheus, "prometheus", os.Getenv("PROMETHEUS_BIN"), "Prometheus 2.42 binary ($PROMETHEUS_BIN, else .cache/peers/env).")
	fs.StringVar(&o.bins.vmagent, "vmagent", os.Getenv("VMAGENT_BIN"), "vmagent 1.79.5 binary ($VMAGENT_BIN, else .cache/peers/env).")
	fs.StringVar(&o.bins.vmagentNewest, "vmagent-newest", envOr("VMAGENT_NEWEST_BIN", defaultVMAgentNewest), "Newest vmagent binary ($VMAGENT_NEWEST_BIN; make vmagent-newest builds it).")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	tunedOnly := []string{}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "shards" || f.Name == "capacity" || f.Name == "batch" {
			tunedOnly = append(tunedOnly, "-"+f.Name)
		}
	})
	env := peersEnv(".")
	if o.bins.prometheus == "" {
		o.bins.prometheus = env["PROMETHEUS_BIN"]
	}
	if o.bins.vmagent == "" {
		o.bins.vmagent = env["VMAGENT_BIN"]
	}
	switch {
	case o.settings != settingsDefaults && o.settings != settingsTuned:
		return nil, fmt.Errorf("-settings: %q, want %s or %s", o.settings, settingsDefaults, settingsTuned)
	case o.settings == settingsDefaults && len(tunedOnly) > 0:
		return nil, fmt.Errorf("%s: only with -settings %s (at %s every system keeps its own)", strings.Join(tunedOnly, ", "), settingsTuned, settingsDefaults)
	case o.rate <= 0:
		return nil, errors.New("-rate: must be positive: CPU per sample is compared at one offered load (the closed scenario is the closed loop)")
	case o.series < 1 || o.closedSeries < 1 || o.largeSeries < 1 || o.v2Families < 1:
		return nil, errors.New("-series, -closed-series, -large-series and -v2-families must be positive")
	case o.upstreamLatency < 0:
		return nil, errors.New("-upstream-latency must not be negative")
	case o.rounds < 1 || o.largeRounds < 0:
		return nil, errors.New("-rounds must be at least 1 and -large-rounds not negative")
	case o.duration <= 0 || o.largeDuration <= 0 || o.drain <= 0:
		return nil, errors.New("-duration, -large-duration and -drain must be positive")
	case o.q.shards < 1 || o.q.capacity < 1 || o.q.batch < 1:
		return nil, errors.New("-shards, -capacity and -batch must be positive")
	}
	o.q.tuned = o.settings == settingsTuned
	systems := splitList(o.systems)
	switch {
	case o.bins.baseline != "" && !slices.Contains(systems, sysBaseline):
		// Right after gateway, so that the two builds run back to back
		// in every round under the most similar background load.
		systems = slices.Insert(systems, slices.Index(systems, sysGateway)+1, sysBaseline)
	case o.bins.baseline == "" && slices.Contains(systems, sysBaseline):
		return nil, fmt.Errorf("-systems: %s needs -baseline", sysBaseline)
	}
	o.systems = strings.Join(systems, ",")
	if o.profile != "" && !slices.Contains(systems, sysGateway) {
		return nil, fmt.Errorf("-profile: profiles the system %s, which -systems leaves out", sysGateway)
	}
	for _, s := range systems {
		if !slices.Contains(knownSystems, s) {
			return nil, fmt.Errorf("-systems: unknown system %q (want some of %s)", s, strings.Join(knownSystems, ", "))
		}
		bin := o.bins.of(s)
		if fi, err := os.Stat(bin); bin == "" || err != nil || fi.IsDir() {
			how := "make build; scripts/peers.sh"
			if s == sysVMAgentNewest {
				how = "make vmagent-newest, or -systems without it"
			}
			return nil, fmt.Errorf("%s binary %q not found (%s)", s, bin, how)
		}
	}
	// Every process runs in its own directory, where a relative path would
	// name nothing.
	for _, p := range []*string{&o.bins.gateway, &o.bins.baseline, &o.bins.vmagent, &o.bins.vmagentNewest, &o.bins.prometheus} {
		if *p != "" {
			if abs, err := filepath.Abs(*p); err == nil {
				*p = abs
			}
		}
	}
	for _, s := range splitList(o.scenarios) {
		if !slices.Contains(allScenarios, s) {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (want some of %s)", s, strings.Join(allScenarios, ", "))
		}
	}
	return &o, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (o *options) scenarioList() []scenario {
	systems := splitList(o.systems)
	var out []scenario
	for _, key := range splitList(o.scenarios) {
		sc := scenario{key: key, upstreams: 1, series: o.series, families: 1, rate: o.rate, rounds: o.rounds, duration: o.duration, systems: systems}
		switch key {
		case scClosedLoop:
			sc.rate, sc.series = 0, o.closedSeries
			sc.title = fmt.Sprintf("closed loop (as fast as each system answers), 1 upstream, %s series, remote write 1.0", count(o.closedSeries))
			sc.notes = append(sc.notes, fmt.Sprintf("Not paced: each of the %d connections sends its next request of %d samples as soon as the last is answered, so *accepted samples/s* is the throughput each system sustains on this machine, with the load generator and the sink on the same cores. A system that accepts faster than it forwards ends the drain with samples still queued: they are listed as missing, and their forwarding is not in its CPU figure.",
				o.concurrency, o.perRequest))
		case scRelabel:
			sc.rate, sc.series, sc.relabel = 0, o.closedSeries, true
			sc.title = fmt.Sprintf("closed loop, write relabeling, 1 upstream, %s series, remote write 1.0", count(o.closedSeries))
			sc.notes = append(sc.notes, "As the closed loop, with two rules for the upstream, the most common kinds: drop the series of `mode=\"guest\"` (none here, so that delivered = accepted still holds; the rule is still evaluated on every series) and `labeldrop` of `rack` (2 series in 3 have it, so most requests are changed and encoded anew). Gateway and Prometheus: `write_relabel_configs`; vmagent: `-remoteWrite.urlRelabelConfig`.")
		case scExternal:
			sc.rate, sc.series, sc.external = 0, o.closedSeries, true
			sc.title = fmt.Sprintf("closed loop, an external label, 1 upstream, %s series, remote write 1.0", count(o.closedSeries))
			sc.notes = append(sc.notes, fmt.Sprintf("As the closed loop, with the label `%s=\"%s\"`, which no series has, added to every series before it is sent, as an HA pair's replica label is. Gateway and Prometheus: `global.external_labels`; vmagent: `-remoteWrite.label`.", externalLabel[0], externalLabel[1]))
		case scBoth:
			sc.rate, sc.series, sc.relabel, sc.external = 0, o.closedSeries, true, true
			sc.title = fmt.Sprintf("closed loop, an external label and write relabeling, 1 upstream, %s series, remote write 1.0", count(o.closedSeries))
			sc.notes = append(sc.notes, fmt.Sprintf("As the closed loop, with both the label `%s=\"%s\"` of the external scenario and the two rules of the relabel scenario, as an HA pair that relabels sets them up: the label is added first, then the rules run, as Prometheus does.", externalLabel[0], externalLabel[1]))
		case scOneUpstream:
			sc.title = fmt.Sprintf("paced at %s samples/s, 1 upstream, %s series, remote write 1.0", si(o.rate), count(o.series))
		case scTwoUpstreams:
			sc.upstreams = 2
			sc.title = fmt.Sprintf("2 upstreams (fan-out), %s series, remote write 1.0", count(o.series))
			sc.notes = append(sc.notes, "Each system forwards every sample to two sink URLs (gateway: two upstreams; vmagent: two -remoteWrite.url; Prometheus: two remote_write blocks). Delivered is the smaller of the two upstreams' counts; CPU is per million *accepted* samples, so it includes both copies.")
			if i := slices.Index(sc.systems, sysGateway); i >= 0 {
				sc.systems = slices.Insert(slices.Clone(sc.systems), i+1, sysGatewayOneUp)
				sc.notes = append(sc.notes, fmt.Sprintf("%s is the same gateway, started the same way, with the first upstream only, right after %s in every round: the reference for what the second upstream adds.", sysGatewayOneUp, sysGateway))
			}
		case scLargeSeries:
			sc.series, sc.rounds, sc.duration = o.largeSeries, o.largeRounds, o.largeDuration
			sc.title = fmt.Sprintf("1 upstream, %s series, remote write 1.0", count(o.largeSeries))
			sc.notes = append(sc.notes, fmt.Sprintf("%d round(s) of %v to fit the time budget. At %s samples/s one round of %s series takes %.1fs, so the window holds only a few samples per series: this scenario measures the cost of many new series (memory), not steady state.",
				o.largeRounds, o.largeDuration, count(int(o.rate)), count(o.largeSeries), float64(o.largeSeries)/o.rate))
		case scV2Input, scV2Upstream:
			sc.protocol = loadgen.ProtoV2
			sc.probe = true
			sc.families = o.v2Families
			sc.title = fmt.Sprintf("remote write 2.0 input, 1 upstream (sent as 1.0), %s series", count(o.series))
			if key == scV2Upstream {
				sc.upstreamV2 = true
				sc.systems = slices.DeleteFunc(slices.Clone(systems), func(s string) bool { return !isGateway(s) })
				sc.title = fmt.Sprintf("remote write 2.0 end to end: 2.0 input, 1 upstream taking 2.0, %s series", count(o.series))
				sc.notes = append(sc.notes, "The gateway's upstream is configured with `protobuf_message: io.prometheus.write.v2.Request`; the sink decodes 2.0 and answers with the Written headers. The reference gateway-rw1 runs 1.0 end to end: 1.0 input, 1.0 upstream. Peers are left out: none takes 2.0 (see the v2 scenario).")
			}
			if i := slices.Index(sc.systems, sysGateway); i >= 0 {
				sc.systems = slices.Insert(slices.Clone(sc.systems), i+1, sysGatewayV1)
				sc.notes = append(sc.notes, fmt.Sprintf("%s is the same gateway, started the same way, fed the same series as remote write 1.0 right after %s in every round: the reference for the gateway's cost of 2.0 input.", sysGatewayV1, sysGateway))
			}
			sc.notes = append(sc.notes, fmt.Sprintf("The series are spread over %d metric families, for 2.0 and 1.0 input alike, as in a Prometheus request of a node_exporter's series: a 2.0 request's symbol table holds hundreds of names, values and help texts, and most label references take two bytes (with one family they stay under 128 symbols and take one).", o.v2Families))
			sc.notes = append(sc.notes, "No peer is known to take remote write 2.0: vmagent 1.79.5 and Prometheus 2.42 predate it, and the newest vmagent decodes Prometheus's 1.0 and its own protocol. Each peer runs once as a probe: if it answers 2xx to nothing, or delivers (almost) nothing of what it answered 2xx to, it is dropped from later rounds and has no ratio.")
		case scSlowUpstream:
			sc.sinkDelay = o.upstreamLatency
			sc.title = fmt.Sprintf("1 upstream answering after %v, paced at %s samples/s, %s series, remote write 1.0", o.upstreamLatency, si(o.rate), count(o.series))
			sc.notes = append(sc.notes, fmt.Sprintf("The sink answers each forwarded request %v after reading it, as a distant or loaded upstream does: a system keeps up only if its requests in flight carry enough samples (shards × samples per request ÷ %v at least the offered %s samples/s).", o.upstreamLatency, o.upstreamLatency, si(o.rate)))
		}
		out = append(out, sc)
	}
	return out
}

// count formats n as 10k or 1M.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

type bench struct {
	o        *options
	procs    procs
	sink     *sink
	tmp      string
	deadline time.Time
	runID    int
	stdout   io.Writer
	profiles profiles // -profile
}

func run(args []string) int {
	o, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "compare: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	started := time.Now()
	b := &bench{o: o, deadline: started.Add(o.budget), stdout: os.Stdout}
	if b.tmp, err = os.MkdirTemp("", "bench-compare-"); err != nil {
		fmt.Fprintf(os.Stderr, "compare: %v\n", err)
		return 1
	}
	defer func() {
		if o.keep {
			fmt.Fprintf(os.Stderr, "compare: logs and data kept in %s\n", b.tmp)
			return
		}
		os.RemoveAll(b.tmp)
	}()
	if b.sink, err = startSink(); err != nil {
		fmt.Fprintf(os.Stderr, "compare: sink: %v\n", err)
		return 1
	}
	defer b.sink.close()
	// Whatever happens below, nothing started stays running.
	defer b.procs.stopAll()

	host := hostInfo()
	fmt.Fprintf(os.Stderr, "compare: %s; temp dir %s\n", host.String(), b.tmp)

	var results []scenarioResult
	for _, sc := range o.scenarioList() {
		r, err := b.runScenario(ctx, sc)
		results = append(results, r)
		if err != nil {
			fmt.Fprintf(os.Stderr, "compare: %v\n", err)
			return 130
		}
		writeScenario(b.stdout, r)
	}
	host.loadEnd = loadAvg()
	host.elapsed = time.Since(started)
	rep := report{host: host, o: o, versions: b.versions(), results: results}
	if o.out != "" {
		if err := rep.writeMarkdown(o.out); err != nil {
			fmt.Fprintf(os.Stderr, "compare: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "compare: results written to %s\n", o.out)
	}
	if o.profile != "" {
		n, err := b.profiles.write(o.profile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "compare: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "compare: CPU profiles of %d runs of %s merged into %s\n", n, sysGateway, o.profile)
	}
	if o.jsonOut != "" {
		var all []measurement
		for _, r := range results {
			all = append(all, r.runs...)
		}
		data, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(o.jsonOut, data, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "compare: %v\n", err)
			return 1
		}
	}
	fmt.Fprintf(os.Stderr, "compare: done in %v\n", host.elapsed.Round(time.Second))
	return 0
}

// scenarioResult is every run of one scenario.
type scenarioResult struct {
	sc      scenario
	runs    []measurement
	skipped []string // runs left out, and why
}

// protocolOf returns the protocol system sys is fed in scenario sc.
func protocolOf(sc scenario, sys string) loadgen.Protocol {
	if sys == sysGatewayV1 {
		return loadgen.ProtoV1
	}
	return sc.protocol
}

// upstreamsOf returns how many upstreams system sys forwards to in
// scenario sc.
func upstreamsOf(sc scenario, sys string) int {
	if sys == sysGatewayOneUp {
		return 1
	}
	return sc.upstreams
}

func (b *bench) runScenario(ctx context.Context, sc scenario) (scenarioResult, error) {
	res := scenarioResult{sc: sc}
	fmt.Fprintf(os.Stderr, "compare: scenario %s: %s; encoding payloads\n", sc.key, sc.title)
	payloads := map[loadgen.Protocol]*loadgen.Payloads{}
	for _, sys := range sc.systems {
		proto := protocolOf(sc, sys)
		if payloads[proto] != nil {
			continue
		}
		p, err := loadgen.NewPayloads(proto, sc.series, b.o.perRequest, sc.families)
		if err != nil {
			return res, err
		}
		payloads[proto] = p
	}
	defer debug.FreeOSMemory()
	dropped := map[string]string{}
	for round := 1; round <= sc.rounds; round++ {
		for _, sys := range sc.systems {
			if why, ok := dropped[sys]; ok {
				if round == 2 {
					res.skipped = append(res.skipped, fmt.Sprintf("%s: rounds 2-%d skipped: %s", sys, sc.rounds, why))
				}
				continue
			}
			if need := sc.duration + b.o.drain + perRunOverhead; time.Until(b.deadline) < need {
				res.skipped = append(res.skipped, fmt.Sprintf("round %d %s: skipped, the -budget of %v would be exceeded", round, sys, b.o.budget))
				continue
			}
			m := b.runOne(ctx, sc, round, sys, payloads[protocolOf(sc, sys)])
			if ctx.Err() != nil {
				return res, fmt.Errorf("interrupted during %s round %d %s; every process started was stopped", sc.key, round, sys)
			}
			fmt.Fprintf(os.Stderr, "compare: %s round %d %-16s %s\n", sc.key, round, sys, m.summary())
			res.runs = append(res.runs, m)
			if sc.probe && !isGateway(sys) && round == 1 {
				if why := m.probeFailure(); why != "" {
					dropped[sys] = why
				}
			}
		}
	}
	return res, nil
}

// probeFailure says why a peer's probe run m shows that it does not take
// the scenario's protocol: it answered 2xx to nothing, or forwarded
// (almost) nothing of what it answered 2xx to. "" if it does, or if the
// run failed for another reason.
func (m *measurement) probeFailure() string {
	switch {
	case m.Err != "":
		return ""
	case m.Accepted == 0:
		return fmt.Sprintf("it answered 2xx to none of %d samples (responses %s; last: %s)", m.Sent, m.responses(), firstLine(m.LastError))
	case m.deliveredPerUpstream() < m.Accepted/100:
		return fmt.Sprintf("it answered 2xx to %d samples (statuses %v) but delivered %d", m.Accepted, m.Status, m.deliveredPerUpstream())
	}
	return ""
}

func (m *measurement) summary() string {
	if m.Err != "" {
		return "FAILED: " + m.Err
	}
	return fmt.Sprintf("accepted %8s/s delivered %8s/s  %.3f CPU-s/M  RSS %6.1f MiB  p99 %6.1fms  %v",
		si(m.acceptedRate()), si(m.deliveredRate()), m.cpuPerMillion(), mib(m.PeakRSSBytes), m.P99*1e3, m.Status)
}

// runOne starts sys, loads it, drains it and stops it.
func (b *bench) runOne(ctx context.Context, sc scenario, round int, sys string, payloads *loadgen.Payloads) (m measurement) {
	b.runID++
	m = measurement{Scenario: sc.key, Round: round, System: sys, Settings: b.o.settings, Protocol: protocolOf(sc, sys).String(),
		OfferedRate: sc.rate, UpstreamDelay: sc.sinkDelay.Seconds(), Upstreams: upstreamsOf(sc, sys)}
	dir := filepath.Join(b.tmp, fmt.Sprintf("%02d-%s-r%d-%s", b.runID, sc.key, round, sys))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		m.Err = err.Error()
		return m
	}
	var urls, paths []string
	var counters []*counter
	for i := range m.Upstreams {
		path := fmt.Sprintf("/run%d/upstream%d", b.runID, i)
		u, c := b.sink.register(path, sc.sinkDelay)
		urls, paths, counters = append(urls, u), append(paths, path), append(counters, c)
	}
	defer func() {
		for _, p := range paths {
			b.sink.unregister(p)
		}
	}()
	strayBefore := b.sink.stray.samples.Load()

	q := b.o.q
	q.upstreamV2 = sc.upstreamV2 && sys != sysGatewayV1
	q.relabel, q.external = sc.relabel, sc.external
	spec, err := b.o.bins.spec(sys, dir, urls, q)
	if err != nil {
		m.Err = err.Error()
		return m
	}
	runtime.GC()
	p, err := b.procs.start(ctx, spec)
	if err != nil {
		m.Err = err.Error()
		return m
	}
	defer func() { m.Killed = b.procs.stop(p) }()

	cpu0, err := cpuSeconds(p.pid())
	if err != nil {
		m.Err = err.Error()
		return m
	}
	var awaitProfile func()
	if b.o.profile != "" && sys == sysGateway {
		awaitProfile = b.profiles.start(ctx, p.url(""), sc.duration, fmt.Sprintf("%s round %d %s", sc.key, round, sys))
	}
	res, err := loadgen.Run(ctx, loadgen.Config{
		URL:               p.url("/api/v1/write"),
		Protocol:          protocolOf(sc, sys),
		Series:            sc.series,
		Families:          sc.families,
		SamplesPerRequest: b.o.perRequest,
		Concurrency:       b.o.concurrency,
		Rate:              sc.rate,
		Duration:          sc.duration,
		UserAgent:         "rwload-bench",
	}, payloads)
	cpuLoad, _ := cpuSeconds(p.pid())
	if awaitProfile != nil {
		// The profile ends with the load window (profileSeconds).
		awaitProfile()
	}
	if err != nil {
		m.Err = "load: " + err.Error()
		return m
	}
	m.LoadSeconds = res.ElapsedSeconds
	m.Accepted, m.Sent = res.AcceptedSamples, res.Samples
	m.Status, m.Errors, m.LastError = res.Status, res.Errors, res.LastError
	m.LatencySeconds, m.P50, m.P99 = res.Latency, res.Latency.P50, res.Latency.P99
	m.EncoderWait, m.GeneratorEncode = res.EncoderWaitSeconds, res.EncodeSeconds

	// Drain: until every upstream has everything accepted, nothing new
	// arrived for drainStall, or -drain passed.
	drainStart := time.Now()
	want := m.Accepted
	last, lastChange := int64(-1), drainStart
	for {
		low, total := int64(-1), int64(0)
		for _, c := range counters {
			n := c.samples.Load()
			total += n
			if low < 0 || n < low {
				low = n
			}
		}
		now := time.Now()
		if total != last {
			last, lastChange = total, now
		}
		if low >= want || now.Sub(drainStart) >= b.o.drain || now.Sub(lastChange) >= drainStall || ctx.Err() != nil || !p.alive() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.DrainSeconds = time.Since(drainStart).Seconds()
	cpu1, err1 := cpuSeconds(p.pid())
	hwm, err2 := peakRSS(p.pid())
	if !p.alive() {
		m.Err = fmt.Sprintf("%s exited during the run: %v; log %s:\n%s", sys, p.waitErr, p.logPath, tail(p.logPath, 10))
	} else if err := errors.Join(err1, err2); err != nil {
		m.Err = err.Error()
	}
	m.CPULoadSeconds, m.CPUSeconds, m.PeakRSSBytes = cpuLoad-cpu0, cpu1-cpu0, hwm
	for _, c := range counters {
		m.Delivered = append(m.Delivered, c.samples.Load())
	}
	m.Stray = b.sink.stray.samples.Load() - strayBefore
	return m
}

func (b *bench) versions() map[string]string {
	v := map[string]string{}
	for _, sys := range splitList(b.o.systems) {
		switch sys {
		case sysGateway:
			v[sys] = versionOf(b.o.bins.gateway, "--version")
		case sysBaseline:
			// The path too: a binary built without the Makefile's
			// -ldflags has no revision in its version.
			v[sys] = strings.TrimSpace(versionOf(b.o.bins.baseline, "--version") + " (" + relPath(b.o.bins.baseline) + ")")
		case sysPrometheus:
			v[sys] = versionOf(b.o.bins.prometheus, "--version")
		case sysVMAgent:
			if dv := debianVersion(".", "victoria-metrics"); dv != "" {
				v[sys] = "vmagent (Debian victoria-metrics " + dv + ")"
			} else {
				v[sys] = b.o.bins.vmagent
			}
		case sysVMAgentNewest:
			if gv := goModuleVersion(b.o.bins.vmagentNewest); gv != "" {
				v[sys] = gv
			} else {
				v[sys] = b.o.bins.vmagentNewest
			}
		}
	}
	return v
}

// relPath returns path relative to the working directory if it is under
// it, else path.
func relPath(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(wd, path); err == nil && filepath.IsLocal(rel) {
		return rel
	}
	return path
}
