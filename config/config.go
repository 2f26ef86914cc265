// Package config defines the gateway's configuration file: its types, their
// defaults, strict YAML decoding and validation.
//
// Each entry of upstreams mirrors a Prometheus remote_write block, so users
// can paste what they already have. The Prometheus config package itself is
// not imported: it pulls in every service-discovery SDK.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/sigv4"
	"go.yaml.in/yaml/v2"
)

// Values of queue_config.storage.
const (
	// StorageDisk queues on disk under --storage.path; the default.
	StorageDisk = "disk"
	// StorageMemory queues in memory only: a crash loses what is queued.
	StorageMemory = "memory"
)

// Values of queue_config.full_policy.
const (
	// FullPolicyBlock refuses requests (503) while the disk queue is full.
	FullPolicyBlock = "block"
	// FullPolicyDropOldest deletes the oldest queued data to make room.
	FullPolicyDropOldest = "drop_oldest"
)

// minQueueMaxBytes is the smallest queue_config.max_bytes accepted.
const minQueueMaxBytes = 1 << 20

// Protobuf messages an upstream can be sent.
const (
	ProtobufMessageV1 = "prometheus.WriteRequest"
	ProtobufMessageV2 = "io.prometheus.write.v2.Request"
)

var (
	// DefaultReceiverConfig is the receiver section's default.
	DefaultReceiverConfig = ReceiverConfig{
		// 32 MiB: the decoded-size limit Prometheus, Mimir and Thanos apply,
		// used for the compressed body too (snappy never compresses below
		// its input by much on random data, and never expands much above).
		MaxRequestBytes: 32 << 20,
		// 32 MiB decoded, as Prometheus's write handler.
		MaxDecodedBytes: 32 << 20,
	}

	// DefaultUpstreamConfig is an upstream's default: Prometheus's own
	// remote_write defaults, except that exemplars and native histograms are
	// forwarded (a gateway forwards what its clients chose to send).
	DefaultUpstreamConfig = UpstreamConfig{
		ProtobufMessage:      ProtobufMessageV1,
		RemoteTimeout:        model.Duration(30 * time.Second),
		SendExemplars:        true,
		SendNativeHistograms: true,
		QueueConfig:          DefaultQueueConfig,
		MetadataConfig:       DefaultMetadataConfig,
		HTTPClientConfig:     commoncfg.DefaultHTTPClientConfig,
	}

	// DefaultQueueConfig is an upstream queue's default: Prometheus's
	// remote_write queue_config defaults, plus the gateway's byte cap.
	DefaultQueueConfig = QueueConfig{
		// Samples buffered per shard in use.
		Capacity: 10000,
		// Parallel senders at most, each with its own connection.
		MaxShards: 50,
		// Parallel senders at least; their number follows the load.
		MinShards: 1,
		// Samples per outgoing request.
		MaxSamplesPerSend: 2000,
		// A batch that is not full is sent after this long.
		BatchSendDeadline: model.Duration(5 * time.Second),
		// Retry backoff starts here and doubles up to MaxBackoff.
		MinBackoff: model.Duration(30 * time.Millisecond),
		MaxBackoff: model.Duration(5 * time.Second),
		// 429 is retried (Prometheus's default since 2.x).
		RetryOnRateLimit: true,
		// Uncompressed protobuf bytes per outgoing request at most: far under
		// the 32 MiB that receivers accept decoded.
		MaxBytesPerSend: 4 << 20,
		// Bytes of queued data held in memory at most, whatever the shards.
		MaxMemoryBytes: 64 << 20,
		// Queued on disk under --storage.path (when the flag is not empty).
		Storage: StorageDisk,
		// 1 GiB of segment files per upstream: about 25 minutes of 100k
		// samples/s at the ~400 bytes/sample of typical series.
		MaxBytes: 1 << 30,
		// A full disk queue refuses requests (503); nothing is lost.
		FullPolicy: FullPolicyBlock,
	}

	// DefaultMetadataConfig forwards metadata.
	DefaultMetadataConfig = MetadataConfig{
		Send:              true,
		SendInterval:      model.Duration(time.Minute),
		MaxSamplesPerSend: 2000,
	}
)

// Config is the whole configuration file.
type Config struct {
	Global    GlobalConfig      `yaml:"global,omitempty"`
	Receiver  ReceiverConfig    `yaml:"receiver,omitempty"`
	Upstreams []*UpstreamConfig `yaml:"upstreams"`
	// Limits are the default limits of every client (tenants override them).
	Limits LimitsConfig `yaml:"limits,omitempty"`
	// Tenants, when present, turns on multi-tenancy.
	Tenants *TenantsConfig `yaml:"tenants,omitempty"`

	// Hash is the SHA-256 of the file's bytes, hex-encoded.
	Hash string `yaml:"-"`
}

// GlobalConfig holds settings for every upstream.
type GlobalConfig struct {
	// ExternalLabels are added to every forwarded series that lacks them.
	ExternalLabels labels.Labels `yaml:"external_labels,omitempty"`
}

// ReceiverConfig configures the write endpoint.
type ReceiverConfig struct {
	// MaxRequestBytes caps the compressed body (413 above).
	MaxRequestBytes int64 `yaml:"max_request_bytes,omitempty"`
	// MaxDecodedBytes caps the snappy-decoded body (400 above), checked
	// before anything is allocated for it.
	MaxDecodedBytes int64 `yaml:"max_decoded_bytes,omitempty"`
}

// UnmarshalYAML applies defaults and decodes strictly.
func (c *ReceiverConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultReceiverConfig
	type plain ReceiverConfig
	return unmarshal((*plain)(c))
}

// UpstreamConfig is one upstream: a Prometheus remote_write block.
type UpstreamConfig struct {
	Name            string            `yaml:"name"`
	URL             *commoncfg.URL    `yaml:"url"`
	ProtobufMessage string            `yaml:"protobuf_message,omitempty"`
	RemoteTimeout   model.Duration    `yaml:"remote_timeout,omitempty"`
	Headers         map[string]string `yaml:"headers,omitempty"`
	// TenantHeader, when set (e.g. X-Scope-OrgID), sends every request
	// with the id of the tenant whose data it holds in this header; the
	// data of different tenants is never in one request.
	TenantHeader         string            `yaml:"tenant_header,omitempty"`
	WriteRelabelConfigs  []*relabel.Config `yaml:"write_relabel_configs,omitempty"`
	SendExemplars        bool              `yaml:"send_exemplars"`
	SendNativeHistograms bool              `yaml:"send_native_histograms"`
	// RoundRobinDNS is accepted for compatibility and has no effect yet.
	RoundRobinDNS  bool           `yaml:"round_robin_dns,omitempty"`
	QueueConfig    QueueConfig    `yaml:"queue_config,omitempty"`
	MetadataConfig MetadataConfig `yaml:"metadata_config,omitempty"`

	// SigV4Config signs requests with AWS Signature Version 4, for Amazon
	// Managed Prometheus, as in Prometheus.
	SigV4Config *sigv4.SigV4Config `yaml:"sigv4,omitempty"`
	// AzureAD and GoogleIAM are Prometheus's, refused with what to use
	// instead (see validate).
	AzureAD   map[string]any `yaml:"azuread,omitempty"`
	GoogleIAM map[string]any `yaml:"google_iam,omitempty"`

	// HTTPClientConfig holds basic_auth, authorization, oauth2, tls_config,
	// proxy_url, follow_redirects and enable_http2, as in Prometheus.
	HTTPClientConfig commoncfg.HTTPClientConfig `yaml:",inline"`
}

// UnmarshalYAML applies defaults and decodes strictly.
func (c *UpstreamConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultUpstreamConfig
	type plain UpstreamConfig
	return unmarshal((*plain)(c))
}

// QueueConfig is an upstream's queue_config.
type QueueConfig struct {
	Capacity          int            `yaml:"capacity,omitempty"`
	MaxShards         int            `yaml:"max_shards,omitempty"`
	MinShards         int            `yaml:"min_shards,omitempty"`
	MaxSamplesPerSend int            `yaml:"max_samples_per_send,omitempty"`
	BatchSendDeadline model.Duration `yaml:"batch_send_deadline,omitempty"`
	MinBackoff        model.Duration `yaml:"min_backoff,omitempty"`
	MaxBackoff        model.Duration `yaml:"max_backoff,omitempty"`
	RetryOnRateLimit  bool           `yaml:"retry_on_http_429"`
	// SampleAgeLimit drops samples older than this instead of sending them;
	// 0 sends every sample whatever its age.
	SampleAgeLimit model.Duration `yaml:"sample_age_limit,omitempty"`
	// MaxBytesPerSend is the gateway's own: uncompressed bytes per request.
	MaxBytesPerSend int `yaml:"max_bytes_per_send,omitempty"`
	// MaxMemoryBytes is the gateway's own: the bytes of queued data the
	// upstream holds in memory at most, in batches in flight included; a
	// memory queue past it refuses requests, a disk queue's reader waits.
	MaxMemoryBytes int64 `yaml:"max_memory_bytes,omitempty"`
	// Storage is the gateway's own: "disk" (under --storage.path, the
	// default) or "memory". With an empty --storage.path every queue is in
	// memory.
	Storage string `yaml:"storage,omitempty"`
	// MaxBytes is the gateway's own: the size of the disk queue's files at
	// most.
	MaxBytes int64 `yaml:"max_bytes,omitempty"`
	// FullPolicy is the gateway's own: what a full disk queue does, "block"
	// (refuse requests with 503) or "drop_oldest".
	FullPolicy string `yaml:"full_policy,omitempty"`
}

// OnDisk reports whether the queue is configured for disk storage.
func (c *QueueConfig) OnDisk() bool { return c.Storage == StorageDisk }

// UnmarshalYAML applies defaults and decodes strictly.
func (c *QueueConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultQueueConfig
	type plain QueueConfig
	return unmarshal((*plain)(c))
}

// MetadataConfig is an upstream's metadata_config. The gateway forwards the
// metadata its clients send, with their samples; SendInterval and
// MaxSamplesPerSend are accepted for compatibility.
type MetadataConfig struct {
	Send              bool           `yaml:"send"`
	SendInterval      model.Duration `yaml:"send_interval,omitempty"`
	MaxSamplesPerSend int            `yaml:"max_samples_per_send,omitempty"`
}

// UnmarshalYAML applies defaults and decodes strictly.
func (c *MetadataConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultMetadataConfig
	type plain MetadataConfig
	return unmarshal((*plain)(c))
}

// UnmarshalYAML applies defaults and decodes strictly.
func (c *Config) UnmarshalYAML(unmarshal func(any) error) error {
	*c = Config{Receiver: DefaultReceiverConfig}
	type plain Config
	return unmarshal((*plain)(c))
}

var upstreamNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// reservedHeaders are set by the gateway on every upstream request.
var reservedHeaders = map[string]bool{
	"Authorization":                     true,
	"Content-Encoding":                  true,
	"Content-Type":                      true,
	"User-Agent":                        true,
	"X-Prometheus-Remote-Write-Version": true,
	"Retry-Attempt":                     true,
}

// Validate checks c and fills derived values. Errors name the upstream and
// the YAML key.
func (c *Config) Validate() error {
	if err := c.Global.ExternalLabels.Validate(func(l labels.Label) error {
		if !model.UTF8Validation.IsValidLabelName(l.Name) {
			return fmt.Errorf("global.external_labels: %q is not a valid label name", l.Name)
		}
		if l.Value == "" {
			return fmt.Errorf("global.external_labels: %q has an empty value", l.Name)
		}
		return nil
	}); err != nil {
		return err
	}
	if c.Receiver.MaxRequestBytes <= 0 {
		return errors.New("receiver.max_request_bytes: must be positive")
	}
	if c.Receiver.MaxDecodedBytes <= 0 {
		return errors.New("receiver.max_decoded_bytes: must be positive")
	}
	if len(c.Upstreams) == 0 {
		return errors.New("upstreams: at least one upstream is required")
	}
	seen := map[string]bool{}
	for i, u := range c.Upstreams {
		if u == nil {
			return fmt.Errorf("upstreams[%d]: empty entry", i)
		}
		where := fmt.Sprintf("upstreams[%d]", i)
		if u.Name != "" {
			where = fmt.Sprintf("upstream %q", u.Name)
		}
		if err := u.validate(); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if seen[u.Name] {
			return fmt.Errorf("%s: name: duplicate upstream name", where)
		}
		seen[u.Name] = true
	}
	return c.validateTenants()
}

func (u *UpstreamConfig) validate() error {
	if u.Name == "" {
		return errors.New("name: required (it names the upstream's metrics and queue directory)")
	}
	if !upstreamNameRE.MatchString(u.Name) {
		return fmt.Errorf("name: %q must match %s", u.Name, upstreamNameRE)
	}
	if u.URL == nil || u.URL.URL == nil {
		return errors.New("url: required")
	}
	if u.URL.Scheme != "http" && u.URL.Scheme != "https" {
		return fmt.Errorf("url: scheme %q must be http or https", u.URL.Scheme)
	}
	if u.URL.Host == "" {
		return errors.New("url: host is missing")
	}
	switch u.ProtobufMessage {
	case ProtobufMessageV1, ProtobufMessageV2:
	default:
		return fmt.Errorf("protobuf_message: %q must be %q or %q", u.ProtobufMessage, ProtobufMessageV1, ProtobufMessageV2)
	}
	if u.RemoteTimeout <= 0 {
		return errors.New("remote_timeout: must be positive")
	}
	for name := range u.Headers {
		if reservedHeaders[http.CanonicalHeaderKey(name)] {
			return fmt.Errorf("headers: %q is set by the gateway and cannot be configured", name)
		}
		if strings.TrimSpace(name) == "" {
			return errors.New("headers: empty header name")
		}
	}
	if u.AzureAD != nil {
		return errors.New("azuread: not supported; use oauth2 with Azure AD's client credentials (token_url https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token, scopes [https://monitor.azure.com/.default])")
	}
	if u.GoogleIAM != nil {
		return errors.New("google_iam: not supported; use oauth2, or authorization with a credentials_file the GKE metadata server or a sidecar refreshes")
	}
	if u.SigV4Config != nil {
		h := &u.HTTPClientConfig
		if h.BasicAuth != nil || h.Authorization != nil || h.OAuth2 != nil || h.BearerToken != "" || h.BearerTokenFile != "" {
			return errors.New("sigv4: at most one of basic_auth, authorization, oauth2 and sigv4 may be configured")
		}
		if err := u.SigV4Config.Validate(); err != nil {
			return fmt.Errorf("sigv4: %w", err)
		}
	}
	if h := u.TenantHeader; h != "" && (reservedHeaders[http.CanonicalHeaderKey(h)] || strings.TrimSpace(h) != h || strings.ContainsAny(h, " :\r\n")) {
		return fmt.Errorf("tenant_header: %q is not a header the gateway may set", h)
	}
	for i, rc := range u.WriteRelabelConfigs {
		if rc == nil {
			return fmt.Errorf("write_relabel_configs[%d]: empty entry", i)
		}
		if err := rc.Validate(model.UTF8Validation); err != nil {
			return fmt.Errorf("write_relabel_configs[%d]: %w", i, err)
		}
	}
	if err := u.HTTPClientConfig.Validate(); err != nil {
		return err
	}
	q := u.QueueConfig
	switch {
	case q.Capacity <= 0:
		return errors.New("queue_config.capacity: must be positive")
	case q.MaxShards <= 0:
		return errors.New("queue_config.max_shards: must be positive")
	case q.MinShards <= 0 || q.MinShards > q.MaxShards:
		return errors.New("queue_config.min_shards: must be between 1 and max_shards")
	case q.MaxSamplesPerSend <= 0:
		return errors.New("queue_config.max_samples_per_send: must be positive")
	case q.BatchSendDeadline <= 0:
		return errors.New("queue_config.batch_send_deadline: must be positive")
	case q.MinBackoff <= 0:
		return errors.New("queue_config.min_backoff: must be positive")
	case q.MaxBackoff < q.MinBackoff:
		return errors.New("queue_config.max_backoff: must not be below min_backoff")
	case q.SampleAgeLimit < 0:
		return errors.New("queue_config.sample_age_limit: must not be negative")
	case q.MaxBytesPerSend < 1024:
		return errors.New("queue_config.max_bytes_per_send: must be at least 1024")
	case q.MaxMemoryBytes < int64(q.MaxBytesPerSend):
		return errors.New("queue_config.max_memory_bytes: must be at least max_bytes_per_send")
	case q.Storage != StorageDisk && q.Storage != StorageMemory:
		return fmt.Errorf("queue_config.storage: %q must be %q or %q", q.Storage, StorageDisk, StorageMemory)
	case q.MaxBytes < minQueueMaxBytes:
		return fmt.Errorf("queue_config.max_bytes: must be at least %d (1 MiB)", minQueueMaxBytes)
	case q.FullPolicy != FullPolicyBlock && q.FullPolicy != FullPolicyDropOldest:
		return fmt.Errorf("queue_config.full_policy: %q must be %q or %q", q.FullPolicy, FullPolicyBlock, FullPolicyDropOldest)
	}
	return nil
}

// Load parses and validates a configuration from YAML bytes. Unknown keys
// are errors.
func Load(b []byte) (*Config, error) {
	cfg := &Config{}
	if err := yaml.UnmarshalStrict(b, cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	cfg.Hash = hex.EncodeToString(sum[:])
	return cfg, nil
}

// LoadFile parses and validates the configuration file at path. Relative
// file paths inside (credentials, TLS files) are resolved against the
// file's directory.
func LoadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Load(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for _, u := range cfg.Upstreams {
		u.HTTPClientConfig.SetDirectory(dir)
	}
	cfg.Tenants.SetDirectory(dir)
	return cfg, nil
}

// SendsV2 reports whether u is sent remote write 2.0.
func (u *UpstreamConfig) SendsV2() bool { return u.ProtobufMessage == ProtobufMessageV2 }

// Equal reports whether u and o configure the same upstream, so that a
// reload can keep its forwarder, queue and connections. Relabel configs
// are compared by their YAML, since they hold compiled regexps; everything
// else, secrets included, field by field.
func (u *UpstreamConfig) Equal(o *UpstreamConfig) bool {
	cu, co := *u, *o
	cu.WriteRelabelConfigs, co.WriteRelabelConfigs = nil, nil
	if !reflect.DeepEqual(cu, co) {
		return false
	}
	yu, errU := yaml.Marshal(u.WriteRelabelConfigs)
	yo, errO := yaml.Marshal(o.WriteRelabelConfigs)
	return errU == nil && errO == nil && string(yu) == string(yo)
}
