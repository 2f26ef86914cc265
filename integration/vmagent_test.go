//go:build integration

package integration

import (
	"fmt"
	"testing"
	"time"
)

// TestVMAgentToPrometheus runs vmagent (scraping the gateway's /metrics every
// 1s) → gateway → Prometheus 2.42 with its remote-write receiver, and checks
// that the scraped series arrive with their job label and gw="test".
func TestVMAgentToPrometheus(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	upstream := Prometheus(t, "prometheus-upstream", upstreamPrometheusConfig, true)
	gw := Gateway(t, GatewayConfig("prom", upstream.URL("/api/v1/write"), protoV1))
	VMAgent(t, func(string) string {
		return fmt.Sprintf(`scrape_configs:
  - job_name: gateway
    scrape_interval: 1s
    static_configs:
      - targets: [%q]
`, gw.Addr)
	}, gw.URL("/api/v1/write"))

	for _, c := range []struct {
		query string
		want  string // value; empty accepts any
	}{
		{query: `up{job="gateway",gw="test"}`, want: "1"},
		{query: `gateway_receiver_requests_total{job="gateway",gw="test"}`},
	} {
		var got []promSample
		if err := eventually(60*time.Second, 500*time.Millisecond, func() error {
			var err error
			got, err = queryInstant(upstream.URL(""), c.query, time.Time{})
			if err != nil {
				return err
			}
			if len(got) == 0 {
				return fmt.Errorf("no series for %s upstream", c.query)
			}
			for _, s := range got {
				if inst := s.Metric["instance"]; inst != gw.Addr {
					return fmt.Errorf("%s: instance=%q, want %q", s.Key(), inst, gw.Addr)
				}
				if c.want != "" && s.Value != c.want {
					return fmt.Errorf("%s = %s, want %s", s.Key(), s.Value, c.want)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("vmagent's series upstream: %v", err)
		}
		t.Logf("%s: %d series upstream, e.g. %s = %s", c.query, len(got), got[0].Key(), got[0].Value)
	}
}
