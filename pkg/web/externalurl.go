package web

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	toolkitweb "github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
)

// ExternalURL returns the URL under which the gateway is reachable, as
// Prometheus's --web.external-url: raw if set, else
// http://<hostname>:<port>/ from the listen address (https when
// webConfigFile configures TLS). The path of the result has no trailing
// slash ("" for the root).
func ExternalURL(raw, listenAddress, webConfigFile string) (*url.URL, error) {
	if raw == "" {
		hostname, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("external URL: hostname: %w", err)
		}
		_, port, err := net.SplitHostPort(listenAddress)
		if err != nil {
			return nil, fmt.Errorf("external URL: listen address: %w", err)
		}
		scheme := "http"
		if webConfigHasTLS(webConfigFile) {
			scheme = "https"
		}
		raw = fmt.Sprintf("%s://%s/", scheme, net.JoinHostPort(hostname, port))
	}
	if strings.HasPrefix(raw, `"`) || strings.HasPrefix(raw, "'") || strings.HasSuffix(raw, `"`) || strings.HasSuffix(raw, "'") {
		return nil, errors.New("external URL: must not begin or end with quotes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("external URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("external URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("external URL %q: no host", raw)
	}
	p := strings.TrimRight(u.Path, "/")
	if p != "" && !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	u.Path = p
	return u, nil
}

// RoutePrefix returns the path every route is served under, as Prometheus's
// --web.route-prefix: prefix if set, else the external URL's path. The
// result starts with a slash and has no trailing one: "/" for the root,
// "/gw" for a prefix. A prefix with characters that routes treat as
// patterns ({, }, *) is an error.
func RoutePrefix(prefix string, externalURL *url.URL) (string, error) {
	if prefix == "" && externalURL != nil {
		prefix = externalURL.Path
	}
	if strings.ContainsAny(prefix, "{}*") {
		return "", fmt.Errorf("route prefix %q: must not contain {, } or *", prefix)
	}
	return cleanPrefix(prefix), nil
}

// cleanPrefix returns prefix with one leading slash and no trailing one.
func cleanPrefix(prefix string) string { return "/" + strings.Trim(prefix, "/") }

// webConfigHasTLS reports whether the exporter-toolkit web configuration
// file at path turns TLS on. A file that cannot be read or parsed counts as
// no TLS here: serving reports its error.
func webConfigHasTLS(path string) bool {
	if path == "" {
		return false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var c toolkitweb.Config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return false
	}
	return c.TLSConfig.IsEnabled()
}
