package config

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// DefaultTenantHeader is the header a tenant id is read from, as Mimir,
// Cortex and Loki have it. THANOS-TENANT is accepted too.
const DefaultTenantHeader = "X-Scope-OrgID"

// DefaultTenantsConfig is the tenants section's default.
var DefaultTenantsConfig = TenantsConfig{
	Header: DefaultTenantHeader,
}

// TenantsConfig turns on multi-tenancy: who may write, where each tenant's
// data goes, and each tenant's limits.
type TenantsConfig struct {
	// Header names the request header that carries the tenant id. The
	// THANOS-TENANT header is accepted as well.
	Header string `yaml:"header,omitempty"`
	// Required refuses requests without a known tenant (401); otherwise
	// they are served as DefaultTenant.
	Required bool `yaml:"required,omitempty"`
	// DefaultTenant serves requests without a tenant when not Required;
	// empty means such requests reach every upstream with the global
	// limits and no extra labels.
	DefaultTenant string `yaml:"default_tenant,omitempty"`
	// Tenants lists the known tenants.
	Tenants []*TenantConfig `yaml:"tenants,omitempty"`
}

// UnmarshalYAML applies defaults and decodes strictly.
func (c *TenantsConfig) UnmarshalYAML(unmarshal func(any) error) error {
	*c = DefaultTenantsConfig
	type plain TenantsConfig
	return unmarshal((*plain)(c))
}

// TenantConfig is one tenant.
type TenantConfig struct {
	ID string `yaml:"id"`
	// Upstreams this tenant's data goes to; empty means every upstream.
	Upstreams []string `yaml:"upstreams,omitempty"`
	// ExtraLabels are set on every series of this tenant, replacing what
	// the client sent under those names.
	ExtraLabels labels.Labels `yaml:"extra_labels,omitempty"`
	// BearerTokens and BearerTokenFiles bind credentials to this tenant: a
	// request presenting one is this tenant, whatever header it sends, and a
	// tenant with credentials cannot be claimed by header alone.
	BearerTokens     []commoncfg.Secret `yaml:"bearer_tokens,omitempty"`
	BearerTokenFiles []string           `yaml:"bearer_token_files,omitempty"`
	// BasicAuthUsers maps user names to bcrypt hashes, like the web config
	// file's basic_auth_users.
	BasicAuthUsers map[string]commoncfg.Secret `yaml:"basic_auth_users,omitempty"`
	// Limits override the global limits field by field.
	Limits *LimitsConfig `yaml:"limits,omitempty"`
}

// LimitsConfig bounds what a client may send. Zero means unlimited.
type LimitsConfig struct {
	// SamplesPerSecond and Burst form a token bucket over samples,
	// histograms and exemplars; a request over it gets 429 with Retry-After.
	SamplesPerSecond float64 `yaml:"samples_per_second,omitempty"`
	Burst            int     `yaml:"burst,omitempty"`
	// Request shape limits; a request over one gets 400.
	MaxSeriesPerRequest int `yaml:"max_series_per_request,omitempty"`
	MaxLabelsPerSeries  int `yaml:"max_labels_per_series,omitempty"`
	MaxLabelNameLength  int `yaml:"max_label_name_length,omitempty"`
	MaxLabelValueLength int `yaml:"max_label_value_length,omitempty"`
	// MaxInflightRequests caps concurrent write requests; more get 503.
	MaxInflightRequests int `yaml:"max_inflight_requests,omitempty"`
}

// Merge returns l with every non-zero field of o replacing l's.
func (l LimitsConfig) Merge(o *LimitsConfig) LimitsConfig {
	if o == nil {
		return l
	}
	if o.SamplesPerSecond != 0 {
		l.SamplesPerSecond = o.SamplesPerSecond
	}
	if o.Burst != 0 {
		l.Burst = o.Burst
	}
	if o.MaxSeriesPerRequest != 0 {
		l.MaxSeriesPerRequest = o.MaxSeriesPerRequest
	}
	if o.MaxLabelsPerSeries != 0 {
		l.MaxLabelsPerSeries = o.MaxLabelsPerSeries
	}
	if o.MaxLabelNameLength != 0 {
		l.MaxLabelNameLength = o.MaxLabelNameLength
	}
	if o.MaxLabelValueLength != 0 {
		l.MaxLabelValueLength = o.MaxLabelValueLength
	}
	if o.MaxInflightRequests != 0 {
		l.MaxInflightRequests = o.MaxInflightRequests
	}
	return l
}

func (l *LimitsConfig) validate() error {
	switch {
	case l.SamplesPerSecond < 0:
		return errors.New("samples_per_second: must not be negative")
	case l.Burst < 0:
		return errors.New("burst: must not be negative")
	case l.SamplesPerSecond > 0 && l.Burst == 0:
		return errors.New("burst: required with samples_per_second (at least one request's samples)")
	case l.MaxSeriesPerRequest < 0, l.MaxLabelsPerSeries < 0, l.MaxLabelNameLength < 0, l.MaxLabelValueLength < 0, l.MaxInflightRequests < 0:
		return errors.New("max_*: must not be negative")
	}
	return nil
}

var tenantIDRE = regexp.MustCompile(`^[A-Za-z0-9!._*'()-]{1,150}$`)

// ValidTenantID reports whether id is a valid tenant id: 1 to 150 of the
// characters Mimir allows.
func ValidTenantID(id string) bool { return tenantIDRE.MatchString(id) }

func (c *Config) validateTenants() error {
	if err := c.Limits.validate(); err != nil {
		return fmt.Errorf("limits.%w", err)
	}
	t := c.Tenants
	if t == nil {
		return nil
	}
	if t.Header == "" || http.CanonicalHeaderKey(t.Header) == "" {
		return errors.New("tenants.header: required")
	}
	upstreams := map[string]bool{}
	for _, u := range c.Upstreams {
		upstreams[u.Name] = true
	}
	ids := map[string]bool{}
	tokens := map[string]string{}
	users := map[string]string{}
	for i, tc := range t.Tenants {
		if tc == nil {
			return fmt.Errorf("tenants.tenants[%d]: empty entry", i)
		}
		where := fmt.Sprintf("tenant %q", tc.ID)
		if !ValidTenantID(tc.ID) {
			return fmt.Errorf("tenants.tenants[%d].id: %q must match %s", i, tc.ID, tenantIDRE)
		}
		if ids[tc.ID] {
			return fmt.Errorf("%s: id: duplicate tenant", where)
		}
		ids[tc.ID] = true
		for _, u := range tc.Upstreams {
			if !upstreams[u] {
				return fmt.Errorf("%s: upstreams: no upstream named %q", where, u)
			}
		}
		if err := tc.ExtraLabels.Validate(func(l labels.Label) error {
			if !model.UTF8Validation.IsValidLabelName(l.Name) || l.Value == "" {
				return fmt.Errorf("%s: extra_labels: %q=%q is not a valid label", where, l.Name, l.Value)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, tok := range tc.BearerTokens {
			if tok == "" {
				return fmt.Errorf("%s: bearer_tokens: empty token", where)
			}
			if other, ok := tokens[string(tok)]; ok {
				return fmt.Errorf("%s: bearer_tokens: a token is also bound to tenant %q", where, other)
			}
			tokens[string(tok)] = tc.ID
		}
		for user := range tc.BasicAuthUsers {
			if other, ok := users[user]; ok {
				return fmt.Errorf("%s: basic_auth_users: user %q is also bound to tenant %q", where, user, other)
			}
			users[user] = tc.ID
		}
		if tc.Limits != nil {
			if err := tc.Limits.validate(); err != nil {
				return fmt.Errorf("%s: limits.%w", where, err)
			}
		}
	}
	if t.DefaultTenant != "" && !ids[t.DefaultTenant] {
		return fmt.Errorf("tenants.default_tenant: no tenant %q", t.DefaultTenant)
	}
	if t.Required && t.DefaultTenant != "" {
		return errors.New("tenants.default_tenant: cannot be set when tenants.required is true")
	}
	return nil
}

// SetDirectory resolves relative token files against dir.
func (c *TenantsConfig) SetDirectory(dir string) {
	if c == nil {
		return
	}
	for _, t := range c.Tenants {
		for i, f := range t.BearerTokenFiles {
			t.BearerTokenFiles[i] = commoncfg.JoinDir(dir, f)
		}
	}
}
