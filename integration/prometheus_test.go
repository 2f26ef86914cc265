//go:build integration

package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// upstreamPrometheusConfig is a Prometheus that only receives remote write.
func upstreamPrometheusConfig(string) string {
	return "global:\n  scrape_interval: 1m\n"
}

// TestPrometheusToPrometheus runs Prometheus 2.42 (scraping itself every 1s)
// → gateway → Prometheus 2.42 with its remote-write receiver, and checks
// that at an instant T in the past every series the client holds is in the
// upstream, with gw="test" added and the identical value.
func TestPrometheusToPrometheus(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	upstream := Prometheus(t, "prometheus-upstream", upstreamPrometheusConfig, true)
	gw := Gateway(t, GatewayConfig("prom", upstream.URL("/api/v1/write"), protoV1))
	client := Prometheus(t, "prometheus-client", func(addr string) string {
		return fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: [%q]
remote_write:
  - url: %s
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 1s}
    metadata_config: {send_interval: 5s}
`, addr, gw.URL("/api/v1/write"))
	}, false)

	// Wait for the first forwarded self-scrape.
	if err := eventually(60*time.Second, 500*time.Millisecond, func() error {
		got, err := queryInstant(upstream.URL(""), `up{job="prometheus",gw="test"}`, time.Time{})
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return fmt.Errorf("no up series from the client in the upstream yet")
		}
		return nil
	}); err != nil {
		t.Fatalf("wait for data upstream: %v", err)
	}

	// Let a few more scrapes happen, then pick T in the past: everything the
	// client had at T was written before T and has had time to be sent.
	time.Sleep(3 * time.Second)
	at := time.Now().Add(-2 * time.Second)
	const q = `{__name__=~".+"}`
	want, err := queryInstant(client.URL(""), q, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 50 {
		t.Fatalf("client holds %d series at %s, want at least 50", len(want), formatUnix(at))
	}
	wantByKey := make(map[string]string, len(want))
	for _, s := range want {
		wantByKey[s.Key()] = s.Value
	}

	var diff []string
	start := time.Now()
	err = eventually(60*time.Second, time.Second, func() error {
		got, err := queryInstant(upstream.URL(""), q, at)
		if err != nil {
			return err
		}
		diff = diffSeries(wantByKey, got)
		if len(diff) > 0 {
			return fmt.Errorf("%d differences", len(diff))
		}
		return nil
	})
	if err != nil {
		const maxShown = 40
		shown := diff
		if len(shown) > maxShown {
			shown = shown[:maxShown]
		}
		t.Fatalf("upstream differs from client at T=%s after %v (%v; %d client series); first %d:\n%s",
			formatUnix(at), time.Since(start).Round(time.Second), err, len(want), len(shown), strings.Join(shown, "\n"))
	}
	t.Logf("all %d client series at T=%s are upstream with identical values (matched after %v)",
		len(want), formatUnix(at), time.Since(start).Round(time.Millisecond))
}

// diffSeries compares the client's series at T (key → value) with the
// upstream's, which must carry gw="test".
func diffSeries(want map[string]string, got []promSample) []string {
	var diff []string
	seen := make(map[string]bool, len(got))
	for _, s := range got {
		key := s.Key("gw")
		if gw := s.Metric["gw"]; gw != "test" {
			diff = append(diff, fmt.Sprintf("upstream %s: gw=%q, want \"test\"", s.Key(), gw))
		}
		seen[key] = true
		wv, ok := want[key]
		switch {
		case !ok:
			diff = append(diff, fmt.Sprintf("extra upstream %s = %s", key, s.Value))
		case wv != s.Value:
			diff = append(diff, fmt.Sprintf("value %s: upstream %s, client %s", key, s.Value, wv))
		}
	}
	for key, v := range want {
		if !seen[key] {
			diff = append(diff, fmt.Sprintf("missing upstream %s (client %s)", key, v))
		}
	}
	sort.Strings(diff)
	return diff
}

// TestPrometheusLowRateRequestsLeaveWhole runs Prometheus 2.42 scraping a
// target of six series every second → the gateway at its queue defaults
// → Prometheus 2.42 receiving. At that rate the gateway sends with one
// shard, so the upstream gets no more requests than the client sent: each
// of the client's requests of a few series leaves as one request (or is
// merged with the next), not as one per shard its series hash to.
func TestPrometheusLowRateRequestsLeaveWhole(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for i := range 6 {
			fmt.Fprintf(w, "it_low_rate{instance_id=\"%d\"} %d\n", i, i)
		}
	}))
	defer target.Close()
	upstream := Prometheus(t, "prometheus-upstream", upstreamPrometheusConfig, true)
	gw := Gateway(t, fmt.Sprintf("upstreams:\n  - name: prom\n    url: %s\n", upstream.URL("/api/v1/write")))
	Prometheus(t, "prometheus-client", func(string) string {
		return fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: low
    static_configs:
      - targets: [%q]
remote_write:
  - url: %s
    queue_config: {batch_send_deadline: 1s}
    metadata_config: {send: false}
`, strings.TrimPrefix(target.URL, "http://"), gw.URL("/api/v1/write"))
	}, false)

	var received, sent float64
	err := eventually(60*time.Second, time.Second, func() error {
		sent = gatewayMetric(t, gw, "gateway_upstream_sent_batches_total", "prom")
		received = gatewayMetricWith(t, gw, "gateway_receiver_requests_total", "protocol", "1.0")
		if received < 20 || sent < 10 {
			return fmt.Errorf("%v requests received, %v sent so far", received, sent)
		}
		return nil
	})
	require.NoError(t, err)
	t.Logf("client requests %v, upstream requests %v", received, sent)
	// Sent is read first: every request it counts was received by the time
	// received is read.
	require.LessOrEqual(t, sent, received, "the upstream got more requests than the client sent")
	require.Equal(t, 1.0, gatewayMetric(t, gw, "gateway_upstream_shards", "prom"))
}
