package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

// maxCatchUp bounds how far the pacer lets senders run behind schedule and
// then burst to catch up: a target that stalls for longer loses the offered
// load of the stall rather than getting it all at once.
const maxCatchUp = 250 * time.Millisecond

// errorBodyLen is how much of a non-2xx response body is kept for the report.
const errorBodyLen = 256

// payload is one encoded request. buf is returned to the free list after
// sending; it is nil for shared (repeat-mode) bodies.
type payload struct {
	body    []byte
	buf     []byte
	samples int
}

// Run sends the load c describes to c.URL until its duration or request
// bound is reached or ctx is done, and returns what happened. p holds the
// requests; nil builds them from c (which takes a while for millions of
// series, so callers running several loads should build them once). Run
// checks c, and refuses a non-loopback target unless c.AllowRemote.
//
// An error is returned only when the load could not run; what the target
// answered, failures included, is in the Result.
func Run(ctx context.Context, c Config, p *Payloads) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if err := CheckTarget(ctx, c.URL, c.AllowRemote, nil); err != nil {
		return nil, err
	}
	if p == nil {
		var err error
		if p, err = NewPayloads(c.Protocol, c.Series, c.SamplesPerRequest, c.Families); err != nil {
			return nil, err
		}
	}
	if p.Protocol() != c.Protocol || p.Series() != c.Series || p.Samples(0) != c.SamplesPerRequest || p.Families() != c.Families {
		return nil, fmt.Errorf("payloads are %d series of %d families, %d samples per request, in %s; config wants %d of %d, %d, in %s",
			p.Series(), p.Families(), p.Samples(0), p.Protocol(), c.Series, c.Families, c.SamplesPerRequest, c.Protocol)
	}
	l := newLoad(c, p)
	return l.run(ctx)
}

type load struct {
	c      Config
	p      *Payloads
	client *http.Client
	pace   pacer

	// queues[i] feeds sender i. Request k of every round goes to sender
	// k % Concurrency, so each series is always sent by the same sender,
	// one request after the other, and arrives in timestamp order, as a
	// Prometheus sender's shards keep it. Otherwise two rounds of a request
	// could overtake each other and a TSDB would reject the later one as
	// out of order.
	queues []chan payload
	free   chan []byte

	issued    atomic.Int64
	encodeNs  atomic.Int64
	stalls    atomic.Int64
	stallNs   atomic.Int64
	encodeErr error // set by the encoder before it returns

	mu       sync.Mutex
	total    histogram
	interval histogram
	res      Result
	status   map[int]int64
	iv       struct{ requests, samples, accepted int64 }
}

func newLoad(c Config, p *Payloads) *load {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !c.AllowRemote {
		// Checked again at connect time, whatever the name resolves to now.
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("connect to %s: %w", host, ErrNotLoopback)
			}
			return nil
		}
	}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          c.Concurrency,
		MaxIdleConnsPerHost:   c.Concurrency,
		MaxConnsPerHost:       c.Concurrency,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: c.Timeout,
	}
	const depth = 4 // requests encoded ahead, per sender
	queues := make([]chan payload, c.Concurrency)
	for i := range queues {
		queues[i] = make(chan payload, depth)
	}
	return &load{
		c: c,
		p: p,
		client: &http.Client{
			Transport: transport,
			Timeout:   c.Timeout,
			// A redirect could lead anywhere; report it as its status instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		pace:   pacer{rate: c.Rate},
		queues: queues,
		free:   make(chan []byte, (depth+1)*c.Concurrency+1),
		status: map[int]int64{},
		res: Result{
			URL:               c.URL,
			Protocol:          c.Protocol.String(),
			Series:            c.Series,
			SamplesPerRequest: c.SamplesPerRequest,
			Concurrency:       c.Concurrency,
			Rate:              c.Rate,
			Timestamps:        c.Timestamps,
		},
	}
}

func (l *load) run(ctx context.Context) (*Result, error) {
	defer l.client.CloseIdleConnections()

	// loadCtx ends the load (duration, request bound); ctx also cancels
	// requests in flight.
	loadCtx, stop := context.WithCancel(ctx)
	defer stop()
	if l.c.Duration > 0 {
		var cancel context.CancelFunc
		loadCtx, cancel = context.WithTimeout(loadCtx, l.c.Duration)
		defer cancel()
	}

	var shared []payload
	if l.c.Timestamps == TimestampsRepeat {
		var err error
		if shared, err = l.encodeAll(time.Now().UnixMilli()); err != nil {
			return nil, err
		}
	}

	var wg sync.WaitGroup
	encDone := make(chan struct{})
	go func() {
		defer close(encDone)
		l.encode(loadCtx, shared)
	}()

	start := time.Now()
	l.pace.start(start)
	for i := range l.c.Concurrency {
		wg.Go(func() { l.send(ctx, loadCtx, stop, l.queues[i]) })
	}

	progressDone := make(chan struct{})
	var pwg sync.WaitGroup
	if l.c.Progress != nil {
		pwg.Go(func() { l.progress(start, progressDone) })
	}

	wg.Wait()
	elapsed := time.Since(start)
	stop()
	<-encDone
	close(progressDone)
	pwg.Wait()

	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.res
	r.ElapsedSeconds = elapsed.Seconds()
	r.Status = make(map[string]int64, len(l.status))
	for code, n := range l.status {
		r.Status[strconv.Itoa(code)] = n
	}
	r.Latency = l.total.latency()
	if elapsed > 0 {
		r.SentRate = float64(r.Samples) / elapsed.Seconds()
		r.AcceptedRate = float64(r.AcceptedSamples) / elapsed.Seconds()
	}
	r.EncodeSeconds = time.Duration(l.encodeNs.Load()).Seconds()
	r.EncoderStalls = l.stalls.Load()
	r.EncoderWaitSeconds = time.Duration(l.stallNs.Load()).Seconds()
	if l.encodeErr != nil {
		return &r, fmt.Errorf("encode: %w", l.encodeErr)
	}
	return &r, nil
}

// encodeAll compresses every request of a round once, for repeat mode.
func (l *load) encodeAll(ts int64) ([]payload, error) {
	out := make([]payload, l.p.Requests())
	for k := range out {
		body, _, err := l.p.Encode(nil, k, 0, ts)
		if err != nil {
			return nil, err
		}
		out[k] = payload{body: body, samples: l.p.Samples(k)}
	}
	return out, nil
}

// encode feeds the senders' queues round after round until ctx is done:
// the shared bodies in repeat mode, else each request re-encoded with the
// current time.
func (l *load) encode(ctx context.Context, shared []payload) {
	defer func() {
		for _, q := range l.queues {
			close(q)
		}
	}()
	for round := 0; ; round++ {
		for k := range l.p.Requests() {
			var pl payload
			if shared != nil {
				pl = shared[k]
			} else {
				var buf []byte
				select {
				case buf = <-l.free:
				default:
					buf = make([]byte, l.p.MaxEncodedLen())
				}
				t0 := time.Now()
				body, _, err := l.p.Encode(buf, k, round, t0.UnixMilli())
				l.encodeNs.Add(int64(time.Since(t0)))
				if err != nil {
					l.encodeErr = err
					return
				}
				pl = payload{body: body, buf: buf, samples: l.p.Samples(k)}
			}
			select {
			case l.queues[k%len(l.queues)] <- pl:
			case <-ctx.Done():
				return
			}
		}
	}
}

// send is one sender: it takes requests from its queue, waits for their
// turn and posts them, until the load ends.
func (l *load) send(ctx, loadCtx context.Context, stop context.CancelFunc, queue <-chan payload) {
	for {
		var pl payload
		var ok bool
		select {
		case pl, ok = <-queue:
		default:
			if loadCtx.Err() != nil {
				return
			}
			l.stalls.Add(1)
			t0 := time.Now()
			select {
			case pl, ok = <-queue:
				l.stallNs.Add(int64(time.Since(t0)))
			case <-loadCtx.Done():
				return
			}
		}
		if !ok || loadCtx.Err() != nil {
			return
		}
		if l.c.Requests > 0 && l.issued.Add(1) > l.c.Requests {
			stop()
			return
		}
		if at := l.pace.reserve(pl.samples, time.Now()); !at.IsZero() {
			if d := time.Until(at); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-loadCtx.Done():
					t.Stop()
					return
				}
			}
		}
		l.post(ctx, pl)
		if pl.buf != nil {
			select {
			case l.free <- pl.buf:
			default:
			}
		}
	}
}

func (l *load) post(ctx context.Context, pl payload) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.c.URL, bytes.NewReader(pl.body))
	if err != nil {
		l.record(pl.samples, 0, 0, nil, err, "")
		return
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("User-Agent", l.c.UserAgent)
	if l.c.Protocol == ProtoV2 {
		req.Header.Set("Content-Type", rwtest.ContentTypeV2)
		req.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	} else {
		req.Header.Set("Content-Type", rwtest.ContentTypeV1)
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	}
	t0 := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		l.record(pl.samples, 0, 0, nil, err, "")
		return
	}
	var head []byte
	if resp.StatusCode/100 != 2 {
		head, _ = io.ReadAll(io.LimitReader(resp.Body, errorBodyLen))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if err != nil {
		l.record(pl.samples, 0, 0, nil, fmt.Errorf("read response: %w", err), "")
		return
	}
	l.record(pl.samples, resp.StatusCode, d, resp.Header, nil, strings.TrimSpace(string(head)))
}

func (l *load) record(samples, code int, d time.Duration, h http.Header, err error, body string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res.Requests++
	l.res.Samples += int64(samples)
	l.iv.requests++
	l.iv.samples += int64(samples)
	if err != nil {
		l.res.Errors++
		if !errors.Is(err, context.Canceled) || l.res.LastError == "" {
			l.res.LastError = err.Error()
		}
		return
	}
	l.status[code]++
	l.total.observe(d)
	l.interval.observe(d)
	if code/100 != 2 {
		l.res.LastError = fmt.Sprintf("HTTP %d: %s", code, body)
		return
	}
	l.res.AcceptedSamples += int64(samples)
	l.iv.accepted += int64(samples)
	if v := h.Get("X-Prometheus-Remote-Write-Samples-Written"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			l.res.ConfirmedSamples += n
			l.res.Confirmations++
		}
	}
}

func (l *load) progress(start time.Time, done <-chan struct{}) {
	t := time.NewTicker(l.c.ProgressInterval)
	defer t.Stop()
	last := start
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			l.mu.Lock()
			sec := now.Sub(last).Seconds()
			line := fmt.Sprintf("rwload: %5.1fs  %6d req  %8s samples/s sent  %8s/s accepted  [%s]  errors %d  p99 %s (last %.0fs)\n",
				now.Sub(start).Seconds(), l.res.Requests, si(float64(l.iv.samples)/sec), si(float64(l.iv.accepted)/sec),
				statusString(stringKeys(l.status)), l.res.Errors, ms(l.interval.quantile(0.99).Seconds()), sec)
			l.iv = struct{ requests, samples, accepted int64 }{}
			l.interval = histogram{}
			l.mu.Unlock()
			last = now
			_, _ = io.WriteString(l.c.Progress, line)
		}
	}
}

func stringKeys(m map[int]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[strconv.Itoa(k)] = v
	}
	return out
}

// pacer spaces requests so that samples go out at rate per second. A zero
// rate never waits. Safe for concurrent use.
type pacer struct {
	rate float64
	mu   sync.Mutex
	next time.Time
}

func (p *pacer) start(t time.Time) {
	p.mu.Lock()
	p.next = t
	p.mu.Unlock()
}

// reserve books n samples and returns when they may be sent; zero if the
// rate is unlimited.
func (p *pacer) reserve(n int, now time.Time) time.Time {
	if p.rate <= 0 {
		return time.Time{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if floor := now.Add(-maxCatchUp); p.next.Before(floor) {
		p.next = floor
	}
	at := p.next
	p.next = at.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	return at
}
