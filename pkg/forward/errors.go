package forward

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rwgateway/gateway/pkg/registry"
)

// StatusError is an Enqueue error that says how a write handler answers
// it: the HTTP status, the reject reason (of registry.RejectReasons) and,
// for a refusal worth retrying, the Retry-After delay. Every Enqueue error
// wraps one, but ErrNotConfigured and the context's errors.
type StatusError struct {
	msg        string
	code       int
	reason     string
	retryAfter time.Duration
	wrapped    error
}

func (e *StatusError) Error() string             { return e.msg }
func (e *StatusError) Unwrap() error             { return e.wrapped }
func (e *StatusError) StatusCode() int           { return e.code }
func (e *StatusError) Reason() string            { return e.reason }
func (e *StatusError) RetryAfter() time.Duration { return e.retryAfter }

// withMsg returns a copy of e with message msg that wraps e (for errors.Is).
func (e *StatusError) withMsg(msg string) *StatusError {
	c := *e
	c.msg, c.wrapped = msg, e
	return &c
}

var (
	// ErrQueueFull is wrapped by Enqueue's error when an upstream's queue
	// has no room for the request: 503, and the delay the client should
	// wait in its RetryAfter.
	ErrQueueFull = &StatusError{msg: "upstream queue full", code: http.StatusServiceUnavailable, reason: registry.ReasonQueueFull, retryAfter: time.Second}
	// ErrTooLarge is wrapped by Enqueue's error when a request is larger
	// than an upstream's disk queue can ever hold: 413, retries cannot help.
	ErrTooLarge = &StatusError{msg: "larger than an upstream's queue", code: http.StatusRequestEntityTooLarge, reason: registry.ReasonTooLarge}
	// ErrStopped is returned by Enqueue and ApplyConfig after Stop: 503, so
	// that the client retries, perhaps against another replica.
	ErrStopped = &StatusError{msg: "forwarding stopped", code: http.StatusServiceUnavailable, reason: registry.ReasonShuttingDown, retryAfter: time.Second}
	// ErrNotConfigured is returned by Enqueue before the first ApplyConfig.
	ErrNotConfigured = errors.New("no upstreams configured")
)

// full counts a request refused for a full queue, and returns its error.
func (f *forwarder) full() error {
	f.m.QueueFull.Inc()
	f.refused.Store(true)
	e := ErrQueueFull.withMsg(fmt.Sprintf("upstream %q: %s", f.name, ErrQueueFull.msg))
	// The client waits as long as a retry does now, at least a second.
	e.retryAfter = min(max(time.Duration(f.backoffHint.Load()), time.Second), time.Minute)
	return e
}

// tooLarge returns the error for a request the disk queue cannot hold.
func (f *forwarder) tooLarge(detail string) error {
	return ErrTooLarge.withMsg(fmt.Sprintf("upstream %q: %s: %s", f.name, ErrTooLarge.msg, detail))
}
