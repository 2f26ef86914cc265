package web

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientAddrKey is the request context key of the client address that
// forwarded found in X-Forwarded-For.
type clientAddrKey struct{}

// ClientAddr returns the IP address of the client that made r: the one the
// router's trusted proxies named in X-Forwarded-For, else the direct peer
// (r.RemoteAddr without its port). It is what request logs show and what
// per-client limits key on. It never trusts a header by itself: only a
// request that passed through the router (New) can carry a forwarded
// address.
func ClientAddr(r *http.Request) string {
	if a, ok := r.Context().Value(clientAddrKey{}).(string); ok {
		return a
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().WithZone("").String()
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// ParseTrustedProxies parses a comma-separated list of CIDRs (10.0.0.0/8,
// fd00::/8) or single addresses (127.0.0.1, ::1). Blanks around entries and
// empty entries are ignored; an empty list trusts no proxy.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if strings.Contains(entry, "/") {
			p, err := netip.ParsePrefix(entry)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", entry, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(entry)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", entry, err)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// forwarded stores the client address from X-Forwarded-For in the request
// context when the direct peer is a trusted proxy. It is installed only
// when there are trusted proxies, and touches the context only when the
// address differs from the peer, so direct clients cost nothing.
func (w *Web) forwarded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if client, ok := forwardedClient(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), w.trusted); ok {
			r = r.WithContext(context.WithValue(r.Context(), clientAddrKey{}, client))
		}
		next.ServeHTTP(rw, r)
	})
}

// forwardedClient returns the client address that X-Forwarded-For (xff, its
// header lines in order) names, and whether it differs from the peer at
// remoteAddr. Each proxy appends the address it received the request from,
// so the list is read from the right: the peer must be trusted, then every
// hop that is trusted is skipped, and the first untrusted hop is the client.
// Everything to its left was written by the client or proxies no one
// vouches for, and is ignored. If every hop is trusted the leftmost is the
// client; an entry that is not an address stops the walk at the last
// trusted hop before it.
func forwardedClient(remoteAddr string, xff []string, trusted []netip.Prefix) (string, bool) {
	if len(trusted) == 0 || len(xff) == 0 {
		return "", false
	}
	peer, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return "", false
	}
	client := peer.Addr().Unmap().WithZone("")
	if !isTrusted(client, trusted) {
		return "", false
	}
	changed := false
walk:
	for i := len(xff) - 1; i >= 0; i-- {
		list := xff[i]
		for list != "" {
			var hop string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				hop, list = list[j+1:], list[:j]
			} else {
				hop, list = list, ""
			}
			a, ok := parseHop(hop)
			if !ok {
				break walk
			}
			client, changed = a, true
			if !isTrusted(a, trusted) {
				break walk
			}
		}
	}
	if !changed || client == peer.Addr().Unmap().WithZone("") {
		return "", false
	}
	return client.String(), true
}

// parseHop parses one X-Forwarded-For entry: an IPv4 or IPv6 address,
// optionally with a port (1.2.3.4:5, [::1]:5), as some proxies write.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
