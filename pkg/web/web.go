// Package web builds the gateway's HTTP routes: the write endpoints, the
// gateway's own /metrics, health, readiness and reload.
//
// Everything here is built once at start. The write handler is passed in
// already built; the router only routes to it.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
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
}

// Web holds the router and the readiness state. It is safe for concurrent
// use.
type Web struct {
	logger  *slog.Logger
	metrics *registry.HTTPMetrics
	router  chi.Router
	ready   atomic.Bool
	opts    Options
}

// New builds the routes. write serves the write paths; gatherer is exposed
// on /metrics.
func New(logger *slog.Logger, metrics *registry.HTTPMetrics, gatherer prometheus.Gatherer, write http.Handler, opts Options) *Web {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Web{logger: logger, metrics: metrics, opts: opts}
	r := chi.NewRouter()
	r.Use(w.instrument)
	for _, p := range WritePaths {
		r.Handle(p, write) // the handler answers 405 itself for other methods
	}
	// promhttp negotiates its own compression from Accept-Encoding; no
	// middleware in this router compresses, so /metrics is never encoded
	// twice.
	r.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
		EnableOpenMetrics: true,
	}))
	r.Get("/-/healthy", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = rw.Write([]byte("Gateway is Healthy.\n"))
	})
	r.Get("/-/ready", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !w.ready.Load() {
			rw.WriteHeader(http.StatusServiceUnavailable)
			_, _ = rw.Write([]byte("Gateway is not ready.\n"))
			return
		}
		_, _ = rw.Write([]byte("Gateway is Ready.\n"))
	})
	r.Post("/-/reload", w.reload)
	r.Put("/-/reload", w.reload)
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

// instrument records latency by route pattern, never by raw path, so a
// client cannot create series by inventing paths.
func (w *Web) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.metrics.InFlight.Inc()
		defer w.metrics.InFlight.Dec()
		sw := &statusWriter{ResponseWriter: rw, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		pattern := chi.RouteContext(r.Context()).RoutePattern()
		if pattern == "" {
			pattern = "other"
		}
		w.metrics.Duration.WithLabelValues(pattern, r.Method, strconv.Itoa(sw.code)).Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status code. It forwards Flush so that
// streaming handlers keep working.
type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
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
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
