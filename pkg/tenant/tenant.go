// Package tenant tells which tenant a write request belongs to, enforces
// that tenant's limits, adds its labels, and names the upstreams its data
// may reach.
//
// A Set is built from the configuration at start and at every reload; the
// Guard that serves requests holds the current Set and swaps it atomically.
// Rate limiters and in-flight counters live on a tenant's state, which a
// reload carries over by tenant id, so a reload neither resets a tenant's
// rate nor forgets its in-flight requests.
package tenant

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/rwgateway/gateway/config"
)

// ThanosTenantHeader is accepted as a tenant header besides the configured one.
const ThanosTenantHeader = "THANOS-TENANT"

// UnknownLabel is the tenant label value for tenant ids that are not
// configured.
const UnknownLabel = "unknown"

// Tenant is one tenant as a request sees it. It is immutable but for its
// runtime state, which is safe for concurrent use.
type Tenant struct {
	// ID is the tenant id; "" for requests without a tenant.
	ID string
	// upstreams is nil when the tenant reaches every upstream.
	upstreams   map[string]bool
	extraLabels labels.Labels
	limits      config.LimitsConfig
	credentials bool
	state       *state
}

// Routes reports whether the tenant's data may go to upstream.
func (t *Tenant) Routes(upstream string) bool {
	return t.upstreams == nil || t.upstreams[upstream]
}

// state is what a tenant keeps across reloads.
type state struct {
	// limiter is nil when unlimited. It is swapped atomically: a reload
	// may change it while requests of the previous Set still use it.
	limiter  atomic.Pointer[rate.Limiter]
	inflight atomic.Int64
}

// Set is the tenants of one configuration.
type Set struct {
	enabled   bool
	header    string
	required  bool
	byID      map[string]*Tenant
	byToken   map[[sha256.Size]byte]*Tenant
	byUser    map[string]userBinding
	dflt      *Tenant // requests without a tenant
	authCache *authCache
}

type userBinding struct {
	tenant *Tenant
	hash   []byte
}

// NewSet builds the tenants of cfg. prev, if not nil, is the Set being
// replaced: tenants keep their limiter and in-flight state by id.
func NewSet(cfg *config.Config, prev *Set) (*Set, error) {
	s := &Set{
		byID:      map[string]*Tenant{},
		byToken:   map[[sha256.Size]byte]*Tenant{},
		byUser:    map[string]userBinding{},
		authCache: &authCache{ok: map[[sha256.Size]byte]bool{}},
	}
	s.dflt = s.newTenant("", nil, labels.EmptyLabels(), cfg.Limits, false, prev)
	tc := cfg.Tenants
	if tc == nil {
		return s, nil
	}
	s.enabled = true
	s.header = tc.Header
	s.required = tc.Required
	for _, c := range tc.Tenants {
		limits := cfg.Limits.Merge(c.Limits)
		creds := len(c.BearerTokens)+len(c.BearerTokenFiles)+len(c.BasicAuthUsers) > 0
		t := s.newTenant(c.ID, c.Upstreams, c.ExtraLabels, limits, creds, prev)
		s.byID[c.ID] = t
		for _, tok := range c.BearerTokens {
			s.byToken[sha256.Sum256([]byte(tok))] = t
		}
		for _, f := range c.BearerTokenFiles {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("tenant %q: bearer_token_files: %w", c.ID, err)
			}
			tok := strings.TrimSpace(string(b))
			if tok == "" {
				return nil, fmt.Errorf("tenant %q: bearer_token_files: %s is empty", c.ID, f)
			}
			s.byToken[sha256.Sum256([]byte(tok))] = t
		}
		for user, hash := range c.BasicAuthUsers {
			s.byUser[user] = userBinding{tenant: t, hash: []byte(hash)}
		}
	}
	if tc.DefaultTenant != "" {
		s.dflt = s.byID[tc.DefaultTenant]
	}
	return s, nil
}

func (s *Set) newTenant(id string, upstreams []string, extra labels.Labels, limits config.LimitsConfig, creds bool, prev *Set) *Tenant {
	t := &Tenant{ID: id, extraLabels: extra, limits: limits, credentials: creds}
	if len(upstreams) > 0 {
		t.upstreams = map[string]bool{}
		for _, u := range upstreams {
			t.upstreams[u] = true
		}
	}
	if prev != nil {
		if old := prev.lookup(id); old != nil {
			t.state = old.state
		}
	}
	if t.state == nil {
		t.state = &state{}
	}
	l := t.state.limiter.Load()
	switch {
	case limits.SamplesPerSecond <= 0:
		t.state.limiter.Store(nil)
	case l == nil:
		t.state.limiter.Store(rate.NewLimiter(rate.Limit(limits.SamplesPerSecond), limits.Burst))
	default:
		// Only a changed limit is set: setting advances the bucket to now.
		if l.Limit() != rate.Limit(limits.SamplesPerSecond) {
			l.SetLimit(rate.Limit(limits.SamplesPerSecond))
		}
		if l.Burst() != limits.Burst {
			l.SetBurst(limits.Burst)
		}
	}
	return t
}

func (s *Set) lookup(id string) *Tenant {
	if id == "" {
		return s.dflt
	}
	return s.byID[id]
}

// IDs returns the configured tenant ids.
func (s *Set) IDs() []string {
	ids := make([]string, 0, len(s.byID))
	for id := range s.byID {
		ids = append(ids, id)
	}
	return ids
}

// Errors of Resolve.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrForbidden       = errors.New("forbidden")
)

// Resolve returns the tenant of r. Credentials bound to a tenant decide; a
// tenant header may only name that same tenant. Without bound credentials
// the header decides, unless it names a tenant that has credentials. The
// errors wrap ErrUnauthenticated (401) or ErrForbidden (403); label is the
// tenant label value to count the refusal under.
func (s *Set) Resolve(r *http.Request) (t *Tenant, label string, err error) {
	if !s.enabled {
		return s.dflt, "", nil
	}
	id := r.Header.Get(s.header)
	if id == "" {
		id = r.Header.Get(ThanosTenantHeader)
	}
	byCreds, err := s.fromCredentials(r)
	if err != nil {
		return nil, s.label(id), err
	}
	if byCreds != nil {
		if id != "" && id != byCreds.ID {
			return nil, byCreds.ID, fmt.Errorf("%w: the credentials are those of another tenant than %q", ErrForbidden, truncate(id))
		}
		return byCreds, byCreds.ID, nil
	}
	if id != "" {
		t := s.byID[id]
		switch {
		case t == nil:
			return nil, UnknownLabel, fmt.Errorf("%w: unknown tenant %q", ErrUnauthenticated, truncate(id))
		case t.credentials:
			return nil, id, fmt.Errorf("%w: tenant %q requires its credentials", ErrUnauthenticated, id)
		}
		return t, id, nil
	}
	if s.required {
		return nil, "", fmt.Errorf("%w: no tenant: set the %s header", ErrUnauthenticated, s.header)
	}
	return s.dflt, s.dflt.ID, nil
}

func (s *Set) label(id string) string {
	if _, ok := s.byID[id]; ok || id == "" {
		return id
	}
	return UnknownLabel
}

// fromCredentials returns the tenant bound to r's credentials, nil if r
// presents none that are bound (they may be for the web config's own basic
// auth), or an error for a bound user with a wrong password.
func (s *Set) fromCredentials(r *http.Request) (*Tenant, error) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && len(s.byToken) > 0 {
		if t := s.byToken[sha256.Sum256([]byte(strings.TrimSpace(tok)))]; t != nil {
			return t, nil
		}
		return nil, nil
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		return nil, nil
	}
	b, ok := s.byUser[user]
	if !ok {
		return nil, nil
	}
	if !s.authCache.check(user, pass, b.hash) {
		return nil, fmt.Errorf("%w: wrong password for user %q", ErrUnauthenticated, truncate(user))
	}
	return b.tenant, nil
}

// authCache remembers good user and password pairs: bcrypt costs tens of
// milliseconds by design, too much for every write request. Only successes
// are kept, by a hash of user, password and bcrypt hash, so a changed
// password in the config invalidates them.
type authCache struct {
	mu sync.Mutex
	ok map[[sha256.Size]byte]bool
}

// maxAuthCache bounds the cache; it is cleared when full.
const maxAuthCache = 1024

func (c *authCache) check(user, pass string, hash []byte) bool {
	key := sha256.Sum256([]byte(user + "\x00" + pass + "\x00" + string(hash)))
	c.mu.Lock()
	hit := c.ok[key]
	c.mu.Unlock()
	if hit {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	c.mu.Lock()
	if len(c.ok) >= maxAuthCache {
		clear(c.ok)
	}
	c.ok[key] = true
	c.mu.Unlock()
	return true
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

type ctxKey struct{}

// NewContext returns ctx carrying t.
func NewContext(ctx context.Context, t *Tenant) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the tenant in ctx, or nil.
func FromContext(ctx context.Context) *Tenant {
	t, _ := ctx.Value(ctxKey{}).(*Tenant)
	return t
}
