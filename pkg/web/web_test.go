package web

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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
