// Package loadgen sends realistic Prometheus remote write to a URL at a
// fixed rate or as fast as it is accepted, and reports what was accepted
// and how fast. It is the engine of cmd/rwload and of bench/compare.
//
// A load is every series once per round, split into requests of a fixed
// number of samples (one sample per series per request). The requests are
// marshalled once before the load (NewPayloads); during it a single encoder
// goroutine writes each round's values and a fresh timestamp into them and
// snappy-compresses them, a few requests ahead of the senders (Run). Every
// series' timestamps thus strictly increase, so a TSDB upstream
// (Prometheus) stores every round rather than rejecting repeats.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"
)

// Protocol is a remote-write protocol version.
type Protocol int

const (
	// ProtoV1 is remote write 1.0 (prometheus.WriteRequest).
	ProtoV1 Protocol = iota
	// ProtoV2 is remote write 2.0 (io.prometheus.write.v2.Request).
	ProtoV2
)

// String returns "1.0" or "2.0".
func (p Protocol) String() string {
	if p == ProtoV2 {
		return "2.0"
	}
	return "1.0"
}

// ParseProtocol parses "1.0"/"1" or "2.0"/"2".
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "1.0", "1":
		return ProtoV1, nil
	case "2.0", "2":
		return ProtoV2, nil
	}
	return 0, fmt.Errorf("protocol %q: want 1.0 or 2.0", s)
}

// Timestamp modes.
const (
	// TimestampsAdvance re-encodes every request with a fresh timestamp (the
	// default): every sample is new to a TSDB.
	TimestampsAdvance = "advance"
	// TimestampsRepeat compresses every request once and resends the same
	// bytes each round: no encoding cost during the load, but a TSDB
	// upstream rejects every round after the first as duplicates.
	TimestampsRepeat = "repeat"
)

// Defaults of Config's fields, which cmd/rwload's flags use too.
const (
	DefaultSeries            = 100_000
	DefaultFamilies          = 1
	DefaultSamplesPerRequest = 2000
	DefaultConcurrency       = 4
	DefaultDuration          = 30 * time.Second
	DefaultTimeout           = 30 * time.Second
	DefaultProgressInterval  = 5 * time.Second
)

// Config describes one load. Zero fields mean the documented defaults where
// there is one; Validate reports the rest.
type Config struct {
	// URL is the remote-write endpoint, e.g. http://127.0.0.1:9201/api/v1/write.
	URL string
	// Protocol of the requests.
	Protocol Protocol
	// Series is the number of distinct series (default 100000).
	Series int
	// Families is the number of metric families the series are spread
	// over (default 1; see SeriesLabels).
	Families int
	// SamplesPerRequest (default 2000): one sample per series per request,
	// so at most Series.
	SamplesPerRequest int
	// Concurrency is the number of senders, each with its own keep-alive
	// connection (default 4).
	Concurrency int
	// Rate is the offered load in samples per second; 0 sends as fast as
	// the target accepts.
	Rate float64
	// Duration bounds the load; Requests, if positive, bounds the number of
	// requests sent. The load stops at the first bound reached; requests in
	// flight then are awaited. Both zero mean a Duration of 30s.
	Duration time.Duration
	Requests int64
	// Timestamps is TimestampsAdvance (default) or TimestampsRepeat.
	Timestamps string
	// Timeout of one request (default 30s).
	Timeout time.Duration
	// AllowRemote allows a target that is not a loopback address.
	AllowRemote bool
	// Progress, if not nil, gets a progress line every ProgressInterval
	// (default 5s).
	Progress         io.Writer
	ProgressInterval time.Duration
	// UserAgent defaults to "rwload".
	UserAgent string
}

func (c *Config) applyDefaults() {
	if c.Series == 0 {
		c.Series = DefaultSeries
	}
	if c.Families == 0 {
		c.Families = DefaultFamilies
	}
	if c.SamplesPerRequest == 0 {
		c.SamplesPerRequest = DefaultSamplesPerRequest
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Duration == 0 && c.Requests == 0 {
		c.Duration = DefaultDuration
	}
	if c.Timestamps == "" {
		c.Timestamps = TimestampsAdvance
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.UserAgent == "" {
		c.UserAgent = "rwload"
	}
}

// Validate fills in defaults and checks c, except for the target's address
// (see CheckTarget).
func (c *Config) Validate() error {
	c.applyDefaults()
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("url: required")
	case err != nil:
		return fmt.Errorf("url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("url %q: scheme must be http or https", c.URL)
	case u.Host == "":
		return fmt.Errorf("url %q: no host", c.URL)
	case c.Protocol != ProtoV1 && c.Protocol != ProtoV2:
		return fmt.Errorf("protocol: unknown value %d", c.Protocol)
	case c.Series < 0:
		return fmt.Errorf("series: must be positive, got %d", c.Series)
	case c.Families < 0:
		return fmt.Errorf("families: must be positive, got %d", c.Families)
	case c.SamplesPerRequest < 0:
		return fmt.Errorf("samples-per-request: must be positive, got %d", c.SamplesPerRequest)
	case c.SamplesPerRequest > c.Series:
		return fmt.Errorf("samples-per-request (%d) must not exceed series (%d): a request holds one sample per series", c.SamplesPerRequest, c.Series)
	case c.Concurrency < 0:
		return fmt.Errorf("concurrency: must be positive, got %d", c.Concurrency)
	case c.Rate < 0:
		return fmt.Errorf("rate: must be 0 (as fast as accepted) or positive, got %g", c.Rate)
	case c.Duration < 0:
		return fmt.Errorf("duration: must not be negative, got %v", c.Duration)
	case c.Requests < 0:
		return fmt.Errorf("requests: must not be negative, got %d", c.Requests)
	case c.Timestamps != TimestampsAdvance && c.Timestamps != TimestampsRepeat:
		return fmt.Errorf("timestamps: %q, want %s or %s", c.Timestamps, TimestampsAdvance, TimestampsRepeat)
	case c.Timeout < 0:
		return fmt.Errorf("timeout: must be positive, got %v", c.Timeout)
	case c.ProgressInterval < 0:
		return fmt.Errorf("progress-interval: must be positive, got %v", c.ProgressInterval)
	}
	return nil
}

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// ErrNotLoopback is returned by CheckTarget for a target that is not on
// this machine.
var ErrNotLoopback = errors.New("target is not a loopback address (pass --allow-remote to send load elsewhere)")

// CheckTarget returns ErrNotLoopback unless rawURL's host is a loopback
// address, or a name all of whose addresses (looked up with r, nil for
// net.DefaultResolver) are, or allowRemote is set.
func CheckTarget(ctx context.Context, rawURL string, allowRemote bool, r Resolver) error {
	if allowRemote {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("url %q: no host", rawURL)
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s: %w", host, ErrNotLoopback)
		}
		return nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupIPAddr(ctx, host)
	if err != nil {
		return fmt.Errorf("look up %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("look up %s: no addresses", host)
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return fmt.Errorf("%s resolves to %s: %w", host, a.IP, ErrNotLoopback)
		}
	}
	return nil
}
