package loadgen

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func validConfig() Config {
	return Config{URL: "http://127.0.0.1:9201/api/v1/write", Series: 10, SamplesPerRequest: 5, Duration: time.Second}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		mod     func(c *Config)
		wantErr string // substring; empty means valid
	}{
		{name: "valid", mod: func(*Config) {}},
		{name: "defaults", mod: func(c *Config) { *c = Config{URL: c.URL} }},
		{name: "requests only", mod: func(c *Config) { c.Duration, c.Requests = 0, 10 }},
		{name: "rate", mod: func(c *Config) { c.Rate = 200_000 }},
		{name: "repeat", mod: func(c *Config) { c.Timestamps = TimestampsRepeat }},
		{name: "no url", mod: func(c *Config) { c.URL = "" }, wantErr: "url: required"},
		{name: "bad scheme", mod: func(c *Config) { c.URL = "ftp://127.0.0.1/" }, wantErr: "scheme"},
		{name: "no host", mod: func(c *Config) { c.URL = "http:///api/v1/write" }, wantErr: "no host"},
		{name: "unparsable url", mod: func(c *Config) { c.URL = "http://[::1" }, wantErr: "url:"},
		{name: "negative series", mod: func(c *Config) { c.Series = -1 }, wantErr: "series"},
		{name: "samples above series", mod: func(c *Config) { c.SamplesPerRequest = 11 }, wantErr: "must not exceed series"},
		{name: "negative concurrency", mod: func(c *Config) { c.Concurrency = -2 }, wantErr: "concurrency"},
		{name: "negative rate", mod: func(c *Config) { c.Rate = -1 }, wantErr: "rate"},
		{name: "negative duration", mod: func(c *Config) { c.Duration = -time.Second }, wantErr: "duration"},
		{name: "negative requests", mod: func(c *Config) { c.Requests = -1 }, wantErr: "requests"},
		{name: "bad timestamps", mod: func(c *Config) { c.Timestamps = "fixed" }, wantErr: "timestamps"},
		{name: "bad protocol", mod: func(c *Config) { c.Protocol = 7 }, wantErr: "protocol"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{URL: "http://127.0.0.1/"}
	require.NoError(t, c.Validate())
	require.Equal(t, DefaultSeries, c.Series)
	require.Equal(t, DefaultSamplesPerRequest, c.SamplesPerRequest)
	require.Equal(t, DefaultConcurrency, c.Concurrency)
	require.Equal(t, TimestampsAdvance, c.Timestamps)
	require.Equal(t, DefaultTimeout, c.Timeout)
	require.Equal(t, DefaultDuration, c.Duration, "a load is always bounded")
}

func TestParseProtocol(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Protocol
		err  bool
	}{
		{in: "1.0", want: ProtoV1}, {in: "1", want: ProtoV1},
		{in: "2.0", want: ProtoV2}, {in: "2", want: ProtoV2},
		{in: "3.0", err: true}, {in: "", err: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseProtocol(tc.in)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.in[:1], got.String()[:1])
		})
	}
}

// fakeResolver answers from a map; a missing name is an error.
type fakeResolver map[string][]string

func (f fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	ips, ok := f[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	out := make([]net.IPAddr, len(ips))
	for i, s := range ips {
		out[i] = net.IPAddr{IP: net.ParseIP(s)}
	}
	return out, nil
}

func TestCheckTarget(t *testing.T) {
	r := fakeResolver{
		"localhost":   {"127.0.0.1", "::1"},
		"mixed.test":  {"127.0.0.1", "10.0.0.1"},
		"remote.test": {"192.0.2.10"},
		"empty.test":  {},
	}
	cases := []struct {
		name        string
		url         string
		allowRemote bool
		wantErr     error  // errors.Is
		wantMsg     string // substring, when wantErr is nil and an error is expected
	}{
		{name: "ipv4 loopback", url: "http://127.0.0.1:9201/api/v1/write"},
		{name: "other 127/8", url: "http://127.3.2.1:9201/"},
		{name: "ipv6 loopback", url: "http://[::1]:9201/"},
		{name: "localhost", url: "http://localhost:9201/"},
		{name: "ipv4 remote", url: "http://10.1.2.3:9201/", wantErr: ErrNotLoopback},
		{name: "ipv6 remote", url: "http://[2001:db8::1]/", wantErr: ErrNotLoopback},
		{name: "unspecified", url: "http://0.0.0.0:9201/", wantErr: ErrNotLoopback},
		{name: "name remote", url: "https://remote.test/api/v1/write", wantErr: ErrNotLoopback},
		{name: "name partly remote", url: "http://mixed.test/", wantErr: ErrNotLoopback},
		{name: "unresolvable", url: "http://nowhere.test/", wantMsg: "look up nowhere.test"},
		{name: "no addresses", url: "http://empty.test/", wantMsg: "no addresses"},
		{name: "remote allowed", url: "http://10.1.2.3:9201/", allowRemote: true},
		{name: "name remote allowed", url: "http://remote.test/", allowRemote: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTarget(context.Background(), tc.url, tc.allowRemote, r)
			switch {
			case tc.wantErr != nil:
				require.ErrorIs(t, err, tc.wantErr)
			case tc.wantMsg != "":
				require.ErrorContains(t, err, tc.wantMsg)
			default:
				require.NoError(t, err)
			}
		})
	}
}
