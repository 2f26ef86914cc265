// Command rwload sends realistic Prometheus remote write to a URL and
// reports what was accepted and how fast: requests, samples, responses by
// status code and latency quantiles, with a progress line on stderr every
// few seconds and a summary (or -json) on stdout at the end.
//
//	rwload -url http://127.0.0.1:9201/api/v1/write -series 100000 -rate 200000 -duration 30s
//
// Series are node_exporter-like (8 to 12 labels, deterministic); each round
// sends every series once with a fresh timestamp, so a TSDB behind the
// target stores every round. Targets other than loopback addresses are
// refused unless -allow-remote is given.
//
// This file holds flags only; the load itself is package loadgen.
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
	"syscall"

	"github.com/rwgateway/gateway/cmd/rwload/loadgen"
)

const program = "rwload"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed command line.
type options struct {
	cfg      loadgen.Config
	jsonOut  bool
	protocol string
}

// parseFlags parses args into a validated load configuration. Usage and
// errors go to stderr.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	var o options
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags]\n\nSends Prometheus remote write to a URL and reports what was accepted.\n\nFlags (-flag and --flag are the same):\n", program)
		fs.PrintDefaults()
	}
	c := &o.cfg
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:9201/api/v1/write", "Remote-write `URL` to send to.")
	fs.IntVar(&c.Series, "series", loadgen.DefaultSeries, "Distinct series; every round sends each once.")
	fs.IntVar(&c.Families, "families", loadgen.DefaultFamilies, "Metric families the series are spread over: series i is of family i%families. 1 keeps a 2.0 request under 128 symbols; a Prometheus request of a node_exporter has hundreds.")
	fs.IntVar(&c.SamplesPerRequest, "samples-per-request", loadgen.DefaultSamplesPerRequest, "Samples (one per series) per request; at most -series.")
	fs.StringVar(&o.protocol, "protocol", "1.0", "Remote-write protocol: 1.0 or 2.0.")
	fs.IntVar(&c.Concurrency, "concurrency", loadgen.DefaultConcurrency, "Concurrent senders, each with its own keep-alive connection.")
	fs.Float64Var(&c.Rate, "rate", 0, "Offered load in samples per second; 0 sends as fast as the target accepts.")
	fs.DurationVar(&c.Duration, "duration", loadgen.DefaultDuration, "Length of the load; 0 to be bounded by -requests only.")
	fs.Int64Var(&c.Requests, "requests", 0, "Stop after this many requests; 0 for no limit.")
	fs.StringVar(&c.Timestamps, "timestamps", loadgen.TimestampsAdvance, "advance: re-encode each request with the current time (every sample new to a TSDB); repeat: encode once and resend the same bytes (no encoding cost; TSDBs reject repeats).")
	fs.DurationVar(&c.Timeout, "timeout", loadgen.DefaultTimeout, "Timeout of one request.")
	fs.DurationVar(&c.ProgressInterval, "progress-interval", loadgen.DefaultProgressInterval, "Interval of the progress lines on stderr.")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "Allow a target that is not a loopback address.")
	fs.BoolVar(&o.jsonOut, "json", false, "Print the summary as JSON.")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	p, err := loadgen.ParseProtocol(o.protocol)
	if err != nil {
		return nil, err
	}
	c.Protocol = p
	// Zero means "default" to Config; on the command line it is an error.
	for _, f := range []struct {
		name string
		v    int
	}{{"series", c.Series}, {"samples-per-request", c.SamplesPerRequest}, {"concurrency", c.Concurrency}} {
		if f.v <= 0 {
			return nil, fmt.Errorf("%s: must be positive, got %d", f.name, f.v)
		}
	}
	if c.Duration == 0 && c.Requests == 0 {
		return nil, errors.New("-duration 0 needs -requests: the load must be bounded")
	}
	if c.Timeout <= 0 {
		return nil, fmt.Errorf("timeout: must be positive, got %v", c.Timeout)
	}
	if c.ProgressInterval <= 0 {
		return nil, fmt.Errorf("progress-interval: must be positive, got %v", c.ProgressInterval)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := loadgen.CheckTarget(ctx, o.cfg.URL, o.cfg.AllowRemote, nil); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 2
	}
	fmt.Fprintf(stderr, "%s: encoding %d series in requests of %d samples (remote write %s)\n",
		program, o.cfg.Series, o.cfg.SamplesPerRequest, o.cfg.Protocol)
	payloads, err := loadgen.NewPayloads(o.cfg.Protocol, o.cfg.Series, o.cfg.SamplesPerRequest, o.cfg.Families)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 1
	}
	o.cfg.Progress = stderr
	o.cfg.UserAgent = program
	fmt.Fprintf(stderr, "%s: sending to %s\n", program, o.cfg.URL)
	res, err := loadgen.Run(ctx, o.cfg, payloads)
	if err != nil && res == nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 1
	}
	if o.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(res); werr != nil {
			fmt.Fprintf(stderr, "%s: %v\n", program, werr)
			return 1
		}
	} else if werr := res.WriteText(stdout); werr != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, werr)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", program, err)
		return 1
	}
	return 0
}
