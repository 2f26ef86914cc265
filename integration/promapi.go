//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// promSample is one element of an instant vector from the Prometheus HTTP API.
type promSample struct {
	Metric map[string]string
	// Value is the value exactly as the API formatted it.
	Value string
}

// Key renders the labels sorted, as {a="1", b="2"}, without skip.
func (s promSample) Key(skip ...string) string {
	names := make([]string, 0, len(s.Metric))
outer:
	for n := range s.Metric {
		for _, sk := range skip {
			if n == sk {
				continue outer
			}
		}
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", n, s.Metric[n])
	}
	b.WriteByte('}')
	return b.String()
}

var apiClient = &http.Client{Timeout: 10 * time.Second}

// queryInstant runs an instant query against the Prometheus at base
// (http://host:port) at time at; a zero at means now.
func queryInstant(base, query string, at time.Time) ([]promSample, error) {
	v := url.Values{"query": {query}}
	if !at.IsZero() {
		v.Set("time", formatUnix(at))
	}
	resp, err := apiClient.Get(base + "/api/v1/query?" + v.Encode())
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", query, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read query response: %w", err)
	}
	var r struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode query response (%s): %w: %s", resp.Status, err, firstLines(body, 5))
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s: %s %s", query, resp.Status, r.ErrorType, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %q, want vector", query, r.Data.ResultType)
	}
	out := make([]promSample, 0, len(r.Data.Result))
	for _, e := range r.Data.Result {
		val, ok := e.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("query %s: value %v is not a string", query, e.Value[1])
		}
		out = append(out, promSample{Metric: e.Metric, Value: val})
	}
	return out, nil
}
