// Package receiver is the remote-write endpoint: an HTTP handler that
// validates 1.0 and 2.0 requests and hands the valid series to an Enqueuer.
//
// It is written instead of client_golang's exp/api/remote.NewWriteHandler,
// which reads every body with io.ReadAll into a fresh message, for pooled
// buffers and decode state on the hot path, per-series partial writes with
// exact Written headers in both protocols, and our own metrics and status
// mapping (a full queue is 503 with Retry-After).
//
// # Ownership
//
// Requests reach the Enqueuer in the form (prw.Request.Raw), not decoded.
// The form is pooled memory: an Enqueuer copies what it keeps past Enqueue.
package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/registry"
)

// Enqueuer takes a validated request, which it must not retain. Enqueue is
// called concurrently; its error tells the answer (see enqueueStatus).
type Enqueuer interface {
	Enqueue(ctx context.Context, req *prw.Request) error
}

// defaultMaxBytes is the default of both Options limits: 32 MiB, the
// decoded-size limit of Prometheus's own write handler.
const defaultMaxBytes = 32 << 20

// Options are the Handler's limits; zero fields mean the default.
type Options struct {
	// MaxRequestBytes caps the compressed body (413 beyond). Default 32 MiB.
	MaxRequestBytes int64
	// MaxDecodedBytes caps the snappy-decoded body, as its header claims
	// (400 beyond). Default 32 MiB.
	MaxDecodedBytes int64
	// PlainV2 decodes 2.0 requests as 1.0 data (see prw.NewPlainV2Decoder),
	// for when what takes them takes no more.
	PlainV2 bool
}

// Handler is the remote-write HTTP handler, holding the buffer and decoder
// pools: build one and serve every request with it, concurrently.
type Handler struct {
	logger *slog.Logger
	q      Enqueuer
	opts   atomic.Pointer[Options] // see SetOptions

	metrics  *registry.ReceiverMetrics
	rejected map[string]prometheus.Counter
	invalid  [prw.NumInvalidReasons]prometheus.Counter
	// By prw.Protocol, as decoders.
	requests, samples, histograms, exemplars [2]prometheus.Counter

	// bufs holds *[]byte for compressed and decoded bodies.
	bufs     sync.Pool
	decoders [2]*prw.Decoder // by prw.Protocol
	plainV2  *prw.Decoder    // see Options.PlainV2
}

// NewHandler returns a handler passing requests to q; a nil logger discards.
func NewHandler(logger *slog.Logger, metrics *registry.ReceiverMetrics, q Enqueuer, opts Options) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		logger:   logger.With("component", "receiver"),
		q:        q,
		metrics:  metrics,
		rejected: make(map[string]prometheus.Counter, len(registry.RejectReasons)+1),
		bufs:     sync.Pool{New: func() any { return new([]byte) }},
		decoders: [2]*prw.Decoder{prw.NewV1Decoder(), prw.NewV2Decoder()},
		plainV2:  prw.NewPlainV2Decoder(),
	}
	h.SetOptions(opts)
	for _, p := range []prw.Protocol{prw.ProtoV1, prw.ProtoV2} {
		h.requests[p] = metrics.Requests.WithLabelValues(p.Label())
		h.samples[p] = metrics.Samples.WithLabelValues(p.Label())
		h.histograms[p] = metrics.Histograms.WithLabelValues(p.Label())
		h.exemplars[p] = metrics.Exemplars.WithLabelValues(p.Label())
	}
	for _, r := range registry.RejectReasons {
		h.rejected[r] = metrics.Rejected.WithLabelValues(r)
	}
	for r := range prw.InvalidReason(prw.NumInvalidReasons) {
		h.invalid[r] = metrics.InvalidSeries.WithLabelValues(r.String())
	}
	return h
}

// SetOptions changes the limits for requests from now on, on reload.
func (h *Handler) SetOptions(opts Options) {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = defaultMaxBytes
	}
	if opts.MaxDecodedBytes <= 0 {
		opts.MaxDecodedBytes = defaultMaxBytes
	}
	h.opts.Store(&opts)
}

// Options returns the options in force.
func (h *Handler) Options() Options { return *h.opts.Load() }

// ServeHTTP handles one remote-write request; see the package documentation.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	opts := h.opts.Load()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, http.StatusMethodNotAllowed, registry.ReasonMethod, "method not allowed, use POST", nil)
		return
	}
	proto, err := parseContentType(r.Header.Get("Content-Type"))
	if err != nil {
		h.reject(w, http.StatusUnsupportedMediaType, registry.ReasonContentType, err.Error(), err)
		return
	}
	if proto == prw.ProtoV2 {
		setWritten(w, 0, 0, 0) // every answer carries the true counts
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		h.reject(w, http.StatusUnsupportedMediaType, registry.ReasonContentEncoding,
			fmt.Sprintf("unsupported Content-Encoding %q, use snappy", prw.Truncate(enc, 64)), nil)
		return
	}
	if r.ContentLength > opts.MaxRequestBytes {
		h.reject(w, http.StatusRequestEntityTooLarge, registry.ReasonTooLarge, tooLargeMsg(opts), nil)
		return
	}

	bufCap := 64 << 10 // a first guess when the length is unknown
	if r.ContentLength >= 0 {
		bufCap = int(r.ContentLength)
	}
	bodyBuf := h.getBuf(bufCap)
	defer h.putBuf(bodyBuf)
	body, err := readBody(http.MaxBytesReader(w, r.Body, opts.MaxRequestBytes), r.ContentLength, *bodyBuf)
	*bodyBuf = body
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.reject(w, http.StatusRequestEntityTooLarge, registry.ReasonTooLarge, tooLargeMsg(opts), err)
			return
		}
		h.reject(w, http.StatusBadRequest, registry.ReasonReadError, "read body: "+err.Error(), err)
		return
	}

	// DecodedLen reads the snappy header: an oversized claim is refused
	// before anything is allocated, a malformed one by Decode.
	n, err := snappy.DecodedLen(body)
	if err == nil && int64(n) > opts.MaxDecodedBytes {
		h.reject(w, http.StatusBadRequest, registry.ReasonDecodedTooLarge,
			fmt.Sprintf("decoded body of %d bytes is over the limit of %d bytes", n, opts.MaxDecodedBytes), nil)
		return
	}
	msgBuf := h.getBuf(n)
	defer h.putBuf(msgBuf)
	msg, err := snappy.Decode((*msgBuf)[:cap(*msgBuf)], body)
	if err != nil {
		h.reject(w, http.StatusBadRequest, registry.ReasonSnappy, "decode snappy: "+err.Error(), err)
		return
	}
	h.metrics.DecodedBytes.Observe(float64(len(msg)))

	// The decoded state, which may point into msg, is released (deferred
	// last in, first out) before msg's buffer.
	dec := h.decoders[proto]
	if proto == prw.ProtoV2 && opts.PlainV2 {
		dec = h.plainV2
	}
	d, err := dec.Decode(msg)
	if err != nil {
		h.reject(w, http.StatusBadRequest, registry.ReasonProtobuf, "decode "+proto.String()+": "+err.Error(), err)
		return
	}
	defer dec.Release(d)
	h.requests[proto].Inc()
	for reason, c := range d.Invalid.ByReason {
		if c > 0 {
			h.invalid[reason].Add(float64(c))
		}
	}

	req := &d.Req
	if d.Whole {
		req.Raw.Compressed = body
	}
	if len(req.Raw.Series) > 0 || len(req.Raw.Metadata) > 0 {
		if err := h.q.Enqueue(r.Context(), req); err != nil {
			code, reason, retryAfter := enqueueStatus(err)
			if retryAfter > 0 {
				w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(retryAfter), 10))
			}
			h.reject(w, code, reason, http.StatusText(code)+": "+err.Error(), err)
			return
		}
		samples, histograms, exemplars := req.Raw.Samples, req.Raw.Histograms, req.Raw.Exemplars
		h.samples[proto].Add(float64(samples))
		h.histograms[proto].Add(float64(histograms))
		h.exemplars[proto].Add(float64(exemplars))
		if proto == prw.ProtoV2 {
			setWritten(w, samples, histograms, exemplars)
		}
	}
	if d.Invalid.Count > 0 {
		h.reject(w, http.StatusBadRequest, registry.ReasonInvalidSeries,
			fmt.Sprintf("%d of %d series refused, the rest were accepted; first: %s",
				d.Invalid.Count, d.Invalid.Count+len(req.Raw.Series), d.Invalid.First), nil)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseContentType returns the protocol a Content-Type names. An empty
// Content-Type is 1.0, as in Prometheus's write handler.
func parseContentType(ct string) (prw.Protocol, error) {
	switch ct { // fast path: what Prometheus sends
	case "", prw.ContentTypeV1:
		return prw.ProtoV1, nil
	case prw.ContentTypeV2:
		return prw.ProtoV2, nil
	}
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, fmt.Errorf("parse Content-Type: %w", err)
	}
	if mediaType != prw.ContentTypeV1 {
		return 0, fmt.Errorf("unsupported media type %q, use application/x-protobuf", prw.Truncate(mediaType, 64))
	}
	switch p := params["proto"]; p {
	case "", prw.MessageV1:
		return prw.ProtoV1, nil
	case prw.MessageV2:
		return prw.ProtoV2, nil
	default:
		return 0, fmt.Errorf("unsupported proto %q, use %s or %s", prw.Truncate(p, 64), prw.MessageV1, prw.MessageV2)
	}
}

// enqueueStatus returns the status, reason (registry.RejectReasons) and
// Retry-After that an Enqueue error's chain gives by StatusCode(), Reason()
// and RetryAfter(): by default a 500; a 429 or 503 waits at least 1s.
func enqueueStatus(err error) (code int, reason string, retryAfter time.Duration) {
	code, reason = http.StatusInternalServerError, registry.ReasonInternal
	var (
		c interface{ StatusCode() int }
		r interface{ Reason() string }
		d interface{ RetryAfter() time.Duration }
	)
	if errors.As(err, &c) {
		code = c.StatusCode()
	}
	if errors.As(err, &r) {
		reason = r.Reason()
	}
	if errors.As(err, &d) {
		retryAfter = d.RetryAfter()
	}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable || retryAfter > 0 {
		retryAfter = max(retryAfter, time.Second)
	}
	return code, reason, retryAfter
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// reject answers with code and msg and counts reason; err is for the log.
func (h *Handler) reject(w http.ResponseWriter, code int, reason, msg string, err error) {
	c, ok := h.rejected[reason]
	if !ok {
		c = h.rejected[registry.ReasonInternal]
	}
	c.Inc()
	h.logger.Debug("write request rejected", "status", code, "reason", reason, "msg", msg, "err", err)
	http.Error(w, msg, code)
}

func tooLargeMsg(opts *Options) string {
	return fmt.Sprintf("request body is over the limit of %d bytes", opts.MaxRequestBytes)
}

func setWritten(w http.ResponseWriter, samples, histograms, exemplars int) {
	hdr := w.Header()
	hdr.Set(prw.HeaderSamplesWritten, strconv.Itoa(samples))
	hdr.Set(prw.HeaderHistogramsWritten, strconv.Itoa(histograms))
	hdr.Set(prw.HeaderExemplarsWritten, strconv.Itoa(exemplars))
}

func (h *Handler) getBuf(n int) *[]byte {
	p := h.bufs.Get().(*[]byte)
	if cap(*p) < n {
		*p = make([]byte, 0, n) // the pool converges on the sizes needed
	}
	return p
}

// putBuf returns p to the pool unless it is outsized; see prw.MaxPooledBytes.
func (h *Handler) putBuf(p *[]byte) {
	if cap(*p) > prw.MaxPooledBytes {
		return
	}
	*p = (*p)[:0]
	h.bufs.Put(p)
}

// readBody reads r into buf, in one go when contentLength is known (buf
// has room for it), else growing buf as needed.
func readBody(r io.Reader, contentLength int64, buf []byte) ([]byte, error) {
	if contentLength < 0 {
		w := bytes.NewBuffer(buf[:0])
		_, err := w.ReadFrom(r)
		return w.Bytes(), err
	}
	n, err := io.ReadFull(r, buf[:contentLength])
	return buf[:n], err
}
