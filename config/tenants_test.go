package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTenantsConfig(t *testing.T) {
	const ups = "upstreams:\n- {name: a, url: 'http://h/w'}\n- {name: b, url: 'http://h/w'}\n"
	cfg, err := Load([]byte(ups + `
limits: {max_series_per_request: 100, samples_per_second: 10, burst: 20}
tenants:
  tenants:
  - {id: t1, upstreams: [a], limits: {burst: 50}}
`))
	require.NoError(t, err)
	require.Equal(t, DefaultTenantHeader, cfg.Tenants.Header)
	merged := cfg.Limits.Merge(cfg.Tenants.Tenants[0].Limits)
	require.Equal(t, LimitsConfig{MaxSeriesPerRequest: 100, SamplesPerSecond: 10, Burst: 50}, merged)

	for _, tc := range []struct{ name, yaml, wantErr string }{
		{"unknown upstream", "tenants: {tenants: [{id: t1, upstreams: [c]}]}", `tenant "t1": upstreams: no upstream named "c"`},
		{"bad id", "tenants: {tenants: [{id: 'a b'}]}", "tenants.tenants[0].id"},
		{"duplicate id", "tenants: {tenants: [{id: t1}, {id: t1}]}", `tenant "t1": id: duplicate`},
		{"shared token", "tenants: {tenants: [{id: t1, bearer_tokens: [x]}, {id: t2, bearer_tokens: [x]}]}", `tenant "t2": bearer_tokens: a token is also bound to tenant "t1"`},
		{"shared user", "tenants: {tenants: [{id: t1, basic_auth_users: {u: h}}, {id: t2, basic_auth_users: {u: h}}]}", `user "u" is also bound`},
		{"unknown default", "tenants: {default_tenant: zz, tenants: [{id: t1}]}", `tenants.default_tenant: no tenant "zz"`},
		{"default with required", "tenants: {required: true, default_tenant: t1, tenants: [{id: t1}]}", "cannot be set when tenants.required"},
		{"rate without burst", "limits: {samples_per_second: 5}", "limits.burst: required"},
		{"negative tenant limit", "tenants: {tenants: [{id: t1, limits: {max_labels_per_series: -1}}]}", `tenant "t1": limits.max_*`},
		{"unknown tenant key", "tenants: {tenants: [{id: t1, upstream: [a]}]}", "field upstream not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(ups + tc.yaml + "\n"))
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}
