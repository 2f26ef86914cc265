// Package web builds the gateway's HTTP routes: the write endpoints, the
// gateway's own /metrics, health, readiness and reload, all under one route
// prefix; the client address behind trusted reverse proxies; and the debug
// request log.
//
// Everything here is built once at start. The write handler is passed in
// already built; the router only routes to it.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rwgateway/gateway/pkg/registry"
)

// WritePaths are the paths the write handler answers on: Prometheus's own,
// and the ones Mimir/Cortex and Thanos agents are configured with.
var WritePaths = []string{"/api/v1/write", "/api/v1/push", "/api/v1/receive"}

// Options configures the routes.
type Options struct {
	// Reload re-reads the configuration; nil disables POST /-/reload.
	Reload func(ctx context.Context) error
	// RoutePrefix is the path every route is served under, as
	// --web.route-prefix: "/gw" serves /gw/api/v1/write, /gw/metrics,
	// /gw/-/ready and so on, and nothing at the root (as Prometheus does).
	// Empty or "/" serves at the root. A trailing slash is ignored. It
	// must not contain {, } or * (RoutePrefix checks).
	RoutePrefix string
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// finding the client address (see ClientAddr). Empty trusts none: the
	// client is always the direct peer.
	TrustedProxies []netip.Prefix
}

// Web holds the router and the readiness state. It is safe for concurrent
// use.
type Web struct {
	logger  *slog.Logger
	metrics *registry.HTTPMetrics
	router  chi.Router
	ready   atomic.Bool
	opts    Options
	prefix  string // "" for the root, else "/gw": no trailing slash
	trusted []netip.Prefix
}

// New builds the routes under opts.RoutePrefix. write serves the write
// paths; gatherer is exposed on /metrics.
func New(logger *slog.Logger, metrics *registry.HTTPMetrics, gatherer prometheus.Gatherer, write http.Handler, opts Options) *Web {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Web{
		logger:  logger,
		metrics: metrics,
		opts:    opts,
		prefix:  strings.TrimRight(cleanPrefix(opts.RoutePrefix), "/"),
		trusted: opts.TrustedProxies,
	}
	r := chi.NewRouter()
	if len(w.trusted) > 0 {
		r.Use(w.forwarded) // first: the request log reads the client address
	}
	r.Use(w.instrument)
	// Every route is registered with the prefix in front rather than on a
	// mounted sub-router, so that an unknown path, under the prefix or not,
	// has no pattern and is counted as "other".
	for _, p := range WritePaths {
		r.Handle(w.prefix+p, write) // the handler answers 405 itself for other methods
	}
	// promhttp negotiates its own compression from Accept-Encoding; no
	// middleware in this router compresses, so /metrics is never encoded
	// twice.
	r.Handle(w.prefix+"/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
		EnableOpenMetrics: true,
	}))
	r.Get(w.prefix+"/-/healthy", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = rw.Write([]byte("Gateway is Healthy.\n"))
	})
	r.Get(w.prefix+"/-/ready", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !w.ready.Load() {
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = rw.Write([]byte("Gateway is not ready.\n"))
			return
		}
		_, _ = rw.Write([]byte("Gateway is Ready.\n"))
	})
	r.Post(w.prefix+"/-/reload", w.reload)
	r.Put(w.prefix+"/-/reload", w.reload)
	// Profiles, as Prometheus serves them: CPU and allocation profiles of
	// the running gateway are how its hot path is tuned.
	r.HandleFunc(w.prefix+"/debug/pprof/*", pprof.Index)
	r.HandleFunc(w.prefix+"/debug/pprof/cmdline", pprof.Cmdline)
	r.HandleFunc(w.prefix+"/debug/pprof/profile", pprof.Profile)
	r.HandleFunc(w.prefix+"/debug/pprof/symbol", pprof.Symbol)
	r.HandleFunc(w.prefix+"/debug/pprof/trace", pprof.Trace)
	w.router = r
	return w
}

// ServeHTTP routes a request.
func (w *Web) ServeHTTP(rw http.ResponseWriter, r *http.Request) { w.router.ServeHTTP(rw, r) }

// SetReady sets what /-/ready answers.
func (w *Web) SetReady(ready bool) { w.ready.Store(ready) }

func (w *Web) reload(rw http.ResponseWriter, r *http.Request) {
	if w.opts.Reload == nil {
		http.Error(rw, "reload is not enabled", http.StatusNotFound)
		return
	}
	if err := w.opts.Reload(r.Context()); err != nil {
		http.Error(rw, "reload config: "+err.Error(), http.StatusInternalServerError)
		return
	}
	rw.WriteHeader(http.StatusOK)
}

// instrument records latency by route, never by raw path, so a client
// cannot create series by inventing paths, and logs each request at debug
// level.
//
// The route is the pattern without the route prefix ("/api/v1/write" also
// when served at /gw/api/v1/write), as Prometheus labels its own handlers:
// dashboards and alerts do not change with the prefix. Unknown paths are
// "other".
func (w *Web) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.metrics.InFlight.Inc()
		defer w.metrics.InFlight.Dec()
		sw := &statusWriter{ResponseWriter: rw, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		elapsed := time.Since(start)
		route := "other"
		if pattern := chi.RouteContext(r.Context()).RoutePattern(); pattern != "" {
			route = strings.TrimPrefix(pattern, w.prefix)
		}
		w.metrics.Duration.WithLabelValues(route, r.Method, strconv.Itoa(sw.code)).Observe(elapsed.Seconds())
		if w.logger.Enabled(r.Context(), slog.LevelDebug) {
			w.logRequest(r, route, sw, elapsed)
		}
	})
}

// logRequest writes the debug request log line. Unknown paths are logged
// with the raw path, which never becomes a label.
func (w *Web) logRequest(r *http.Request, route string, sw *statusWriter, elapsed time.Duration) {
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", sw.code),
		slog.Duration("duration", elapsed),
		slog.String("client", ClientAddr(r)),
		slog.Int64("request_bytes", r.ContentLength),
		slog.Int64("response_bytes", sw.bytes),
	)
	if route == "other" {
		attrs = append(attrs, slog.String("path", r.URL.Path))
	}
	if r.Header.Get("X-Forwarded-For") != "" {
		attrs = append(attrs, slog.String("peer", r.RemoteAddr))
	}
	w.logger.LogAttrs(r.Context(), slog.LevelDebug, "http request", attrs...)
}

// statusWriter remembers the status code. It forwards Flush so that
// streaming handlers keep working.
type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
	bytes       int64 // body bytes written
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wroteHeader {
		s.code = code
		s.wroteHeader = true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wroteHeader = true
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
