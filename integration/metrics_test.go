//go:build integration

package integration

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

// TestMetricsGzip writes through every write path, then scrapes /metrics with
// Accept-Encoding: gzip: the body is gzip exactly once and parses as the text
// format with gateway_receiver_requests_total in it.
func TestMetricsGzip(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	sink := NewSink(t)
	gw := Gateway(t, GatewayConfig("sink", sink.URL+"/api/v1/write", protoV2))

	base := time.Now().Add(-time.Minute).UnixMilli()
	for _, path := range []string{"/api/v1/write", "/api/v1/push", "/api/v1/receive"} {
		resp, err := PostV1(gw.URL(path), samplesRequest(path, base, 1))
		require.NoError(t, err)
		require.Truef(t, resp.Status/100 == 2, "POST %s: %d %s", path, resp.Status, resp.Body)
	}

	// DisableCompression: the transport neither asks for gzip nor
	// decompresses, so the body is exactly what the gateway sent.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	req, err := http.NewRequest(http.MethodGet, gw.URL("/metrics"), nil)
	require.NoError(t, err)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	zr, err := gzip.NewReader(bytes.NewReader(body))
	require.NoError(t, err)
	text, err := io.ReadAll(zr)
	require.NoError(t, err, "gunzip /metrics")
	require.Falsef(t, bytes.HasPrefix(text, []byte{0x1f, 0x8b}), "/metrics is gzip-encoded twice")

	ct := expfmt.ResponseFormat(resp.Header)
	require.Equalf(t, expfmt.TypeTextPlain, ct.FormatType(), "Content-Type %q", resp.Header.Get("Content-Type"))
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(text))
	require.NoError(t, err, "parse /metrics")
	require.Contains(t, families, "gateway_receiver_requests_total")
	t.Logf("/metrics: %d bytes gzip, %d bytes text, %d families", len(body), len(text), len(families))
}
