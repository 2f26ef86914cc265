package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

func TestExampleFileIsValid(t *testing.T) {
	cfg, err := LoadFile("gateway.example.yml")
	require.NoError(t, err)
	require.Len(t, cfg.Upstreams, 2)
	require.Equal(t, labels.FromStrings("region", "eu"), cfg.Global.ExternalLabels)
	p := cfg.Upstreams[0]
	require.Equal(t, "primary", p.Name)
	require.Equal(t, ProtobufMessageV1, p.ProtobufMessage)
	require.Equal(t, "team-a", p.Headers["X-Scope-OrgID"])
	require.Len(t, p.WriteRelabelConfigs, 1)
	require.Equal(t, DefaultQueueConfig, p.QueueConfig, "the example documents the defaults")
	require.Equal(t, DefaultMetadataConfig, p.MetadataConfig)
	require.True(t, cfg.Upstreams[1].SendsV2())
	require.Len(t, cfg.Hash, 64)
}

func TestDefaults(t *testing.T) {
	cfg, err := Load([]byte("upstreams:\n- name: a\n  url: http://127.0.0.1:1/api/v1/write\n"))
	require.NoError(t, err)
	u := cfg.Upstreams[0]
	require.Equal(t, DefaultReceiverConfig, cfg.Receiver)
	require.Equal(t, DefaultQueueConfig, u.QueueConfig)
	require.Equal(t, model.Duration(30*time.Second), u.RemoteTimeout)
	require.True(t, u.SendExemplars, "a gateway forwards exemplars by default")
	require.True(t, u.SendNativeHistograms, "a gateway forwards native histograms by default")
	require.True(t, u.QueueConfig.RetryOnRateLimit)
	require.True(t, u.HTTPClientConfig.FollowRedirects)
	require.False(t, u.SendsV2())

	// A partial queue_config keeps the defaults of the fields it omits.
	cfg, err = Load([]byte("upstreams:\n- name: a\n  url: http://h/\n  queue_config: {max_shards: 3}\n"))
	require.NoError(t, err)
	want := DefaultQueueConfig
	want.MaxShards = 3
	require.Equal(t, want, cfg.Upstreams[0].QueueConfig)
}

// A Prometheus remote_write block pastes in unchanged.
func TestPrometheusRemoteWriteBlockPastes(t *testing.T) {
	cfg, err := Load([]byte(`
upstreams:
- name: mimir
  url: https://mimir.example.com/api/v1/push
  remote_timeout: 10s
  headers: {X-Scope-OrgID: t1}
  basic_auth: {username: u, password: p}
  tls_config: {insecure_skip_verify: true}
  write_relabel_configs:
  - {source_labels: [__name__], regex: 'up', action: keep}
  queue_config:
    capacity: 2500
    max_shards: 200
    min_shards: 1
    max_samples_per_send: 500
    batch_send_deadline: 5s
    min_backoff: 30ms
    max_backoff: 100ms
    retry_on_http_429: false
  metadata_config: {send: true, send_interval: 1m}
  send_exemplars: false
`))
	require.NoError(t, err)
	u := cfg.Upstreams[0]
	require.Equal(t, "u", u.HTTPClientConfig.BasicAuth.Username)
	require.True(t, u.HTTPClientConfig.TLSConfig.InsecureSkipVerify)
	require.Equal(t, 200, u.QueueConfig.MaxShards)
	require.False(t, u.QueueConfig.RetryOnRateLimit)
	require.False(t, u.SendExemplars)
}

func TestInvalid(t *testing.T) {
	const ok = "- name: a\n  url: http://h/w\n"
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"unknown top-level key", "upstream: []\n", "field upstream not found"},
		{"unknown upstream key with line", "upstreams:\n- name: a\n  url: http://h/w\n  urls: x\n", "line 4: field urls not found"},
		{"no upstreams", "upstreams: []\n", "upstreams: at least one upstream is required"},
		{"missing name", "upstreams:\n- url: http://h/w\n", "upstreams[0]: name: required"},
		{"bad name", "upstreams:\n- name: 'a/b'\n  url: http://h/w\n", `upstream "a/b": name:`},
		{"duplicate name", "upstreams:\n" + ok + ok, `upstream "a": name: duplicate upstream name`},
		{"missing url", "upstreams:\n- name: a\n", `upstream "a": url: required`},
		{"bad scheme", "upstreams:\n- name: a\n  url: ftp://h/w\n", `upstream "a": url: scheme "ftp"`},
		{"bad protobuf message", "upstreams:\n- name: a\n  url: http://h/w\n  protobuf_message: x\n", `upstream "a": protobuf_message: "x"`},
		{"reserved header", "upstreams:\n- name: a\n  url: http://h/w\n  headers: {content-type: x}\n", `upstream "a": headers: "content-type"`},
		{"bad relabel", "upstreams:\n- name: a\n  url: http://h/w\n  write_relabel_configs: [{action: replace}]\n", `upstream "a": write_relabel_configs[0]: relabel configuration for replace action requires 'target_label'`},
		{"bad relabel regex", "upstreams:\n- name: a\n  url: http://h/w\n  write_relabel_configs: [{regex: '(', action: drop}]\n", "error parsing regexp"},
		{"zero shards", "upstreams:\n- name: a\n  url: http://h/w\n  queue_config: {max_shards: -1}\n", `upstream "a": queue_config.max_shards`},
		{"backoff order", "upstreams:\n- name: a\n  url: http://h/w\n  queue_config: {min_backoff: 1s, max_backoff: 10ms}\n", `queue_config.max_backoff`},
		{"two auth methods", "upstreams:\n- name: a\n  url: http://h/w\n  basic_auth: {username: u}\n  authorization: {credentials: x}\n", "at most one of basic_auth"},
		{"bad external label", "global:\n  external_labels: {a: ''}\nupstreams:\n" + ok, "global.external_labels"},
		{"bad storage", "upstreams:\n- name: a\n  url: http://h/w\n  queue_config: {storage: tape}\n", `upstream "a": queue_config.storage: "tape"`},
		{"small max_bytes", "upstreams:\n- name: a\n  url: http://h/w\n  queue_config: {max_bytes: 1000}\n", `upstream "a": queue_config.max_bytes: must be at least`},
		{"bad full policy", "upstreams:\n- name: a\n  url: http://h/w\n  queue_config: {full_policy: drop_newest}\n", `upstream "a": queue_config.full_policy: "drop_newest"`},
		{"bad receiver limit", "receiver: {max_request_bytes: -1}\nupstreams:\n" + ok, "receiver.max_request_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.yaml))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestLoadFileResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.yml")
	require.NoError(t, os.WriteFile(path, []byte("upstreams:\n- name: a\n  url: http://h/w\n  authorization: {credentials_file: token}\n"), 0o600))
	cfg, err := LoadFile(path)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "token"), cfg.Upstreams[0].HTTPClientConfig.Authorization.CredentialsFile)

	_, err = LoadFile(filepath.Join(dir, "missing.yml"))
	require.ErrorContains(t, err, "read config")
}

func TestUpstreamEqual(t *testing.T) {
	base := func() *UpstreamConfig {
		cfg, err := Load([]byte(`
upstreams:
- name: u
  url: http://example.invalid/api/v1/write
  write_relabel_configs:
  - {source_labels: [a], regex: x.*, action: drop}
`))
		require.NoError(t, err)
		return cfg.Upstreams[0]
	}
	require.True(t, base().Equal(base()), "two loads of the same block")
	for name, change := range map[string]func(*UpstreamConfig){
		"relabel":  func(u *UpstreamConfig) { u.WriteRelabelConfigs[0].Action = "keep" },
		"header":   func(u *UpstreamConfig) { u.Headers = map[string]string{"a": "b"} },
		"shards":   func(u *UpstreamConfig) { u.QueueConfig.MaxShards++ },
		"protocol": func(u *UpstreamConfig) { u.ProtobufMessage = ProtobufMessageV2 },
		"password": func(u *UpstreamConfig) { u.HTTPClientConfig.BearerToken = "secret" },
	} {
		t.Run(name, func(t *testing.T) {
			u := base()
			change(u)
			require.False(t, base().Equal(u))
			require.False(t, u.Equal(base()))
		})
	}
}

func TestTenantHeader(t *testing.T) {
	load := func(h string) error {
		_, err := Load([]byte("upstreams:\n- name: u\n  url: http://example.invalid/\n  tenant_header: \"" + h + "\"\n"))
		return err
	}
	require.NoError(t, load("X-Scope-OrgID"))
	require.ErrorContains(t, load("Content-Type"), "tenant_header")
	require.ErrorContains(t, load("X Scope"), "tenant_header")
}

func TestCloudAuth(t *testing.T) {
	load := func(block string) (*Config, error) {
		return Load([]byte("upstreams:\n- name: amp\n  url: https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write\n" + block))
	}
	cfg, err := load("  sigv4: {region: eu-west-1, access_key: AKID, secret_key: s3cret}\n")
	require.NoError(t, err)
	require.Equal(t, "eu-west-1", cfg.Upstreams[0].SigV4Config.Region)
	_, err = load("  sigv4: {region: eu-west-1}\n  basic_auth: {username: u, password: p}\n")
	require.ErrorContains(t, err, "at most one of")
	_, err = load("  azuread: {cloud: AzurePublic}\n")
	require.ErrorContains(t, err, "azuread: not supported; use oauth2")
	_, err = load("  google_iam: {credentials_file: /x}\n")
	require.ErrorContains(t, err, "google_iam: not supported; use oauth2")
}
