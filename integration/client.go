//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

var writeClient = &http.Client{Timeout: 30 * time.Second}

// WriteResponse is the gateway's answer to a write.
type WriteResponse struct {
	Status int
	Header http.Header
	Body   string
}

// PostV1 sends req as remote write 1.0 to url.
func PostV1(url string, req *prompb.WriteRequest) (WriteResponse, error) {
	raw, err := req.Marshal()
	if err != nil {
		return WriteResponse{}, fmt.Errorf("marshal 1.0 request: %w", err)
	}
	return post(url, raw, "application/x-protobuf", "0.1.0")
}

// PostV2 sends req as remote write 2.0 to url.
func PostV2(url string, req *writev2.Request) (WriteResponse, error) {
	raw, err := req.Marshal()
	if err != nil {
		return WriteResponse{}, fmt.Errorf("marshal 2.0 request: %w", err)
	}
	return post(url, raw, "application/x-protobuf;proto=io.prometheus.write.v2.Request", "2.0.0")
}

func post(url string, raw []byte, contentType, version string) (WriteResponse, error) {
	body := snappy.Encode(nil, raw)
	hreq, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return WriteResponse{}, err
	}
	hreq.Header.Set("Content-Type", contentType)
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", version)
	hreq.Header.Set("User-Agent", "rwgateway-integration-test")
	resp, err := writeClient.Do(hreq)
	if err != nil {
		return WriteResponse{}, fmt.Errorf("post %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return WriteResponse{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}
