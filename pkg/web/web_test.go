package web

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/registry"
)

func newTestWeb(t *testing.T, opts Options) (*Web, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	write := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	return New(nil, registry.NewHTTPMetrics(reg), reg, write, opts), reg
}

func TestMetricsCompressedOnce(t *testing.T) {
	w, _ := newTestWeb(t, Options{})
	srv := httptest.NewServer(w)
	defer srv.Close()

	// Make a write so the latency histogram has a series to expose.
	resp, err := http.Post(srv.URL+"/api/v1/write", "application/x-protobuf", nil)
	require.NoError(t, err)
	resp.Body.Close()

	req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	require.NoError(t, err)
	// Setting the header by hand turns off the transport's transparent
	// decompression, so the test sees exactly what was sent.
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))

	zr, err := gzip.NewReader(resp.Body)
	require.NoError(t, err)
	text, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.False(t, bytes.HasPrefix(text, []byte{0x1f, 0x8b}), "body was gzip-compressed twice")

	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(text))
	require.NoError(t, err)
	require.Contains(t, families, "gateway_http_request_duration_seconds")
	got := families["gateway_http_request_duration_seconds"].GetMetric()
	require.Len(t, got, 1)
	lbls := map[string]string{}
	for _, l := range got[0].GetLabel() {
		lbls[l.GetName()] = l.GetValue()
	}
	require.Equal(t, map[string]string{"handler": "/api/v1/write", "method": "POST", "code": "204"}, lbls)
}

func TestMetricsUncompressedWithoutAcceptEncoding(t *testing.T) {
	w, _ := newTestWeb(t, Options{})
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Empty(t, rec.Header().Get("Content-Encoding"))
	require.Contains(t, rec.Body.String(), "gateway_http_requests_in_flight")
}

func TestRoutePatternNotRawPath(t *testing.T) {
	w, reg := newTestWeb(t, Options{})
	for _, p := range []string{"/x1", "/x2", "/api/v1/write/../../etc"} {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
		require.Equal(t, http.StatusNotFound, rec.Code)
	}
	for _, p := range WritePaths {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, p, nil))
		require.Equal(t, http.StatusNoContent, rec.Code, p)
	}
	n, err := testutil.GatherAndCount(reg, "gateway_http_request_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, 4, n, "one series per write path plus one for every unknown path")
}

func TestHealthAndReady(t *testing.T) {
	w, _ := newTestWeb(t, Options{})
	get := func(path string) int {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	require.Equal(t, http.StatusOK, get("/-/healthy"))
	require.Equal(t, http.StatusServiceUnavailable, get("/-/ready"))
	w.SetReady(true)
	require.Equal(t, http.StatusOK, get("/-/ready"))
	w.SetReady(false)
	require.Equal(t, http.StatusServiceUnavailable, get("/-/ready"))
}

func TestReload(t *testing.T) {
	fail := true
	calls := 0
	w, _ := newTestWeb(t, Options{Reload: func(context.Context) error {
		calls++
		if fail {
			return errors.New("upstream \"a\": url: required")
		}
		return nil
	}})
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/-/reload", nil))
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.True(t, strings.Contains(rec.Body.String(), `url: required`))

	fail = false
	rec = httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/-/reload", nil))
	require.Equal(t, http.StatusOK, rec.Code)

	rec = httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/-/reload", nil))
	require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	require.Equal(t, 2, calls)
}

func TestRoutePrefix(t *testing.T) {
	for _, prefix := range []string{"/gw", "/gw/", "gw"} {
		t.Run(prefix, func(t *testing.T) {
			w, reg := newTestWeb(t, Options{RoutePrefix: prefix})
			w.SetReady(true)
			do := func(method, path string) int {
				rec := httptest.NewRecorder()
				w.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
				return rec.Code
			}
			for _, tc := range []struct {
				method, path string
				want         int
			}{
				{http.MethodPost, "/gw/api/v1/write", http.StatusNoContent},
				{http.MethodPost, "/gw/api/v1/push", http.StatusNoContent},
				{http.MethodPost, "/gw/api/v1/receive", http.StatusNoContent},
				{http.MethodGet, "/gw/metrics", http.StatusOK},
				{http.MethodGet, "/gw/-/healthy", http.StatusOK},
				{http.MethodGet, "/gw/-/ready", http.StatusOK},
				{http.MethodPost, "/gw/-/reload", http.StatusNotFound}, // no Reload: answered by the reload route
				// Nothing at the root, as in Prometheus.
				{http.MethodPost, "/api/v1/write", http.StatusNotFound},
				{http.MethodGet, "/metrics", http.StatusNotFound},
				{http.MethodGet, "/-/healthy", http.StatusNotFound},
				{http.MethodGet, "/-/ready", http.StatusNotFound},
				{http.MethodGet, "/gw", http.StatusNotFound},
				{http.MethodGet, "/gw/nope", http.StatusNotFound},
				{http.MethodPost, "/gwapi/v1/write", http.StatusNotFound},
			} {
				require.Equal(t, tc.want, do(tc.method, tc.path), "%s %s", tc.method, tc.path)
			}

			// The handler label is the route without the prefix.
			got := map[string]bool{}
			families, err := reg.Gather()
			require.NoError(t, err)
			for _, f := range families {
				if f.GetName() != "gateway_http_request_duration_seconds" {
					continue
				}
				for _, m := range f.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "handler" {
							got[l.GetValue()] = true
						}
					}
				}
			}
			require.Equal(t, map[string]bool{
				"/api/v1/write": true, "/api/v1/push": true, "/api/v1/receive": true,
				"/metrics": true, "/-/healthy": true, "/-/ready": true, "/-/reload": true, "other": true,
			}, got)
		})
	}
}

func TestRootPrefix(t *testing.T) {
	for _, prefix := range []string{"", "/", "//"} {
		w, _ := newTestWeb(t, Options{RoutePrefix: prefix})
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/write", nil))
		require.Equal(t, http.StatusNoContent, rec.Code, "prefix %q", prefix)
	}
}

func TestRequestLogDebugOnly(t *testing.T) {
	for _, tc := range []struct {
		name    string
		level   slog.Level
		wantLog bool
	}{
		{name: "debug", level: slog.LevelDebug, wantLog: true},
		{name: "info", level: slog.LevelInfo, wantLog: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tc.level}))
			reg := prometheus.NewPedanticRegistry()
			trusted, err := ParseTrustedProxies("127.0.0.1")
			require.NoError(t, err)
			write := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte("bad series\n"))
			})
			w := New(logger, registry.NewHTTPMetrics(reg), reg, write, Options{RoutePrefix: "/gw", TrustedProxies: trusted})
			req := httptest.NewRequest(http.MethodPost, "/gw/api/v1/write", strings.NewReader("12345"))
			req.RemoteAddr = "127.0.0.1:5000"
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			w.ServeHTTP(httptest.NewRecorder(), req)
			if !tc.wantLog {
				require.Empty(t, buf.String())
				return
			}
			var got map[string]any
			require.NoError(t, json.Unmarshal(buf.Bytes(), &got), buf.String())
			for k, want := range map[string]any{
				"level": "DEBUG", "msg": "http request", "method": "POST", "route": "/api/v1/write",
				"status": float64(400), "client": "203.0.113.7", "peer": "127.0.0.1:5000",
				"request_bytes": float64(5), "response_bytes": float64(len("bad series\n")),
			} {
				require.Equal(t, want, got[k], k)
			}
			require.Contains(t, got, "duration")
		})
	}
}

func TestExternalURL(t *testing.T) {
	hostname, err := os.Hostname()
	require.NoError(t, err)
	dir := t.TempDir()
	tlsConfig := filepath.Join(dir, "tls.yml")
	require.NoError(t, os.WriteFile(tlsConfig, []byte("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n"), 0o600))
	authConfig := filepath.Join(dir, "auth.yml")
	require.NoError(t, os.WriteFile(authConfig, []byte("basic_auth_users:\n  u: $2y$10$x\n"), 0o600))
	for _, tc := range []struct {
		name, raw, listen, webConfig, prefix string
		wantURL, wantPrefix, wantErr         string
		wantPrefixErr                        string
	}{
		{name: "default", listen: ":9201", wantURL: "http://" + hostname + ":9201", wantPrefix: "/"},
		{name: "default with TLS", listen: "127.0.0.1:9201", webConfig: tlsConfig, wantURL: "https://" + hostname + ":9201", wantPrefix: "/"},
		{name: "basic auth only is http", listen: ":9201", webConfig: authConfig, wantURL: "http://" + hostname + ":9201", wantPrefix: "/"},
		{name: "prefix from the path", raw: "https://edge.example/gw/", listen: ":9201", wantURL: "https://edge.example/gw", wantPrefix: "/gw"},
		{name: "flag wins", raw: "https://edge.example/gw/", listen: ":9201", prefix: "/internal/", wantURL: "https://edge.example/gw", wantPrefix: "/internal"},
		{name: "prefix without URL path", listen: ":9201", prefix: "gw", wantURL: "http://" + hostname + ":9201", wantPrefix: "/gw"},
		{name: "pattern characters in the prefix", listen: ":9201", prefix: "/gw/{x}", wantURL: "http://" + hostname + ":9201", wantPrefixErr: "must not contain"},
		{name: "pattern characters in the URL path", raw: "https://edge.example/gw/*", listen: ":9201", wantURL: "https://edge.example/gw/*", wantPrefixErr: "must not contain"},
		{name: "quoted", raw: `"http://x/"`, listen: ":9201", wantErr: "quotes"},
		{name: "no scheme", raw: "edge.example/gw", listen: ":9201", wantErr: "scheme"},
		{name: "bad listen address", listen: "9201", wantErr: "listen address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ExternalURL(tc.raw, tc.listen, tc.webConfig)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantURL, u.String())
			prefix, err := RoutePrefix(tc.prefix, u)
			if tc.wantPrefixErr != "" {
				require.ErrorContains(t, err, tc.wantPrefixErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantPrefix, prefix)
		})
	}
}

func TestPprof(t *testing.T) {
	w, _ := newTestWeb(t, Options{RoutePrefix: "/gw"})
	for path, want := range map[string]int{
		"/gw/debug/pprof/":        http.StatusOK,
		"/gw/debug/pprof/heap":    http.StatusOK,
		"/gw/debug/pprof/cmdline": http.StatusOK,
		"/debug/pprof/":           http.StatusNotFound,
	} {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, want, rec.Code, path)
	}
}
