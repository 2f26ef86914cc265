//go:build integration

package integration

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEdgeNginx runs the gateway at the edge as the README describes:
//
//	Prometheus 2.42 --https--> nginx (TLS, location /gw/) --http--> gateway
//	  (--web.route-prefix=/gw, --web.trusted-proxies=127.0.0.1/32)
//	  --> Prometheus 2.42 with its remote-write receiver
//
// and checks that the client's self-scrape arrives upstream, that every
// route lives under the prefix, and that the client address the gateway
// logs is the one nginx saw, whatever X-Forwarded-For the client sent.
func TestEdgeNginx(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	nginxBin := nginxBin(t)
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	tlsClient := pki.Client(true, false)

	// nginx first, so that its port is known for the gateway's external
	// URL; it proxies to the gateway once its configuration names the
	// gateway's port, after a reload.
	nginx := startNginx(t, nginxBin, dir, pki, "127.0.0.1:9") // discard port until the reload
	edge := "https://" + nginx.Addr

	upstream := Prometheus(t, "prometheus-upstream", upstreamPrometheusConfig, true)
	gw := startGatewayChecked(t, GatewayConfig("prom", upstream.URL("/api/v1/write"), protoV1), func(addr string) error {
		return expectStatus(http.DefaultClient, "http://"+addr+"/gw/-/ready", "", "", http.StatusOK)
	},
		"--web.route-prefix=/gw",
		"--web.external-url="+edge+"/gw/",
		"--web.trusted-proxies=127.0.0.1/32",
	)
	writeNginxConfig(t, dir, pki, nginx.Addr, gw.Addr)
	if err := nginx.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("reload nginx: %v", err)
	}
	if err := eventually(20*time.Second, 100*time.Millisecond, func() error {
		return expectStatus(tlsClient, edge+"/gw/-/ready", "", "", http.StatusOK)
	}); err != nil {
		t.Fatalf("gateway not ready through nginx: %v", err)
	}

	t.Run("routes live under the prefix only", func(t *testing.T) {
		for _, tc := range []struct {
			url  string
			want int
		}{
			{gw.URL("/gw/-/healthy"), http.StatusOK},
			{gw.URL("/gw/metrics"), http.StatusOK},
			{gw.URL("/-/healthy"), http.StatusNotFound},
			{gw.URL("/-/ready"), http.StatusNotFound},
			{gw.URL("/metrics"), http.StatusNotFound},
			{edge + "/gw/-/healthy", http.StatusOK},
		} {
			c := http.DefaultClient
			if strings.HasPrefix(tc.url, "https:") {
				c = tlsClient
			}
			if err := expectStatus(c, tc.url, "", "", tc.want); err != nil {
				t.Error(err)
			}
		}
	})

	client := Prometheus(t, "prometheus-client", func(addr string) string {
		return fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: [%q]
remote_write:
  - url: %s/gw/api/v1/write
    tls_config:
      ca_file: %s
    queue_config: {batch_send_deadline: 1s, max_shards: 2, min_backoff: 100ms, max_backoff: 1s}
`, addr, edge, pki.CACert)
	}, false)

	t.Run("a real Prometheus writes through nginx to the upstream", func(t *testing.T) {
		for _, q := range []string{`up{job="prometheus",gw="test"}`, `prometheus_build_info{job="prometheus",gw="test"}`} {
			if err := eventually(60*time.Second, 500*time.Millisecond, func() error {
				got, err := queryInstant(upstream.URL(""), q, time.Time{})
				if err != nil {
					return err
				}
				if len(got) == 0 {
					return fmt.Errorf("%s: nothing upstream yet", q)
				}
				if inst, want := got[0].Metric["instance"], client.Addr; inst != want {
					return fmt.Errorf("%s: instance %q, want the client's %q", q, inst, want)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		// The latency metric names the route without the prefix.
		resp, err := tlsClient.Get(edge + "/gw/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := `gateway_http_request_duration_seconds_count{code="204",handler="/api/v1/write",method="POST"}`; !strings.Contains(string(body), want) {
			t.Errorf("gateway metrics through nginx lack %s", want)
		}
	})

	t.Run("the client address comes from nginx, not from the client", func(t *testing.T) {
		// Connect to nginx from 127.0.0.2: nginx is trusted (127.0.0.1),
		// this client is not, so its own X-Forwarded-For is ignored and the
		// address nginx appended is the client.
		c := pki.Client(true, false)
		c.Transport.(*http.Transport).DialContext = (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")},
			Timeout:   5 * time.Second,
		}).DialContext
		hdr := http.Header{}
		hdr.Add("X-Forwarded-For", "198.51.100.1")
		hdr.Add("X-Forwarded-For", "127.0.0.1") // pretends to be a trusted hop
		resp, err := postSampleHeader(c, edge+"/gw/api/v1/push", "", "", "edge_spoof_gauge", 1, hdr)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("write through nginx: %s, want 204", resp.Status)
		}
		line := regexp.MustCompile(`(?m)^.*msg="http request".*route=/api/v1/push.*peer=127\.0\.0\.1:.*$`)
		if err := eventually(5*time.Second, 100*time.Millisecond, func() error {
			for _, l := range line.FindAllString(gw.Log(), -1) {
				if strings.Contains(l, "client=198.51.100.1") || strings.Contains(l, "client=127.0.0.1 ") {
					return fmt.Errorf("spoofed client address logged: %s", l)
				}
				if strings.Contains(l, "client=127.0.0.2 ") {
					return nil
				}
			}
			return fmt.Errorf("no request log line with client=127.0.0.2")
		}); err != nil {
			t.Fatal(err)
		}
	})
}

// nginxBin returns nginx: $NGINX_BIN, else what scripts/nginx.sh wrote to
// .cache/peers/nginx.env, else nginx on PATH or in /usr/sbin. A missing
// nginx fails t, or skips it when GATEWAY_SKIP_PEERS=1.
func nginxBin(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("NGINX_BIN")}
	if b, err := os.ReadFile(filepath.Join(repoRoot(t), ".cache", "peers", "nginx.env")); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "NGINX_BIN="); ok {
				candidates = append(candidates, v)
			}
		}
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/sbin/nginx")
	for _, bin := range candidates {
		if fi, err := os.Stat(bin); bin != "" && err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return bin
		}
	}
	msg := "nginx not found (NGINX_BIN, .cache/peers/nginx.env, PATH, /usr/sbin): run scripts/nginx.sh (make nginx)"
	if os.Getenv("GATEWAY_SKIP_PEERS") == "1" {
		t.Skip(msg + "; skipped because GATEWAY_SKIP_PEERS=1")
	}
	t.Fatal(msg + ", or set GATEWAY_SKIP_PEERS=1 to skip tests that need it")
	return ""
}

// startNginx starts nginx in the foreground with a configuration in dir
// that terminates TLS on a free port and proxies /gw/ to backend. It is
// ready when /nginx-ready answers over TLS.
func startNginx(t testing.TB, bin, dir string, pki *testPKI, backend string) *Process {
	t.Helper()
	conf := filepath.Join(dir, "nginx.conf")
	client := pki.Client(true, false)
	return StartProcess(t, ProcessOptions{
		Name: "nginx",
		Bin:  bin,
		Dir:  dir,
		Ready: func(addr string) error {
			return expectStatus(client, "https://"+addr+"/nginx-ready", "", "", http.StatusOK)
		},
		Args: func(addr string) []string {
			writeNginxConfig(t, dir, pki, addr, backend)
			// -e: the error log before the configuration is read; Debian's
			// default is stderr, other builds' is a file under /var/log.
			return []string{"-p", dir, "-c", conf, "-e", "stderr"}
		},
	})
}

// writeNginxConfig writes dir/nginx.conf: nginx in the foreground, every
// file it writes in dir, TLS on listen, and /gw/ proxied to backend as the
// README shows.
func writeNginxConfig(t testing.TB, dir string, pki *testPKI, listen, backend string) {
	t.Helper()
	user := ""
	if os.Geteuid() == 0 {
		// Workers run as nobody otherwise, and cannot write the request
		// body buffers into the test's private temporary directory.
		user = "user root;"
	}
	conf := fmt.Sprintf(`# Written by integration/edge_test.go.
daemon off;
%[1]s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log stderr notice;
events { worker_connections 128; }
http {
    log_format edge '$remote_addr "$request" $status $body_bytes_sent xff="$http_x_forwarded_for" upstream=$upstream_addr';
    access_log /dev/stderr edge;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;

    server {
        listen %[3]s ssl;
        ssl_certificate %[4]s;
        ssl_certificate_key %[5]s;

        location = /nginx-ready {
            return 200 "ok\n";
        }
        location /gw/ {
            proxy_pass http://%[6]s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            client_max_body_size 32m;
        }
    }
}
`, user, dir, listen, pki.ServerCert, pki.ServerKey, backend)
	writeFile(t, dir, "nginx.conf", conf)
}
