package loadgen

import (
	"fmt"
	"io"
	"math/bits"
	"sort"
	"strconv"
	"strings"
	"time"
)

// histogram counts durations in microseconds in log-linear buckets: exact
// below 64µs, then 32 buckets per power of two, so a quantile is off by at
// most 1/32 (3%). Memory is fixed whatever the number of requests. Not safe
// for concurrent use.
type histogram struct {
	counts [64 + 58*32]uint64
	n      uint64
	max    uint64
}

func bucketOf(us uint64) int {
	if us < 64 {
		return int(us)
	}
	e := bits.Len64(us) - 6 // ≥ 1
	m := us >> e            // 32..63
	return 64 + (e-1)*32 + int(m-32)
}

// upperOf returns the largest value of bucket i, in microseconds.
func upperOf(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	e := (i-64)/32 + 1
	m := uint64((i-64)%32 + 32)
	return (m+1)<<e - 1
}

func (h *histogram) observe(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.counts[bucketOf(us)]++
	h.n++
	h.max = max(h.max, us)
}

// quantile returns the q-quantile (0 < q ≤ 1) as the upper bound of its
// bucket, capped at the largest value seen; 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(upperOf(i), h.max)) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}

// Latency holds request latency quantiles in seconds, from sending the
// request to reading the whole response, over requests that got a response.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func (h *histogram) latency() Latency {
	return Latency{
		P50: h.quantile(0.50).Seconds(),
		P90: h.quantile(0.90).Seconds(),
		P99: h.quantile(0.99).Seconds(),
		Max: (time.Duration(h.max) * time.Microsecond).Seconds(),
	}
}

// Result is what one load did. Samples count the samples of requests that
// were answered or failed; AcceptedSamples those answered with a 2xx status.
type Result struct {
	URL               string  `json:"url"`
	Protocol          string  `json:"protocol"`
	Series            int     `json:"series"`
	SamplesPerRequest int     `json:"samples_per_request"`
	Concurrency       int     `json:"concurrency"`
	Rate              float64 `json:"offered_rate"` // samples/s, 0: as fast as accepted
	Timestamps        string  `json:"timestamps"`

	ElapsedSeconds  float64          `json:"elapsed_seconds"`
	Requests        int64            `json:"requests"`
	Samples         int64            `json:"samples"`
	AcceptedSamples int64            `json:"accepted_samples"`
	Status          map[string]int64 `json:"status"` // by HTTP status code
	Errors          int64            `json:"errors"` // requests without a response
	LastError       string           `json:"last_error,omitempty"`
	// ConfirmedSamples sums X-Prometheus-Remote-Write-Samples-Written of 2xx
	// responses that carried it (a 2.0 receiver's confirmation), over
	// Confirmations responses.
	ConfirmedSamples int64   `json:"confirmed_samples"`
	Confirmations    int64   `json:"confirmations"`
	Latency          Latency `json:"latency_seconds"`

	SentRate     float64 `json:"sent_samples_per_second"`
	AcceptedRate float64 `json:"accepted_samples_per_second"`

	// EncodeSeconds is the time the encoder spent writing timestamps and
	// compressing. EncoderStalls counts the times a sender found no request
	// ready, and EncoderWaitSeconds sums how long senders then waited: the
	// encoder was behind, or it was held up filling the queue of a sender
	// whose requests were slow (request k of each round always goes to
	// sender k mod concurrency, to keep every series in order). A wait
	// close to ElapsedSeconds × Concurrency means the generator, not the
	// target, limited the rate.
	EncodeSeconds      float64 `json:"encode_seconds"`
	EncoderStalls      int64   `json:"encoder_stalls"`
	EncoderWaitSeconds float64 `json:"encoder_wait_seconds"`
}

// WriteText writes a human-readable summary of r to w.
func (r *Result) WriteText(w io.Writer) error {
	rate := "as fast as accepted"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%s samples/s offered", si(r.Rate))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "target      %s (remote write %s)\n", r.URL, r.Protocol)
	fmt.Fprintf(&b, "load        %d series, %d samples/request, %d connections, %s, timestamps %s\n",
		r.Series, r.SamplesPerRequest, r.Concurrency, rate, r.Timestamps)
	fmt.Fprintf(&b, "elapsed     %.2fs\n", r.ElapsedSeconds)
	fmt.Fprintf(&b, "requests    %d (%s)", r.Requests, r.statusString())
	if r.Errors > 0 {
		fmt.Fprintf(&b, ", %d without response (last: %s)", r.Errors, r.LastError)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "samples     %d sent (%s/s), %d accepted (%s/s)\n",
		r.Samples, si(r.SentRate), r.AcceptedSamples, si(r.AcceptedRate))
	if r.Confirmations > 0 {
		fmt.Fprintf(&b, "confirmed   %d samples written per %d responses' X-Prometheus-Remote-Write-Samples-Written\n", r.ConfirmedSamples, r.Confirmations)
	}
	fmt.Fprintf(&b, "latency     p50 %s  p90 %s  p99 %s  max %s\n",
		ms(r.Latency.P50), ms(r.Latency.P90), ms(r.Latency.P99), ms(r.Latency.Max))
	fmt.Fprintf(&b, "generator   %.2fs encoding; senders waited %.2fs for the encoder (%d times)\n", r.EncodeSeconds, r.EncoderWaitSeconds, r.EncoderStalls)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Result) statusString() string {
	return statusString(r.Status)
}

func statusString(m map[string]int64) string {
	if len(m) == 0 {
		return "no responses"
	}
	codes := make([]string, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = c + ": " + strconv.FormatInt(m[c], 10)
	}
	return strings.Join(parts, ", ")
}

// si formats v with a k/M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func ms(sec float64) string {
	return fmt.Sprintf("%.1fms", sec*1e3)
}
