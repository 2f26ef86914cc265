// Package gateway owns the gateway's lifecycle: New builds every part once,
// Run listens, starts the forwarders, serves and shuts down within one
// deadline, and Reload swaps the configuration while it runs.
//
// This is the one place the other packages are wired together; main only
// turns flags into Options.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	toolkitweb "github.com/prometheus/exporter-toolkit/web"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/forward"
	"github.com/rwgateway/gateway/pkg/queue"
	"github.com/rwgateway/gateway/pkg/receiver"
	"github.com/rwgateway/gateway/pkg/registry"
	"github.com/rwgateway/gateway/pkg/tenant"
	"github.com/rwgateway/gateway/pkg/web"
)

// errNotStarted is returned by a reload before Run has started the
// forwarders.
var errNotStarted = errors.New("gateway not started")

// Options configure a Gateway. Zero fields mean the documented defaults.
type Options struct {
	// ConfigFile is the configuration file, read by New and again by every
	// reload.
	ConfigFile string
	// ListenAddress is the TCP address Run serves on, e.g. ":9201".
	ListenAddress string
	// WebConfigFile is an exporter-toolkit web configuration file (TLS,
	// mutual TLS, basic auth), checked by New and read again for every
	// connection. Empty serves plain HTTP without authentication.
	WebConfigFile string
	// Web are the routes' options; New sets Web.Reload to Reload.
	Web web.Options
	// Forward are the forwarders' options; New sets Forward.QueueMetrics.
	Forward forward.Options
	// FlushTimeout bounds the whole shutdown: in-flight requests, then
	// sending what is queued. Zero sends nothing more at shutdown.
	FlushTimeout time.Duration
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// HTTP server's fields of the same names; zero means as there.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
}

// Gateway is the whole gateway: the write handler, the tenant guard, the
// forwarders and the routes, built once by New. Run runs it once; Reload
// may be called from any goroutine while Run runs.
type Gateway struct {
	logger        *slog.Logger
	opts          Options
	configMetrics *registry.ConfigMetrics
	fwd           *forward.Manager
	guard         *tenant.Guard
	handler       *receiver.Handler
	routes        *web.Web
	// listen opens Run's listener; tests replace it.
	listen func(network, address string) (net.Listener, error)

	// reloadMu serializes start and Reload (SIGHUP and /-/reload may race),
	// and guards the fields below.
	reloadMu sync.Mutex
	cfg      *config.Config
	started  bool
}

// New reads opts.ConfigFile, checks opts.WebConfigFile, and builds every
// part of the gateway, registering all of its collectors with reg; gatherer
// is served on /metrics. Nothing registers a collector after New returns.
// New starts no goroutine and opens no queue: Run does, so a Gateway that
// is never run needs no stopping.
func New(logger *slog.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer, opts Options) (*Gateway, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := config.LoadFile(opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	if err := toolkitweb.Validate(opts.WebConfigFile); err != nil {
		return nil, fmt.Errorf("web config file %s: %w", opts.WebConfigFile, err)
	}
	tenants, err := tenant.NewSet(cfg, nil)
	if err != nil {
		return nil, err
	}
	opts.FlushTimeout = max(opts.FlushTimeout, 0)

	g := &Gateway{logger: logger, opts: opts, cfg: cfg, listen: net.Listen}
	g.configMetrics = registry.NewConfigMetrics(reg)
	fwdOpts := opts.Forward
	fwdOpts.QueueMetrics = queue.NewMetrics(reg)
	g.fwd = forward.NewManager(logger, registry.NewForwardMetrics(reg), fwdOpts)
	g.guard = tenant.NewGuard(registry.NewTenantMetrics(reg), g.fwd)
	g.guard.Apply(tenants)
	g.handler = receiver.NewHandler(logger, registry.NewReceiverMetrics(reg), g.guard, receiverOptions(cfg))
	webOpts := opts.Web
	webOpts.Reload = g.Reload
	g.routes = web.New(logger.With("component", "web"), registry.NewHTTPMetrics(reg), gatherer, g.guard.Middleware(g.handler), webOpts)
	return g, nil
}

// receiverOptions are the write handler's options for cfg: its limits,
// and 2.0 requests decoded as 1.0 data when no upstream takes 2.0.
func receiverOptions(cfg *config.Config) receiver.Options {
	plain := !slices.ContainsFunc(cfg.Upstreams, func(u *config.UpstreamConfig) bool { return u.SendsV2() })
	return receiver.Options{MaxRequestBytes: cfg.Receiver.MaxRequestBytes, MaxDecodedBytes: cfg.Receiver.MaxDecodedBytes, PlainV2: plain}
}

// Run listens on opts.ListenAddress first, so that an address in use is
// an error at once, before any queue is opened or forwarder started. It
// then starts the forwarders and serves until SIGINT, SIGTERM or ctx ends
// it (SIGHUP reloads), or serving fails.
//
// Shutdown: /-/ready answers 503, the server stops accepting and waits for
// in-flight requests, then the forwarders send what is queued; both share
// one deadline of opts.FlushTimeout from the moment shutdown begins. At the
// deadline the remaining connections are closed and in-flight sends
// cancelled; disk queues keep what was not sent. Run returns nil after a
// signal or ctx, and the error that ended it otherwise. Call it once.
func (g *Gateway) Run(ctx context.Context) error {
	ln, err := g.listen("tcp", g.opts.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Serving closes it; this covers a serve that never started.
	defer ln.Close()
	if err := g.start(); err != nil {
		return err
	}

	shutdown := &deadline{timeout: g.opts.FlushTimeout}
	defer shutdown.release()
	var group run.Group
	{
		term := make(chan os.Signal, 1)
		signal.Notify(term, os.Interrupt, syscall.SIGTERM)
		cancel := make(chan struct{})
		group.Add(func() error {
			select {
			case s := <-term:
				g.logger.Info("received signal, shutting down", "signal", s)
			case <-ctx.Done():
				g.logger.Info("context done, shutting down", "err", ctx.Err())
			case <-cancel:
			}
			return nil
		}, func(error) {
			// The first interrupt: the deadline starts now, for every
			// stop that follows.
			shutdown.context()
			signal.Stop(term)
			close(cancel)
		})
	}
	{
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		cancel := make(chan struct{})
		group.Add(func() error {
			for {
				select {
				case <-hup:
					_ = g.Reload(ctx)
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
		srv := &http.Server{
			Handler:           g.routes,
			ReadHeaderTimeout: g.opts.ReadHeaderTimeout,
			ReadTimeout:       g.opts.ReadTimeout,
			WriteTimeout:      g.opts.WriteTimeout,
			IdleTimeout:       g.opts.IdleTimeout,
			ErrorLog:          slog.NewLogLogger(g.logger.Handler(), slog.LevelWarn),
		}
		noSystemd := false
		webFlags := &toolkitweb.FlagConfig{
			WebListenAddresses: &[]string{g.opts.ListenAddress},
			WebSystemdSocket:   &noSystemd,
			WebConfigFile:      &g.opts.WebConfigFile,
		}
		group.Add(func() error {
			g.routes.SetReady(true)
			if err := toolkitweb.Serve(ln, srv, webFlags, g.logger.With("component", "web")); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve: %w", err)
			}
			return nil
		}, func(error) {
			// Stop answering ready first, so load balancers move away,
			// then let in-flight requests finish.
			g.routes.SetReady(false)
			if err := srv.Shutdown(shutdown.context()); err != nil {
				g.logger.Warn("shut down HTTP server; closing the remaining connections", "err", err)
				_ = srv.Close()
			}
		})
	}
	{
		// Interrupted after the server: every accepted request is in a
		// queue now. The forwarders get what is left of the deadline.
		stopped := make(chan struct{})
		group.Add(func() error {
			<-stopped
			return nil
		}, func(error) {
			ctx := shutdown.context()
			left := time.Duration(0)
			if d, ok := ctx.Deadline(); ok {
				left = max(time.Until(d), 0)
			}
			g.logger.Info("stopping forwarders", "flush_time_left", left.Round(time.Millisecond))
			g.fwd.Stop(ctx)
			close(stopped)
		})
	}
	err = group.Run()
	g.logger.Info("gateway stopped")
	return err
}

// start applies the configuration New read: the disk queues open and the
// forwarders start sending. If that fails, whatever it left is stopped at
// once (the storage path may be locked), and the Gateway cannot start again.
func (g *Gateway) start() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if err := g.fwd.ApplyConfig(g.cfg); err != nil {
		// ApplyConfig undoes its own forwarders and queues on error, but
		// not the lock on the storage path. Nothing was accepted yet:
		// there is nothing to flush.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		g.fwd.Stop(ctx)
		return fmt.Errorf("start upstreams: %w", err)
	}
	g.configMetrics.Loaded(g.cfg.Hash, float64(time.Now().Unix()))
	g.started = true
	return nil
}

// Reload reads opts.ConfigFile again and applies it to the receiver, the
// tenants and the forwarders. The file is validated fully first: on error
// nothing changes, the error is logged, counted and returned, and the
// previous configuration stays in force. Calls are serialized; a call
// before Run has started the forwarders is an error.
func (g *Gateway) Reload(context.Context) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if !g.started {
		return errNotStarted
	}
	next, err := config.LoadFile(g.opts.ConfigFile)
	var nextTenants *tenant.Set
	if err == nil {
		nextTenants, err = tenant.NewSet(next, g.guard.Set())
	}
	if err == nil {
		// 2.0 requests keep what only 2.0 carries before a 2.0 upstream
		// starts; once none is left, they may be read as 1.0 data.
		during := receiverOptions(g.cfg)
		during.PlainV2 = during.PlainV2 && receiverOptions(next).PlainV2
		g.handler.SetOptions(during)
		if err = g.fwd.ApplyConfig(next); err != nil {
			g.handler.SetOptions(receiverOptions(g.cfg))
		}
	}
	if err != nil {
		g.configMetrics.Failed()
		g.logger.Error("reload config; the previous configuration stays in force", "file", g.opts.ConfigFile, "err", err)
		return err
	}
	g.handler.SetOptions(receiverOptions(next))
	g.guard.Apply(nextTenants)
	g.cfg = next
	g.configMetrics.Loaded(next.Hash, float64(time.Now().Unix()))
	g.logger.Info("reloaded config", "file", g.opts.ConfigFile, "sha256", next.Hash, "upstreams", len(next.Upstreams))
	return nil
}

// deadline is the one shutdown deadline: the first call of context starts
// it, and every later call shares it. Calls come from the run group's
// interrupts, one after another.
type deadline struct {
	timeout time.Duration
	once    sync.Once
	ctx     context.Context
	cancel  context.CancelFunc
}

// context returns the shutdown context, starting the deadline on the
// first call.
func (d *deadline) context() context.Context {
	d.once.Do(func() { d.ctx, d.cancel = context.WithTimeout(context.Background(), d.timeout) })
	return d.ctx
}

// release frees the deadline's timer, if it was started.
func (d *deadline) release() {
	d.once.Do(func() {})
	if d.cancel != nil {
		d.cancel()
	}
}
