package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/sigv4"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
)

const (
	// idleConnTimeout closes pooled connections unused for this long: under
	// the 60 s idle timeout most load balancers apply, so a shard rarely
	// reuses a connection the far end has just closed.
	idleConnTimeout = 50 * time.Second
	// connSlack is how many connections an upstream may open beyond one per
	// shard: room for one being torn down while its replacement dials.
	connSlack = 2
	// drainBytes is how much of a response body is read so that the
	// connection can be reused; a longer body closes it.
	drainBytes    = 4096
	logBodyBytes  = 256             // how much of a refusal's body is logged
	maxRetryAfter = 5 * time.Minute // caps an upstream's Retry-After

	headerRetryAttempt       = "Retry-Attempt"
	statusLabelNetworkFailed = "error" // the status label of a request without an answer
)

// newClient returns the upstream's one long-lived HTTP client, with at most
// maxConns connections open (enforced in the dialer, as prometheus/common
// builds the transport and offers no MaxConnsPerHost). Shards send
// sequentially, so shards + connSlack never makes one wait in practice.
func newClient(u *config.UpstreamConfig, maxConns int) (*http.Client, error) {
	l := &connLimiter{
		sem:    make(chan struct{}, maxConns),
		dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
	}
	c, err := commoncfg.NewClientFromConfig(u.HTTPClientConfig, "upstream_"+u.Name,
		commoncfg.WithIdleConnTimeout(idleConnTimeout),
		commoncfg.WithDialContextFunc(l.dial),
	)
	if err != nil {
		return nil, fmt.Errorf("build http client: %w", err)
	}
	if u.SigV4Config != nil {
		rt, err := sigv4.NewSigV4RoundTripper(u.SigV4Config, c.Transport)
		if err != nil {
			return nil, fmt.Errorf("sigv4: %w", err)
		}
		c.Transport = signingTransport{RoundTripper: rt, inner: c.Transport}
	}
	return c, nil
}

// signingTransport signs requests, and passes CloseIdleConnections on.
type signingTransport struct {
	http.RoundTripper
	inner http.RoundTripper
}

func (t signingTransport) CloseIdleConnections() {
	if c, ok := t.inner.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// connLimiter bounds a client's open connections, one slot per connection.
type connLimiter struct {
	sem    chan struct{}
	dialer net.Dialer
}

func (l *connLimiter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c, err := l.dialer.DialContext(ctx, network, addr)
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: sync.OnceFunc(func() { <-l.sem })}, nil
}

// limitedConn gives its limiter slot back when closed, once.
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// outcome is what one send attempt's answer means for the batch.
type outcome int

const (
	outcomeOK       outcome = iota // 2xx: acknowledged
	outcomeRetry                   // network error, timeout, 5xx, 429 if retried
	outcomeTooLarge                // 413: split the batch
	outcomeDrop                    // other 4xx: drop the batch
	outcomeFallback                // 2.0 sent, and the upstream speaks 1.0 only: 415, or 2xx without Written headers
)

// attemptResult is the outcome of one HTTP request.
type attemptResult struct {
	outcome    outcome
	err        error         // set unless outcomeOK
	body       []byte        // start of the body of a refusal, for the log
	retryAfter time.Duration // what the upstream asked to wait before a retry, if anything
}

// post sends one encoded batch, of tenant's data if not "" (named in the
// tenant_header), and drains and closes the response. retry is the
// Retry-Attempt number, 0 on the first attempt.
func (f *forwarder) post(ctx context.Context, data []byte, proto prw.Protocol, tenant string, retry int, points int) attemptResult {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(f.cfg.RemoteTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.url, bytes.NewReader(data))
	if err != nil {
		// Only a malformed URL gets here, and config validation rules it out.
		return attemptResult{outcome: outcomeDrop, err: fmt.Errorf("build request: %w", err)}
	}
	h := req.Header
	h.Set("Content-Encoding", "snappy")
	h.Set("User-Agent", f.userAgent)
	h.Set("Content-Type", proto.ContentType())
	h.Set(prw.HeaderVersion, proto.Version())
	if retry > 0 {
		h.Set(headerRetryAttempt, strconv.Itoa(retry))
	}
	for k, v := range f.cfg.Headers {
		h.Set(k, v)
	}
	if tenant != "" {
		h.Set(f.cfg.TenantHeader, tenant)
	}

	start := time.Now()
	resp, err := f.client.Do(req)
	f.m.SendDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		f.metrics.Requests.WithLabelValues(f.name, statusLabelNetworkFailed).Inc()
		return attemptResult{outcome: outcomeRetry, err: fmt.Errorf("send: %w", err)}
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, drainBytes)
		_ = resp.Body.Close()
	}()
	code := resp.StatusCode
	f.metrics.Requests.WithLabelValues(f.name, strconv.Itoa(code)).Inc()

	switch {
	case code/100 == 2:
		if proto == prw.ProtoV2 && points > 0 &&
			resp.Header.Get(prw.HeaderSamplesWritten) == "" &&
			resp.Header.Get(prw.HeaderHistogramsWritten) == "" &&
			resp.Header.Get(prw.HeaderExemplarsWritten) == "" {
			return attemptResult{outcome: outcomeFallback, err: errors.New("2.0 upstream answered without written headers, so it is a 1.0 receiver that dropped the data")}
		}
		return attemptResult{outcome: outcomeOK}
	case code == http.StatusUnsupportedMediaType && proto == prw.ProtoV2:
		return attemptResult{outcome: outcomeFallback, err: fmt.Errorf("upstream answered %s to remote write 2.0", resp.Status)}
	case code/100 == 5 || (code == http.StatusTooManyRequests && f.cfg.QueueConfig.RetryOnRateLimit):
		return attemptResult{outcome: outcomeRetry, err: fmt.Errorf("upstream answered %s", resp.Status),
			retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, logBodyBytes))
	err = fmt.Errorf("upstream answered %s", resp.Status)
	if code == http.StatusRequestEntityTooLarge {
		return attemptResult{outcome: outcomeTooLarge, err: err, body: body}
	}
	return attemptResult{outcome: outcomeDrop, err: err, body: body}
}

// parseRetryAfter reads Retry-After (seconds or a date): 0 if invalid, capped.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
