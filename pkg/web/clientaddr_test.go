package web

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/registry"
)

func TestParseTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{name: "blanks", in: " , ,", want: nil},
		{name: "cidrs", in: "10.0.0.0/8, 192.168.1.0/24,fd00::/8", want: []string{"10.0.0.0/8", "192.168.1.0/24", "fd00::/8"}},
		{name: "host bits are masked", in: "10.1.2.3/8", want: []string{"10.0.0.0/8"}},
		{name: "single addresses", in: "127.0.0.1,::1", want: []string{"127.0.0.1/32", "::1/128"}},
		{name: "mapped address is IPv4", in: "::ffff:127.0.0.1", want: []string{"127.0.0.1/32"}},
		{name: "bad cidr", in: "10.0.0.0/33", wantErr: `trusted proxy "10.0.0.0/33"`},
		{name: "hostname", in: "proxy.example", wantErr: `trusted proxy "proxy.example"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTrustedProxies(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			var gotS []string
			for _, p := range got {
				gotS = append(gotS, p.String())
			}
			require.Equal(t, tc.want, gotS)
		})
	}
}

// TestClientAddr covers how X-Forwarded-For is read, and the ways a client
// may try to pass itself off as another address.
func TestClientAddr(t *testing.T) {
	trusted, err := ParseTrustedProxies("127.0.0.1/32, 10.0.0.0/8, ::1")
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		remote  string
		xff     []string // header lines, in order
		other   map[string]string
		trusted []netip.Prefix
		want    string
	}{
		{name: "direct, no header", remote: "203.0.113.7:4242", want: "203.0.113.7"},
		{name: "spoof: untrusted peer sends the header", remote: "203.0.113.7:4242", xff: []string{"198.51.100.1"}, want: "203.0.113.7"},
		{name: "spoof: untrusted peer claims a trusted proxy's address", remote: "203.0.113.7:4242", xff: []string{"10.0.0.1, 127.0.0.1"}, want: "203.0.113.7"},
		{name: "spoof: no trusted proxies configured", remote: "127.0.0.1:4242", xff: []string{"198.51.100.1"}, trusted: []netip.Prefix{}, want: "127.0.0.1"},
		{name: "trusted proxy, one hop", remote: "127.0.0.1:4242", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "spoof: client prepends an address, proxy appends the real one", remote: "127.0.0.1:4242", xff: []string{"198.51.100.1, 203.0.113.7"}, want: "203.0.113.7"},
		{name: "spoof: client prepends a trusted address", remote: "127.0.0.1:4242", xff: []string{"10.0.0.9, 203.0.113.7"}, want: "203.0.113.7"},
		{name: "spoof: client sends its own header line, proxy adds a second", remote: "127.0.0.1:4242", xff: []string{"198.51.100.1", "203.0.113.7"}, want: "203.0.113.7"},
		{name: "chain of trusted proxies is skipped", remote: "127.0.0.1:4242", xff: []string{"198.51.100.1, 203.0.113.7, 10.1.1.1, 10.2.2.2"}, want: "203.0.113.7"},
		{name: "every hop trusted: the leftmost", remote: "127.0.0.1:4242", xff: []string{"10.3.3.3, 10.1.1.1"}, want: "10.3.3.3"},
		{name: "spoof: garbage stops at the last trusted hop", remote: "127.0.0.1:4242", xff: []string{"198.51.100.1, not-an-ip, 10.1.1.1"}, want: "10.1.1.1"},
		{name: "spoof: garbage only", remote: "127.0.0.1:4242", xff: []string{"<script>"}, want: "127.0.0.1"},
		{name: "spoof: empty entry", remote: "127.0.0.1:4242", xff: []string{"198.51.100.1, , 10.1.1.1"}, want: "10.1.1.1"},
		{name: "empty header", remote: "127.0.0.1:4242", xff: []string{""}, want: "127.0.0.1"},
		{name: "entries with ports", remote: "127.0.0.1:4242", xff: []string{"203.0.113.7:5555"}, want: "203.0.113.7"},
		{name: "IPv6 entry with port", remote: "127.0.0.1:4242", xff: []string{"[2001:db8::1]:5555"}, want: "2001:db8::1"},
		{name: "IPv6 proxy", remote: "[::1]:4242", xff: []string{"2001:db8::1"}, want: "2001:db8::1"},
		{name: "IPv4-mapped peer matches an IPv4 range", remote: "[::ffff:127.0.0.1]:4242", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "IPv4-mapped hop is shown as IPv4", remote: "127.0.0.1:4242", xff: []string{"::ffff:203.0.113.7"}, want: "203.0.113.7"},
		{name: "spoof: other headers are ignored", remote: "127.0.0.1:4242", other: map[string]string{"X-Real-IP": "198.51.100.1", "Forwarded": "for=198.51.100.1"}, want: "127.0.0.1"},
		{name: "spoof: other headers are ignored from untrusted peers", remote: "203.0.113.7:4242", other: map[string]string{"X-Real-IP": "198.51.100.1", "True-Client-IP": "198.51.100.1"}, want: "203.0.113.7"},
		{name: "unparsable remote address", remote: "pipe", xff: []string{"203.0.113.7"}, want: "pipe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := trusted
			if tc.trusted != nil {
				tp = tc.trusted
			}
			reg := prometheus.NewPedanticRegistry()
			var got string
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = ClientAddr(r)
				w.WriteHeader(http.StatusNoContent)
			})
			w := New(nil, registry.NewHTTPMetrics(reg), reg, h, Options{TrustedProxies: tp})
			req := httptest.NewRequest(http.MethodPost, "/api/v1/write", nil)
			req.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			for k, v := range tc.other {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			w.ServeHTTP(rec, req)
			require.Equal(t, http.StatusNoContent, rec.Code)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestClientAddrOutsideRouter shows that a handler not reached through the
// router sees the direct peer: the header alone is never believed.
func TestClientAddrOutsideRouter(t *testing.T) {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.RemoteAddr = "127.0.0.1:1"
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	require.Equal(t, "127.0.0.1", ClientAddr(req))
}

func BenchmarkForwardedClient(b *testing.B) {
	trusted, err := ParseTrustedProxies("127.0.0.1/32, 10.0.0.0/8")
	require.NoError(b, err)
	xff := []string{"198.51.100.1, 203.0.113.7, 10.1.1.1"}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := forwardedClient("127.0.0.1:4242", xff, trusted); !ok {
			b.Fatal("no client")
		}
	}
}
