// Package rwtest builds realistic remote-write payloads for tests and
// benchmarks: node_exporter-like series with ten labels, as remote write 1.0
// and 2.0 messages, and the snappy-compressed bodies a Prometheus sender
// posts.
//
// Everything here is deterministic: the same arguments give the same
// messages, so a test can rebuild what it sent and compare it with what
// arrived. It is a non-test package so that other packages' tests,
// integration tests and benchmarks can import it; nothing in the gateway
// binary does.
package rwtest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwgateway/gateway/pkg/prw"
)

// Content types a Prometheus sender sets for each protocol.
const (
	ContentTypeV1 = prw.ContentTypeV1
	ContentTypeV2 = prw.ContentTypeV2
)

// BaseTimestamp is the timestamp in milliseconds of the first sample of
// every series; later samples of a series are 15 s apart.
const BaseTimestamp int64 = 1_700_000_000_000

// StartTimestamp is the 2.0 start timestamp of every sample of V2Request:
// one hour before BaseTimestamp.
const StartTimestamp = BaseTimestamp - 3_600_000

// Metric metadata that V2Request attaches to every series.
const (
	MetricName = "node_cpu_seconds_total"
	MetricHelp = "Seconds the CPUs spent in each mode."
	MetricUnit = "seconds"
)

var cpuModes = [...]string{"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"}

// SeriesLabels returns the labels of series i: ten labels shaped like
// node_exporter's node_cpu_seconds_total on a large fleet. Different i give
// different label sets.
func SeriesLabels(i int) labels.Labels {
	return labels.FromStrings(
		labels.MetricName, MetricName,
		"cluster", "eu-west-prod",
		"cpu", fmt.Sprint((i/len(cpuModes))%64),
		"datacenter", "dc-2",
		"env", "production",
		"instance", fmt.Sprintf("node-%05d.example.internal:9100", i/(64*len(cpuModes))),
		"job", "node",
		"mode", cpuModes[i%len(cpuModes)],
		"rack", fmt.Sprintf("r%02d", (i/(64*len(cpuModes)))%40),
		"region", "eu-west-1",
	)
}

// SampleValue returns the value of sample j of series i.
func SampleValue(i, j int) float64 {
	return float64(i)*1.5 + float64(j)*0.25
}

// SampleTimestamp returns the timestamp of sample j of any series.
func SampleTimestamp(j int) int64 {
	return BaseTimestamp + int64(j)*15_000
}

// V1Request returns a remote write 1.0 request of series series with
// samplesPerSeries float samples each (see SeriesLabels, SampleValue and
// SampleTimestamp). Like Prometheus's sample batches it has no metadata,
// exemplars or histograms.
func V1Request(series, samplesPerSeries int) *prompb.WriteRequest {
	req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, series)}
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		ts.Labels = prompb.FromLabels(SeriesLabels(i), nil)
		ts.Samples = make([]prompb.Sample, samplesPerSeries)
		for j := range ts.Samples {
			ts.Samples[j] = prompb.Sample{Value: SampleValue(i, j), Timestamp: SampleTimestamp(j)}
		}
	}
	return req
}

// V2Request returns the remote write 2.0 form of V1Request(series,
// samplesPerSeries): the same labels and samples, plus per-series counter
// metadata (MetricHelp, MetricUnit) and StartTimestamp on every sample.
func V2Request(series, samplesPerSeries int) *writev2.Request {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{Timeseries: make([]writev2.TimeSeries, series)}
	help, unit := st.Symbolize(MetricHelp), st.Symbolize(MetricUnit)
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		ts.LabelsRefs = st.SymbolizeLabels(SeriesLabels(i), nil)
		ts.Metadata = writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: help, UnitRef: unit}
		ts.Samples = make([]writev2.Sample, samplesPerSeries)
		for j := range ts.Samples {
			ts.Samples[j] = writev2.Sample{Value: SampleValue(i, j), Timestamp: SampleTimestamp(j), StartTimestamp: StartTimestamp}
		}
	}
	req.Symbols = st.Symbols()
	return req
}

// Marshaler is a protobuf message: *prompb.WriteRequest and
// *writev2.Request are.
type Marshaler interface {
	Marshal() ([]byte, error)
}

// Encode returns msg marshalled and snappy-compressed (block format), as a
// remote-write body. It panics if msg cannot be marshalled, which does not
// happen for the generated remote-write types.
func Encode(msg Marshaler) []byte {
	b, err := msg.Marshal()
	if err != nil {
		panic(fmt.Sprintf("rwtest: marshal: %v", err))
	}
	return snappy.Encode(nil, b)
}

// NewHTTPRequest returns a POST of body to /api/v1/write with the headers a
// Prometheus sender of protocol p sets, for handing to a handler directly
// (httptest.NewRequest; use http.NewRequest to send it over a network).
func NewHTTPRequest(p prw.Protocol, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	r.Header.Set("Content-Encoding", "snappy")
	r.Header.Set("User-Agent", "Prometheus/3.0.0")
	if p == prw.ProtoV2 {
		r.Header.Set("Content-Type", ContentTypeV2)
		r.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
	} else {
		r.Header.Set("Content-Type", ContentTypeV1)
		r.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	}
	return r
}
