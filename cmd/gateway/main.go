// Command gateway receives Prometheus remote write and forwards it to the
// upstreams in its configuration file.
//
// This file holds flags and construction only: every part is built once
// here, before the first request, and joined in a run group.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	toolkitweb "github.com/prometheus/exporter-toolkit/web"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/forward"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/receiver"
	"github.com/rwgateway/gateway/pkg/registry"
	"github.com/rwgateway/gateway/pkg/tenant"
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
	serve.Flag("shutdown.flush-timeout", "On SIGTERM, how long to keep sending queued data before giving up on it.").Default("25s").DurationVar(&f.flushTimeout)
	serve.Flag("web.read-header-timeout", "Maximum time to read a request's headers.").Default("10s").DurationVar(&f.readHeaderTimeout)
	serve.Flag("web.read-timeout", "Maximum time to read a whole request, body included.").Default("1m").DurationVar(&f.readTimeout)
	serve.Flag("web.write-timeout", "Maximum time to write a response, from the end of the request's headers.").Default("2m").DurationVar(&f.writeTimeout)
	serve.Flag("web.idle-timeout", "How long an idle keep-alive connection stays open.").Default("2m").DurationVar(&f.idleTimeout)
	serve.Flag("web.config.file", "Path to a web configuration file for TLS, mutual TLS and basic auth, in the format of Prometheus and its exporters.").Default("").StringVar(&f.webConfigFile)
	serve.Flag("web.external-url", "The URL under which the gateway is reachable, e.g. behind a reverse proxy. If it has a path, every endpoint is served under it. Default: http://<hostname>:<port>/ (https with TLS in --web.config.file).").PlaceHolder("<URL>").StringVar(&f.externalURL)
	serve.Flag("web.route-prefix", "Prefix for every endpoint (write paths, /metrics, /-/healthy, /-/ready, /-/reload). Defaults to the path of --web.external-url.").PlaceHolder("<path>").StringVar(&f.routePrefix)
	serve.Flag("web.trusted-proxies", "Comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client address (logs, per-client limits). Other peers' X-Forwarded-For is ignored.").PlaceHolder("<cidr,...>").Default("").StringVar(&f.trustedProxies)
	f.log = promslog.Config{}
	promslogflag.AddFlags(app, &f.log)

	check := app.Command("check", "Check resources without running.")
	checkConfig := check.Command("config", "Validate configuration files; exit 1 on the first invalid one.")
	checkFiles := checkConfig.Arg("file", "Configuration files.").Required().ExistingFiles()

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", program, err)
		app.Usage(args)
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

// gateway is everything that serves requests, built once.
type gateway struct {
	fwd    *forward.Manager
	routes *web.Web
	reload func(context.Context) error
}

// newGateway builds the gateway's parts and registers every collector with
// reg. Nothing registers anything after it returns.
func newGateway(logger *slog.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer, configFile string, cfg *config.Config) (*gateway, error) {
	return newGatewayWeb(logger, reg, gatherer, configFile, cfg, web.Options{}, forward.Options{})
}

// newGatewayWeb is newGateway with the web options (route prefix, trusted
// proxies); it sets webOpts.Reload itself.
func newGatewayWeb(logger *slog.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer, configFile string, cfg *config.Config, webOpts web.Options, fwdOpts forward.Options) (*gateway, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	configMetrics := registry.NewConfigMetrics(reg)
	fwdOpts.UserAgent = program + "/" + version.Version
	fwdOpts.QueueMetrics = queue.NewMetrics(reg)
	fwd := forward.NewManager(logger, registry.NewForwardMetrics(reg), fwdOpts)
	if err := fwd.ApplyConfig(cfg); err != nil {
		return nil, fmt.Errorf("start upstreams: %w", err)
	}
	configMetrics.Loaded(cfg.Hash, float64(time.Now().Unix()))

	tenants, err := tenant.NewSet(cfg, nil)
	if err != nil {
		return nil, err
	}
	guard := tenant.NewGuard(registry.NewTenantMetrics(reg), fwd)
	guard.Apply(tenants)

	handler := receiver.NewHandler(logger, registry.NewReceiverMetrics(reg), guard, receiverOptions(cfg))

	// reload is serialized: SIGHUP and /-/reload may race.
	var reloadMu sync.Mutex
	reload := func(context.Context) error {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		next, err := config.LoadFile(configFile)
		var nextTenants *tenant.Set
		if err == nil {
			nextTenants, err = tenant.NewSet(next, guard.Set())
		}
		if err == nil {
			err = fwd.ApplyConfig(next)
		}
		if err != nil {
			configMetrics.Failed()
			logger.Error("reload config; the previous configuration stays in force", "file", configFile, "err", err)
			return err
		}
		handler.SetOptions(receiverOptions(next))
		guard.Apply(nextTenants)
		configMetrics.Loaded(next.Hash, float64(time.Now().Unix()))
		logger.Info("reloaded config", "file", configFile, "sha256", next.Hash, "upstreams", len(next.Upstreams))
		return nil
	}

	webOpts.Reload = reload
	routes := web.New(logger.With("component", "web"), registry.NewHTTPMetrics(reg), gatherer, guard.Middleware(handler), webOpts)
	return &gateway{fwd: fwd, routes: routes, reload: reload}, nil
}

// receiverOptions are the write handler's limits in cfg.
func receiverOptions(cfg *config.Config) receiver.Options {
	return receiver.Options{MaxRequestBytes: cfg.Receiver.MaxRequestBytes, MaxDecodedBytes: cfg.Receiver.MaxDecodedBytes}
}

func serveGateway(logger *slog.Logger, f flags) error {
	logger.Info("starting gateway", "version", version.Info(), "build_context", version.BuildContext())

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

	cfg, err := config.LoadFile(f.configFile)
	if err != nil {
		return err
	}

	reg := registry.New()
	fwdOpts := forward.Options{StoragePath: f.storagePath, Fsync: queue.FsyncInterval, SyncInterval: f.fsyncInterval}
	if f.storageFsync == "always" {
		fwdOpts.Fsync = queue.FsyncAlways
	}
	if f.fsyncInterval <= 0 {
		return fmt.Errorf("--storage.fsync-interval: must be positive")
	}
	gw, err := newGatewayWeb(logger, reg, reg, f.configFile, cfg, webOpts, fwdOpts)
	if err != nil {
		return err
	}
	fwd, routes := gw.fwd, gw.routes

	srv := &http.Server{
		Handler:           routes,
		ReadHeaderTimeout: f.readHeaderTimeout,
		ReadTimeout:       f.readTimeout,
		WriteTimeout:      f.writeTimeout,
		IdleTimeout:       f.idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", f.listenAddress)
	if err != nil {
		fwd.Stop(context.Background())
		return fmt.Errorf("listen: %w", err)
	}

	var g run.Group
	{
		term := make(chan os.Signal, 1)
		signal.Notify(term, os.Interrupt, syscall.SIGTERM)
		cancel := make(chan struct{})
		g.Add(func() error {
			select {
			case s := <-term:
				logger.Info("received signal, shutting down", "signal", s)
			case <-cancel:
			}
			return nil
		}, func(error) {
			signal.Stop(term)
			close(cancel)
		})
	}
	{
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		cancel := make(chan struct{})
		g.Add(func() error {
			for {
				select {
				case <-hup:
					_ = gw.reload(context.Background())
				case <-cancel:
					return nil
				}
			}
		}, func(error) {
			signal.Stop(hup)
			close(cancel)
		})
	}
	{
		g.Add(func() error {
			routes.SetReady(true)
			noSystemd := false
			webFlags := &toolkitweb.FlagConfig{
				WebListenAddresses: &[]string{f.listenAddress},
				WebSystemdSocket:   &noSystemd,
				WebConfigFile:      &f.webConfigFile,
			}
			if err := toolkitweb.Serve(ln, srv, webFlags, logger.With("component", "web")); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve: %w", err)
			}
			return nil
		}, func(error) {
			// Stop answering ready first, so load balancers move away,
			// then let in-flight requests finish.
			routes.SetReady(false)
			ctx, cancel := context.WithTimeout(context.Background(), f.flushTimeout)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				logger.Warn("shut down HTTP server; closing the remaining connections", "err", err)
				_ = srv.Close()
			}
		})
	}
	runErr := g.Run()

	// Every accepted request is in a queue now; send what can be sent
	// before the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), f.flushTimeout)
	defer cancel()
	fwd.Stop(ctx)
	logger.Info("gateway stopped")
	return runErr
}
