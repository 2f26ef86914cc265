//go:build integration

package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"golang.org/x/crypto/bcrypt"
)

// TestGatewayTLS runs bin/gateway with a --web.config.file in the
// exporter-toolkit format that turns on TLS, requires a client certificate
// signed by the test CA, and requires basic auth, then checks each layer
// from the outside: who is refused at the handshake, who is refused with
// 401, and that an accepted write reaches the upstream.
func TestGatewayTLS(t *testing.T) {
	requireIntegration(t)
	t.Parallel()

	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	const user, password = "agent", "s3cret-pass"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := writeFile(t, dir, "web.yml", fmt.Sprintf(`tls_server_config:
  cert_file: %s
  key_file: %s
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: %s
basic_auth_users:
  %s: %s
`, pki.ServerCert, pki.ServerKey, pki.CACert, user, hash))

	sink := NewSink(t)
	good := pki.Client(true, true) // trusts the CA, presents its certificate
	gw := startGatewayChecked(t, GatewayConfig("sink", sink.URL, protoV2), func(addr string) error {
		return expectStatus(good, "https://"+addr+"/-/ready", user, password, http.StatusOK)
	}, "--web.config.file="+webConfig)
	base := "https://" + gw.Addr

	t.Run("TLS: a client that trusts the CA is served", func(t *testing.T) {
		if err := expectStatus(good, base+"/-/healthy", user, password, http.StatusOK); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("TLS: a client that does not trust the CA is refused", func(t *testing.T) {
		_, err := get(pki.Client(false, true), base+"/-/healthy", user, password)
		var unknownCA x509.UnknownAuthorityError
		if !errors.As(err, &unknownCA) {
			t.Fatalf("got %v, want an unknown authority error", err)
		}
	})
	t.Run("mTLS: a client without a certificate is refused", func(t *testing.T) {
		_, err := get(pki.Client(true, false), base+"/-/healthy", user, password)
		if err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Fatalf("got %v, want the server's certificate required alert", err)
		}
	})
	t.Run("mTLS: a certificate from another CA is refused", func(t *testing.T) {
		rogue := newTestPKI(t, t.TempDir())
		c := pki.Client(true, false)
		cert, err := tls.LoadX509KeyPair(rogue.ClientCert, rogue.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		c.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
		_, err = get(c, base+"/-/healthy", user, password)
		if err == nil || !strings.Contains(err.Error(), "remote error: tls: unknown certificate authority") {
			t.Fatalf("got %v, want the server's unknown certificate authority alert", err)
		}
	})
	t.Run("plain HTTP to the TLS port fails", func(t *testing.T) {
		// Go's TLS server answers a plain-HTTP request with a bare 400
		// before any handler runs.
		resp, err := get(&http.Client{Timeout: 5 * time.Second}, "http://"+gw.Addr+"/-/healthy", user, password)
		if err == nil && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP answered %s, want an error or 400", resp.Status)
		}
	})
	t.Run("basic auth", func(t *testing.T) {
		for _, tc := range []struct {
			name, user, password string
			want                 int
		}{
			{name: "no credentials", want: http.StatusUnauthorized},
			{name: "wrong password", user: user, password: "wrong", want: http.StatusUnauthorized},
			{name: "unknown user", user: "nobody", password: password, want: http.StatusUnauthorized},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, err := postSample(good, base+"/api/v1/write", tc.user, tc.password, "tls_rejected_gauge", 1)
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tc.want {
					t.Fatalf("write answered %s, want %d", resp.Status, tc.want)
				}
			})
		}
		t.Run("right credentials: 204 and the sample reaches the upstream", func(t *testing.T) {
			resp, err := postSample(good, base+"/api/v1/write", user, password, "tls_accepted_gauge", 42)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("write answered %s, want 204", resp.Status)
			}
			if err := eventually(20*time.Second, 100*time.Millisecond, func() error {
				got, _, errs := sink.Received()
				if len(errs) > 0 {
					return fmt.Errorf("sink refused requests: %v", errs)
				}
				for k, s := range got {
					if strings.Contains(k, `"tls_rejected_gauge"`) {
						return fmt.Errorf("a refused write reached the upstream: %s", k)
					}
					if strings.Contains(k, `"tls_accepted_gauge"`) && len(s.Samples) == 1 {
						return nil
					}
				}
				return fmt.Errorf("tls_accepted_gauge not upstream yet; have %d series", len(got))
			}); err != nil {
				t.Fatal(err)
			}
			got, _, _ := sink.Received()
			for k, s := range got {
				if strings.Contains(k, `"tls_rejected_gauge"`) {
					t.Errorf("a refused write reached the upstream: %s", k)
				}
				if strings.Contains(k, `"tls_accepted_gauge"`) && !strings.Contains(s.Samples[0], "42") {
					t.Errorf("upstream sample %s, want value 42", s.Samples[0])
				}
			}
		})
	})
}

// testPKI is a CA with a server and a client certificate, written as PEM
// files.
type testPKI struct {
	CACert, ServerCert, ServerKey, ClientCert, ClientKey string
	pool                                                 *x509.CertPool
}

// newTestPKI writes a fresh ECDSA CA, a server certificate for localhost,
// 127.0.0.1 and ::1, and a client certificate into dir.
func newTestPKI(t testing.TB, dir string) *testPKI {
	t.Helper()
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "rwgateway integration test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.CACert = writePEM(t, dir, "ca.crt", "CERTIFICATE", caDER)

	issue := func(name string, serial int64, usage x509.ExtKeyUsage, sans ...string) (certPath, keyPath string) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		for _, s := range sans {
			if ip := net.ParseIP(s); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, s)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, name+".crt", "CERTIFICATE", der), writePEM(t, dir, name+".key", "EC PRIVATE KEY", keyDER)
	}
	p.ServerCert, p.ServerKey = issue("server", 2, x509.ExtKeyUsageServerAuth, "localhost", "127.0.0.1", "::1")
	p.ClientCert, p.ClientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	return writeFile(t, dir, name, string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})))
}

// Client returns an HTTP client that trusts the test CA (else only another,
// unrelated CA) and, if withCert, presents the client certificate. Each
// client has its own transport, so no connection is reused across cases.
func (p *testPKI) Client(trustCA, withCert bool) *http.Client {
	cfg := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if !trustCA {
		cfg.RootCAs = x509.NewCertPool() // trusts nothing
	}
	if withCert {
		cert, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
		if err != nil {
			panic(err) // written by newTestPKI a moment ago
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
	}
}

// get sends GET url with basic auth if user is set, and reads the body.
func get(c *http.Client, url, user, password string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// expectStatus GETs url and returns an error unless it answers want.
func expectStatus(c *http.Client, url, user, password string, want int) error {
	resp, err := get(c, url, user, password)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: %s, want %d", url, resp.Status, want)
	}
	return nil
}

// postSample sends one remote write 1.0 sample of metric name with basic
// auth (if user is set) and returns the response, body read.
func postSample(c *http.Client, url, user, password, name string, v float64) (*http.Response, error) {
	return postSampleHeader(c, url, user, password, name, v, nil)
}

// postSampleHeader is postSample with extra request headers.
func postSampleHeader(c *http.Client, url, user, password, name string, v float64, hdr http.Header) (*http.Response, error) {
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: name}, {Name: "job", Value: "tls"}},
		Samples: []prompb.Sample{{Timestamp: time.Now().UnixMilli(), Value: v}},
	}}}
	raw, err := wr.Marshal()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("post %s: %w", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// startGatewayChecked is Gateway for a gateway whose readiness is not a
// plain-HTTP GET (TLS, basic auth, a route prefix): ready(addr) is polled
// until it returns nil.
func startGatewayChecked(t testing.TB, config string, ready func(addr string) error, extraArgs ...string) *Process {
	t.Helper()
	dir := t.TempDir()
	cfg := writeFile(t, dir, "gateway.yml", config)
	return StartProcess(t, ProcessOptions{
		Name:  "gateway",
		Ready: ready,
		Bin:   gatewayBin(t),
		Dir:   dir,
		Args: func(addr string) []string {
			return append([]string{
				"--config.file=" + cfg,
				"--web.listen-address=" + addr,
				"--storage.path=" + filepath.Join(dir, "data"),
				"--log.level=debug",
			}, extraArgs...)
		},
	})
}
