// Command gateway receives Prometheus remote write and forwards it to the
// upstreams in its configuration file.
//
// This file holds flags only: it turns them into gateway.Options, and
// package gateway builds, runs, reloads and stops everything.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/forward"
	"github.com/rwgateway/gateway/pkg/gateway"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/registry"
	"github.com/rwgateway/gateway/pkg/web"
)

const program = "gateway"

func main() {
	os.Exit(run0(os.Args[1:]))
}

type flags struct {
	configFile        string
	listenAddress     string
	storagePath       string
	storageFsync      string
	fsyncInterval     time.Duration
	flushTimeout      time.Duration
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	webConfigFile     string
	externalURL       string
	routePrefix       string
	trustedProxies    string
	memlimit          bool
	memlimitRatio     float64
	log               promslog.Config
}

func run0(args []string) int {
	var f flags
	app := kingpin.New(program, "Receives Prometheus remote write once and forwards it to every configured upstream.")
	app.Version(version.Print(program))
	app.HelpFlag.Short('h')
	serve := app.Command("serve", "Run the gateway (the default command).").Default()
	serve.Flag("config.file", "Configuration file.").Default("gateway.yml").StringVar(&f.configFile)
	serve.Flag("web.listen-address", "Address to listen on for remote write, metrics and health.").Default(":9201").StringVar(&f.listenAddress)
	serve.Flag("storage.path", "Directory for the upstream queues' data (disk queues, locked while the gateway runs). Empty keeps every queue in memory.").Default("data/").StringVar(&f.storagePath)
	serve.Flag("storage.fsync", "When disk queues fsync: interval (every --storage.fsync-interval; a power loss can lose that much acknowledged data) or always (before each request is answered).").Default("interval").EnumVar(&f.storageFsync, "interval", "always")
	serve.Flag("storage.fsync-interval", "Period of --storage.fsync=interval.").Default("1s").DurationVar(&f.fsyncInterval)
	serve.Flag("shutdown.flush-timeout", "On SIGTERM, how long the whole shutdown may take: in-flight requests finish, then queued data is sent until this passes.").Default("25s").DurationVar(&f.flushTimeout)
	serve.Flag("web.read-header-timeout", "Maximum time to read a request's headers.").Default("10s").DurationVar(&f.readHeaderTimeout)
	serve.Flag("web.read-timeout", "Maximum time to read a whole request, body included.").Default("1m").DurationVar(&f.readTimeout)
	serve.Flag("web.write-timeout", "Maximum time to write a response, from the end of the request's headers.").Default("2m").DurationVar(&f.writeTimeout)
	serve.Flag("web.idle-timeout", "How long an idle keep-alive connection stays open.").Default("2m").DurationVar(&f.idleTimeout)
	serve.Flag("web.config.file", "Path to a web configuration file for TLS, mutual TLS and basic auth, in the format of Prometheus and its exporters.").Default("").StringVar(&f.webConfigFile)
	serve.Flag("web.external-url", "The URL under which the gateway is reachable, e.g. behind a reverse proxy. If it has a path, every endpoint is served under it. Default: http://<hostname>:<port>/ (https with TLS in --web.config.file).").PlaceHolder("<URL>").StringVar(&f.externalURL)
	serve.Flag("web.route-prefix", "Prefix for every endpoint (write paths, /metrics, /-/healthy, /-/ready, /-/reload). Defaults to the path of --web.external-url.").PlaceHolder("<path>").StringVar(&f.routePrefix)
	serve.Flag("auto-gomemlimit", "Set GOMEMLIMIT from the cgroup's memory limit (else the machine's memory), as Prometheus does, unless GOMEMLIMIT is set.").Default("true").BoolVar(&f.memlimit)
	serve.Flag("auto-gomemlimit.ratio", "Share of that memory to set GOMEMLIMIT to, in (0, 1].").Default("0.9").Float64Var(&f.memlimitRatio)
	serve.Flag("web.trusted-proxies", "Comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client address (logs, per-client limits). Other peers' X-Forwarded-For is ignored.").PlaceHolder("<cidr,...>").Default("").StringVar(&f.trustedProxies)
	f.log = promslog.Config{}
	promslogflag.AddFlags(app, &f.log)

	check := app.Command("check", "Check resources without running.")
	checkConfig := check.Command("config", "Validate configuration files; exit 1 on the first invalid one.")
	checkFiles := checkConfig.Arg("file", "Configuration files.").Required().ExistingFiles()

	cmd, err := app.Parse(args)
	if err != nil {
		// Not app.Usage(args): it parses args again and exits 1 on the error.
		fmt.Fprintf(os.Stderr, "%s: %v; see --help\n", program, err)
		return 2
	}
	switch cmd {
	case checkConfig.FullCommand():
		return checkConfigFiles(*checkFiles)
	}
	logger := promslog.New(&f.log)
	if err := serveGateway(logger, f); err != nil {
		logger.Error("gateway stopped", "err", err)
		return 1
	}
	return 0
}

func checkConfigFiles(files []string) int {
	for _, file := range files {
		cfg, err := config.LoadFile(file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAILED: %v\n", err)
			return 1
		}
		fmt.Printf("SUCCESS: %s is valid (%d upstreams)\n", file, len(cfg.Upstreams))
	}
	return 0
}

// serveGateway turns the flags into the gateway's options and runs it until it
// is told to stop.
func serveGateway(logger *slog.Logger, f flags) error {
	logger.Info("starting gateway", "version", version.Info(), "build_context", version.BuildContext())
	if f.memlimit {
		if f.memlimitRatio <= 0 || f.memlimitRatio > 1 {
			return fmt.Errorf("--auto-gomemlimit.ratio: %v is not in (0, 1]", f.memlimitRatio)
		}
		// The garbage collector works harder near the limit rather than
		// letting the container be killed for memory.
		if _, err := memlimit.Set(
			memlimit.WithRatio(f.memlimitRatio),
			memlimit.WithProvider(memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem)),
			memlimit.WithLogger(logger.With("component", "automemlimit")),
		); err != nil {
			logger.Warn("set GOMEMLIMIT from the memory limit; the Go default stays", "err", err)
		}
	}

	externalURL, err := web.ExternalURL(f.externalURL, f.listenAddress, f.webConfigFile)
	if err != nil {
		return err
	}
	trusted, err := web.ParseTrustedProxies(f.trustedProxies)
	if err != nil {
		return fmt.Errorf("--web.trusted-proxies: %w", err)
	}
	prefix, err := web.RoutePrefix(f.routePrefix, externalURL)
	if err != nil {
		return err
	}
	webOpts := web.Options{RoutePrefix: prefix, TrustedProxies: trusted}
	logger.Info("web routes", "external_url", externalURL.String(), "route_prefix", webOpts.RoutePrefix, "trusted_proxies", f.trustedProxies)

	if f.fsyncInterval <= 0 {
		return fmt.Errorf("--storage.fsync-interval: must be positive")
	}
	fwdOpts := forward.Options{
		StoragePath:  f.storagePath,
		Fsync:        queue.FsyncInterval,
		SyncInterval: f.fsyncInterval,
	}
	if f.storageFsync == "always" {
		fwdOpts.Fsync = queue.FsyncAlways
	}

	reg := registry.New()
	gw, err := gateway.New(logger, reg, reg, gateway.Options{
		ConfigFile:        f.configFile,
		ListenAddress:     f.listenAddress,
		WebConfigFile:     f.webConfigFile,
		Web:               webOpts,
		Forward:           fwdOpts,
		FlushTimeout:      f.flushTimeout,
		ReadHeaderTimeout: f.readHeaderTimeout,
		ReadTimeout:       f.readTimeout,
		WriteTimeout:      f.writeTimeout,
		IdleTimeout:       f.idleTimeout,
	})
	if err != nil {
		return err
	}
	return gw.Run(context.Background())
}
