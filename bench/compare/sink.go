package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// Field numbers of prometheus.WriteRequest and io.prometheus.write.v2.Request
// that the sink counts.
const (
	fieldTimeseries   = 1 // WriteRequest.timeseries
	fieldSamples      = 2 // TimeSeries.samples, in both
	fieldHistograms   = 4 // TimeSeries.histograms
	fieldTimeseriesV2 = 5 // v2.Request.timeseries
	fieldHistogramsV2 = 3 // v2.TimeSeries.histograms
)

// maxSinkBody bounds one request body, compressed and decoded.
const maxSinkBody = 64 << 20

// counter counts what one upstream URL of the sink received.
type counter struct {
	requests   atomic.Int64
	samples    atomic.Int64
	histograms atomic.Int64
	bad        atomic.Int64 // requests answered 4xx
	// delay is how long the sink waits before answering a request of
	// this path (and counting it): a slow upstream.
	delay time.Duration
}

// sink is an HTTP server that decodes remote write 1.0 and 2.0
// (snappy-compressed prometheus.WriteRequest or io.prometheus.write.v2.Request,
// answered with the Written headers) and counts series' samples per URL
// path, without unmarshalling into structs. Paths are registered per run so that late
// requests of an earlier run are counted apart (stray) and not mistaken for
// deliveries. A path may answer after a delay, like a distant or loaded
// upstream. Safe for concurrent use.
type sink struct {
	srv   *http.Server
	addr  string
	paths sync.Map // path → *counter
	stray counter
	bufs  sync.Pool // *[]byte
	done  chan struct{}
}

func startSink() (*sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &sink{addr: l.Addr().String(), done: make(chan struct{})}
	s.srv = &http.Server{Handler: s}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(l)
	}()
	return s, nil
}

func (s *sink) close() {
	_ = s.srv.Close()
	<-s.done
}

// register returns the URL and counter of a new path, whose requests are
// answered (and counted) delay after they have been read.
func (s *sink) register(path string, delay time.Duration) (string, *counter) {
	c := &counter{delay: delay}
	s.paths.Store(path, c)
	return "http://" + s.addr + path, c
}

func (s *sink) unregister(path string) { s.paths.Delete(path) }

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &s.stray
	if v, ok := s.paths.Load(r.URL.Path); ok {
		c = v.(*counter)
	}
	if r.Method != http.MethodPost {
		c.bad.Add(1)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "snappy" {
		c.bad.Add(1)
		http.Error(w, fmt.Sprintf("Content-Encoding %q, want snappy", enc), http.StatusUnsupportedMediaType)
		return
	}
	bp := s.getBuf()
	defer s.bufs.Put(bp)
	body, err := readAll(io.LimitReader(r.Body, maxSinkBody+1), (*bp)[:0])
	*bp = body
	if err != nil || len(body) > maxSinkBody {
		c.bad.Add(1)
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	v2 := strings.Contains(r.Header.Get("Content-Type"), "io.prometheus.write.v2.Request")
	samples, hists, err := s.count(body, v2)
	if err != nil {
		c.bad.Add(1)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if c.delay > 0 {
		t := time.NewTimer(c.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The sender gave up and will send it again: not delivered.
			t.Stop()
			return
		}
	}
	c.requests.Add(1)
	c.samples.Add(samples)
	c.histograms.Add(hists)
	if v2 {
		w.Header().Set(prw.HeaderSamplesWritten, strconv.FormatInt(samples, 10))
		w.Header().Set(prw.HeaderHistogramsWritten, strconv.FormatInt(hists, 10))
		w.Header().Set(prw.HeaderExemplarsWritten, "0")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *sink) getBuf() *[]byte {
	if v := s.bufs.Get(); v != nil {
		return v.(*[]byte)
	}
	b := make([]byte, 0, 1<<20)
	return &b
}

// count decodes a snappy-compressed WriteRequest (v2: a v2.Request) and
// counts its samples and histogram samples.
func (s *sink) count(body []byte, v2 bool) (samples, hists int64, err error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return 0, 0, fmt.Errorf("snappy: %w", err)
	}
	if n > maxSinkBody {
		return 0, 0, errors.New("decoded body too large")
	}
	dp := s.getBuf()
	defer s.bufs.Put(dp)
	if cap(*dp) < n {
		*dp = make([]byte, n)
	}
	raw, err := snappy.Decode((*dp)[:n], body)
	if err != nil {
		return 0, 0, fmt.Errorf("snappy: %w", err)
	}
	if v2 {
		return countRequest(raw, fieldTimeseriesV2, fieldHistogramsV2)
	}
	return countRequest(raw, fieldTimeseries, fieldHistograms)
}

// countRequest counts the samples and histograms of the series of a
// marshalled request whose series are field series and have their
// histograms in field histograms.
func countRequest(raw []byte, series, histograms protowire.Number) (samples, hists int64, err error) {
	err = fields(raw, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != series || typ != protowire.BytesType {
			return nil
		}
		return fields(v, func(num protowire.Number, typ protowire.Type, _ []byte) error {
			switch {
			case num == fieldSamples && typ == protowire.BytesType:
				samples++
			case num == histograms && typ == protowire.BytesType:
				hists++
			}
			return nil
		})
	})
	return samples, hists, err
}

// fields calls f for each field of message b with its value bytes (for
// length-delimited fields, without the length).
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("protobuf: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			var m int
			v, m = protowire.ConsumeBytes(b)
			if m < 0 {
				return fmt.Errorf("protobuf: %w", protowire.ParseError(m))
			}
			n = m
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("protobuf: %w", protowire.ParseError(n))
			}
			v = b[:n]
		}
		if err := f(num, typ, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// readAll reads r to its end, appending to buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
