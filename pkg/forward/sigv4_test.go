package forward

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/sigv4"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/prw"
)

// An upstream configured with sigv4 gets requests signed as Amazon Managed
// Prometheus checks them: the upstream here signs each request again with
// the AWS SDK's own signer, from the same credentials, time and body, and
// compares.
func TestSigV4(t *testing.T) {
	creds := aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	checked := make(chan error, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checked <- verifySigV4(r, creds)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)

	u := testUpstream(t, "amp", srv.URL+"/workspaces/ws-1/api/v1/remote_write", false)
	u.SigV4Config = &sigv4.SigV4Config{Region: "eu-west-1", AccessKey: creds.AccessKeyID, SecretKey: commoncfg.Secret(creds.SecretAccessKey)}
	m, _, _ := newTestManager(t, testConfig(u))
	require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(1000, 3, "__name__", "up")}, nil), "", nil))
	select {
	case err := <-checked:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("nothing arrived")
	}
}

// verifySigV4 signs a copy of r with the AWS SDK and compares the
// Authorization headers.
func verifySigV4(r *http.Request, creds aws.Credentials) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") {
		return errString("not signed with SigV4: " + auth)
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return err
	}
	signed := ""
	for _, part := range strings.Split(strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 "), ", ") {
		if v, ok := strings.CutPrefix(part, "SignedHeaders="); ok {
			signed = v
		}
	}
	req, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(body))
	for _, h := range strings.Split(signed, ";") {
		if h != "host" && h != "content-length" {
			req.Header.Set(h, r.Header.Get(h))
		}
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(r.Context(), creds, req, hex.EncodeToString(sum[:]), "aps", "eu-west-1", at); err != nil {
		return err
	}
	if got := req.Header.Get("Authorization"); got != auth {
		return errString("signature mismatch:\n got  " + auth + "\n want " + got)
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }
