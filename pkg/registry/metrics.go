package registry

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reasons a whole request is rejected by the receiver; the values of the
// reason label of gateway_receiver_rejected_requests_total.
const (
	ReasonMethod          = "method_not_allowed"
	ReasonContentType     = "unsupported_content_type"
	ReasonContentEncoding = "unsupported_content_encoding"
	ReasonTooLarge        = "too_large"
	ReasonDecodedTooLarge = "decoded_too_large"
	ReasonSnappy          = "snappy"
	ReasonProtobuf        = "protobuf"
	ReasonInvalidSeries   = "invalid_series"
	ReasonQueueFull       = "queue_full"
	ReasonInternal        = "internal"
	ReasonShuttingDown    = "shutting_down"
	ReasonReadError       = "read_error" // the client went away or sent less than its Content-Length
	ReasonLimit           = "limit"      // a tenant or global limit; gateway_tenant_rejected_requests_total has the detail
)

// RejectReasons lists every reason value, so each reads 0 from the start.
var RejectReasons = []string{
	ReasonMethod, ReasonContentType, ReasonContentEncoding, ReasonTooLarge,
	ReasonDecodedTooLarge, ReasonSnappy, ReasonProtobuf, ReasonInvalidSeries,
	ReasonQueueFull, ReasonInternal, ReasonShuttingDown, ReasonReadError, ReasonLimit,
}

// ProtocolLabels are the values of the protocol label: remote write 1.0 and 2.0.
var ProtocolLabels = []string{"1.0", "2.0"}

// ReceiverMetrics are the write handler's collectors.
type ReceiverMetrics struct {
	// Requests counts decoded requests by protocol.
	Requests *prometheus.CounterVec
	// Samples, Histograms and Exemplars count what was accepted, by protocol.
	Samples    *prometheus.CounterVec
	Histograms *prometheus.CounterVec
	Exemplars  *prometheus.CounterVec
	// Rejected counts requests answered with an error status, by reason.
	Rejected *prometheus.CounterVec
	// InvalidSeries counts series dropped by validation, by reason.
	InvalidSeries *prometheus.CounterVec
	// DecodedBytes observes the decoded size of each request.
	DecodedBytes prometheus.Histogram
}

// NewReceiverMetrics creates and registers the receiver's collectors.
func NewReceiverMetrics(reg prometheus.Registerer) *ReceiverMetrics {
	f := promauto.With(reg)
	m := &ReceiverMetrics{
		Requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "receiver", Name: "requests_total",
			Help: "Write requests decoded, by remote-write protocol version.",
		}, []string{"protocol"}),
		Samples: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "receiver", Name: "samples_total",
			Help: "Float samples accepted, by remote-write protocol version.",
		}, []string{"protocol"}),
		Histograms: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "receiver", Name: "histograms_total",
			Help: "Native histogram samples accepted, by remote-write protocol version.",
		}, []string{"protocol"}),
		Exemplars: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "receiver", Name: "exemplars_total",
			Help: "Exemplars accepted, by remote-write protocol version.",
		}, []string{"protocol"}),
		Rejected: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "receiver", Name: "rejected_requests_total",
			Help: "Write requests answered with an error status, by reason.",
		}, []string{"reason"}),
		InvalidSeries: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "receiver", Name: "invalid_series_total",
			Help: "Series refused by validation (the rest of their request was still accepted), by reason.",
		}, []string{"reason"}),
		DecodedBytes: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "receiver", Name: "decoded_request_bytes",
			Help:    "Size of write requests after snappy decoding.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 9), // 1 KiB .. 64 MiB
		}),
	}
	for _, p := range ProtocolLabels {
		m.Requests.WithLabelValues(p)
		m.Samples.WithLabelValues(p)
		m.Histograms.WithLabelValues(p)
		m.Exemplars.WithLabelValues(p)
	}
	for _, r := range RejectReasons {
		m.Rejected.WithLabelValues(r)
	}
	return m
}

// HTTPMetrics are the HTTP server's collectors.
type HTTPMetrics struct {
	// Duration observes request latency by route pattern (never the raw
	// path, so clients cannot create series), method and status code.
	Duration *prometheus.HistogramVec
	// InFlight is the number of requests being served.
	InFlight prometheus.Gauge
}

// NewHTTPMetrics creates and registers the HTTP server's collectors.
func NewHTTPMetrics(reg prometheus.Registerer) *HTTPMetrics {
	f := promauto.With(reg)
	return &HTTPMetrics{
		Duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Latency of HTTP requests, by route pattern, method and status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"handler", "method", "code"}),
		InFlight: f.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "http", Name: "requests_in_flight",
			Help: "HTTP requests being served.",
		}),
	}
}

// Reasons a forwarder drops data; the values of the reason label of
// gateway_upstream_dropped_*_total.
const (
	DropRelabel     = "relabel"                 // write_relabel_configs dropped the series
	DropHTTPStatus  = "http_4xx"                // the upstream refused the batch with a non-retryable 4xx
	DropTooLarge    = "too_large"               // a single series was larger than the upstream accepts
	DropEncode      = "encode"                  // the batch could not be encoded
	DropShutdown    = "shutdown"                // the flush deadline passed on shutdown
	DropUnsupported = "unsupported_by_upstream" // send_exemplars/send_native_histograms off
	DropOldReceiver = "old_receiver"            // a 2.0 upstream answered without Written headers, and the 1.0 resend also failed
	DropSampleAge   = "sample_age_limit"        // older than queue_config.sample_age_limit
)

// DropReasons lists every drop reason, so each reads 0 from the start.
var DropReasons = []string{DropRelabel, DropHTTPStatus, DropTooLarge, DropEncode, DropShutdown, DropUnsupported, DropOldReceiver, DropSampleAge}

// ForwardMetrics are the forwarders' collectors, one series per upstream
// (label "upstream") on shared vectors.
type ForwardMetrics struct {
	// HandedSamples, HandedHistograms and HandedExemplars count what each
	// upstream was handed, after routing and before relabeling, by tenant
	// ("" without one; tenant ids are bounded by the configuration): for
	// every upstream, handed = sent + dropped (all reasons) + pending.
	HandedSamples    *prometheus.CounterVec // upstream, tenant
	HandedHistograms *prometheus.CounterVec // upstream, tenant
	HandedExemplars  *prometheus.CounterVec // upstream, tenant
	// PendingSamples is what was handed and is neither sent nor dropped
	// yet: queued in memory or on disk, or in flight.
	PendingSamples *prometheus.GaugeVec   // upstream
	SentSamples    *prometheus.CounterVec // upstream
	SentHistograms *prometheus.CounterVec // upstream
	SentExemplars  *prometheus.CounterVec // upstream
	SentMetadata   *prometheus.CounterVec // upstream
	SentBatches    *prometheus.CounterVec // upstream
	SentBytes      *prometheus.CounterVec // upstream: compressed bytes of acknowledged batches
	// FailedSamples counts samples of failed send attempts (retried or not).
	FailedSamples *prometheus.CounterVec // upstream
	// RetriedSamples counts samples sent again after a recoverable failure.
	RetriedSamples *prometheus.CounterVec // upstream
	// DroppedSamples counts samples, histograms and exemplars given up on.
	DroppedSamples *prometheus.CounterVec // upstream, reason
	// Requests counts send attempts by HTTP status code ("error" for network errors).
	Requests *prometheus.CounterVec // upstream, code
	// QueueFull counts client requests refused because this upstream's queue was full.
	QueueFull     *prometheus.CounterVec // upstream
	QueueLength   *prometheus.GaugeVec   // upstream: samples waiting
	QueueCapacity *prometheus.GaugeVec   // upstream
	// QueueMemory is the bytes of queued data held in memory, against
	// queue_config.max_memory_bytes.
	QueueMemory *prometheus.GaugeVec // upstream
	Shards      *prometheus.GaugeVec // upstream: senders in use
	// ShardsDesired is the number of shards the last update computed,
	// within min_shards and max_shards.
	ShardsDesired   *prometheus.GaugeVec     // upstream
	SendDuration    *prometheus.HistogramVec // upstream
	LastSendSuccess *prometheus.GaugeVec     // upstream: unix seconds
	// LearnedMaxSamples and LearnedMaxBytes are the largest batch an
	// upstream accepted after it refused one as too large (413), to which
	// later batches are cut; 0 while it has refused none.
	LearnedMaxSamples *prometheus.GaugeVec // upstream
	LearnedMaxBytes   *prometheus.GaugeVec // upstream
	// QueueLag is the age of the oldest disk queue record not yet
	// acknowledged by the upstream: now minus the time it was appended; 0
	// when all is sent.
	QueueLag *prometheus.GaugeVec // upstream
	// OrphanedDirectories and OrphanedBytes describe the queue directories
	// of upstreams that are no longer configured.
	OrphanedDirectories prometheus.Gauge
	OrphanedBytes       prometheus.Gauge
}

// NewForwardMetrics creates and registers the forwarders' collectors.
func NewForwardMetrics(reg prometheus.Registerer) *ForwardMetrics {
	f := promauto.With(reg)
	up := []string{"upstream"}
	upTenant := []string{"upstream", "tenant"}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return f.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "upstream", Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return f.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "upstream", Name: name, Help: help}, up)
	}
	return &ForwardMetrics{
		HandedSamples:    counter("handed_samples_total", "Float samples handed to the upstream, after routing and before relabeling, by tenant.", upTenant),
		HandedHistograms: counter("handed_histograms_total", "Native histogram samples handed to the upstream, after routing and before relabeling, by tenant.", upTenant),
		HandedExemplars:  counter("handed_exemplars_total", "Exemplars handed to the upstream, after routing and before relabeling, by tenant.", upTenant),
		PendingSamples:   gauge("pending_samples", "Samples, histograms and exemplars handed to the upstream and neither sent nor dropped yet."),
		SentSamples:      counter("sent_samples_total", "Float samples acknowledged by the upstream.", up),
		SentHistograms:   counter("sent_histograms_total", "Native histogram samples acknowledged by the upstream.", up),
		SentExemplars:    counter("sent_exemplars_total", "Exemplars acknowledged by the upstream.", up),
		SentMetadata:     counter("sent_metadata_total", "Metadata entries acknowledged by the upstream.", up),
		SentBatches:      counter("sent_batches_total", "Batches acknowledged by the upstream.", up),
		SentBytes:        counter("sent_bytes_total", "Compressed bytes of batches acknowledged by the upstream.", up),
		FailedSamples:    counter("failed_samples_total", "Samples, histograms and exemplars in send attempts that failed.", up),
		RetriedSamples:   counter("retried_samples_total", "Samples, histograms and exemplars sent again after a recoverable failure.", up),
		DroppedSamples:   counter("dropped_samples_total", "Samples, histograms and exemplars given up on, by reason.", []string{"upstream", "reason"}),
		Requests:         counter("requests_total", "Send attempts by HTTP status code (\"error\" when no response arrived).", []string{"upstream", "code"}),
		QueueFull:        counter("queue_full_total", "Client write requests refused because this upstream's queue was full.", up),
		QueueLength:      gauge("queue_samples", "Samples, histograms and exemplars waiting in the queue."),
		QueueCapacity:    gauge("queue_capacity_samples", "Samples the queue holds at most."),
		QueueMemory:      gauge("queue_memory_bytes", "Bytes of queued data held in memory, batches in flight included (at most queue_config.max_memory_bytes)."),
		Shards:           gauge("shards", "Parallel senders in use, between min_shards and max_shards."),
		ShardsDesired:    gauge("shards_desired", "Parallel senders the sending rate and latency call for, as last computed."),
		SendDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "upstream", Name: "send_duration_seconds",
			Help:    "Duration of send attempts, successful or not.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, up),
		LastSendSuccess:   gauge("last_send_success_timestamp_seconds", "Unix time of the last batch the upstream acknowledged."),
		LearnedMaxSamples: gauge("learned_max_samples_per_send", "Samples of the largest batch the upstream accepted after refusing one as too large (413); later batches are cut to it. 0 while none was refused."),
		LearnedMaxBytes:   gauge("learned_max_bytes_per_send", "Bytes of the largest batch the upstream accepted after refusing one as too large (413); later batches are cut to it. 0 while none was refused."),
		QueueLag:          gauge("queue_lag_seconds", "Age of the oldest queued record not yet acknowledged by the upstream (0 when everything is sent)."),
		OrphanedDirectories: f.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "queue", Name: "orphaned_directories",
			Help: "Queue directories under <storage.path>/queues whose upstream is not configured (or not on disk).",
		}),
		OrphanedBytes: f.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "queue", Name: "orphaned_bytes",
			Help: "Size of the files in orphaned queue directories.",
		}),
	}
}

// UpstreamMetrics are one upstream's children of the forward vectors.
type UpstreamMetrics struct {
	SentSamples, SentHistograms, SentExemplars, SentMetadata prometheus.Counter
	SentBatches, SentBytes, Failed, Retried, QueueFull       prometheus.Counter
	QueueLength, QueueCapacity, QueueMemory, Pending         prometheus.Gauge
	Shards, DesiredShards, LastSuccess, LearnedN, LearnedB   prometheus.Gauge
	SendDuration                                             prometheus.Observer
	Dropped                                                  map[string]prometheus.Counter // by DropReasons
}

// Upstream returns the children of upstream, creating its series so that
// they read 0 before anything happens.
func (m *ForwardMetrics) Upstream(upstream string) UpstreamMetrics {
	u := UpstreamMetrics{
		SentSamples:    m.SentSamples.WithLabelValues(upstream),
		SentHistograms: m.SentHistograms.WithLabelValues(upstream),
		SentExemplars:  m.SentExemplars.WithLabelValues(upstream),
		SentMetadata:   m.SentMetadata.WithLabelValues(upstream),
		SentBatches:    m.SentBatches.WithLabelValues(upstream),
		SentBytes:      m.SentBytes.WithLabelValues(upstream),
		Failed:         m.FailedSamples.WithLabelValues(upstream),
		Retried:        m.RetriedSamples.WithLabelValues(upstream),
		QueueFull:      m.QueueFull.WithLabelValues(upstream),
		QueueLength:    m.QueueLength.WithLabelValues(upstream),
		QueueCapacity:  m.QueueCapacity.WithLabelValues(upstream),
		QueueMemory:    m.QueueMemory.WithLabelValues(upstream),
		Pending:        m.PendingSamples.WithLabelValues(upstream),
		Shards:         m.Shards.WithLabelValues(upstream),
		DesiredShards:  m.ShardsDesired.WithLabelValues(upstream),
		LastSuccess:    m.LastSendSuccess.WithLabelValues(upstream),
		LearnedN:       m.LearnedMaxSamples.WithLabelValues(upstream),
		LearnedB:       m.LearnedMaxBytes.WithLabelValues(upstream),
		SendDuration:   m.SendDuration.WithLabelValues(upstream),
		Dropped:        map[string]prometheus.Counter{},
	}
	for _, r := range DropReasons {
		u.Dropped[r] = m.DroppedSamples.WithLabelValues(upstream, r)
	}
	return u
}

// DeleteUpstream removes every series of upstream, for an upstream that a
// reload removed. The collectors stay registered.
func (m *ForwardMetrics) DeleteUpstream(upstream string) {
	match := prometheus.Labels{"upstream": upstream}
	for _, v := range []*prometheus.CounterVec{m.HandedSamples, m.HandedHistograms, m.HandedExemplars, m.SentSamples, m.SentHistograms, m.SentExemplars, m.SentMetadata, m.SentBatches, m.SentBytes, m.FailedSamples, m.RetriedSamples, m.DroppedSamples, m.Requests, m.QueueFull} {
		v.DeletePartialMatch(match)
	}
	for _, v := range []*prometheus.GaugeVec{m.QueueLength, m.QueueCapacity, m.QueueMemory, m.Shards, m.ShardsDesired, m.LastSendSuccess, m.QueueLag, m.LearnedMaxSamples, m.LearnedMaxBytes, m.PendingSamples} {
		v.DeletePartialMatch(match)
	}
	m.SendDuration.DeletePartialMatch(match)
}

// ConfigMetrics describe configuration loads.
type ConfigMetrics struct {
	LastReloadSuccessful       prometheus.Gauge
	LastReloadSuccessTimestamp prometheus.Gauge
	// Info has one series, labelled with the SHA-256 of the loaded file.
	Info *prometheus.GaugeVec
}

// NewConfigMetrics creates and registers the configuration collectors.
func NewConfigMetrics(reg prometheus.Registerer) *ConfigMetrics {
	f := promauto.With(reg)
	return &ConfigMetrics{
		LastReloadSuccessful: f.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "config", Name: "last_reload_successful",
			Help: "Whether the last configuration load succeeded (1) or not (0).",
		}),
		LastReloadSuccessTimestamp: f.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load.",
		}),
		Info: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "config", Name: "info",
			Help: "The configuration in force, by the SHA-256 of its file.",
		}, []string{"sha256"}),
	}
}

// Loaded records a successful load of the file with the given hash.
func (m *ConfigMetrics) Loaded(hash string, now float64) {
	m.LastReloadSuccessful.Set(1)
	m.LastReloadSuccessTimestamp.Set(now)
	m.Info.Reset()
	m.Info.WithLabelValues(hash).Set(1)
}

// Failed records a failed load; the previous configuration stays in force.
func (m *ConfigMetrics) Failed() { m.LastReloadSuccessful.Set(0) }

// Reasons a tenant's request is refused; the values of the reason label of
// gateway_tenant_rejected_requests_total.
const (
	TenantUnauthenticated = "unauthenticated"    // no tenant, an unknown one, or missing or wrong credentials (401)
	TenantForbidden       = "forbidden"          // credentials of one tenant, header of another (403)
	TenantRateLimited     = "rate_limited"       // samples_per_second (429)
	TenantInflight        = "inflight"           // max_inflight_requests (503)
	TenantSeries          = "series_per_request" // max_series_per_request (400)
	TenantLabels          = "labels_per_series"  // max_labels_per_series (400)
	TenantLabelName       = "label_name_length"  // max_label_name_length (400)
	TenantLabelValue      = "label_value_length" // max_label_value_length (400)
)

// TenantRejectReasons lists every tenant reject reason.
var TenantRejectReasons = []string{TenantUnauthenticated, TenantForbidden, TenantRateLimited, TenantInflight, TenantSeries, TenantLabels, TenantLabelName, TenantLabelValue}

// TenantMetrics describe clients by tenant. The tenant label takes the
// configured tenant ids, "" for requests without a tenant, and "unknown"
// for ids that are not configured, so clients cannot create series.
type TenantMetrics struct {
	Samples  *prometheus.CounterVec // tenant: samples, histograms and exemplars accepted
	Rejected *prometheus.CounterVec // tenant, reason
}

// NewTenantMetrics creates and registers the tenant collectors.
func NewTenantMetrics(reg prometheus.Registerer) *TenantMetrics {
	f := promauto.With(reg)
	return &TenantMetrics{
		Samples: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "tenant", Name: "samples_total",
			Help: "Samples, histograms and exemplars accepted, by tenant.",
		}, []string{"tenant"}),
		Rejected: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "tenant", Name: "rejected_requests_total",
			Help: "Write requests refused by tenant authentication or limits, by tenant and reason.",
		}, []string{"tenant", "reason"}),
	}
}

// InitTenant creates tenant's series so that they read 0.
func (m *TenantMetrics) InitTenant(tenant string) {
	m.Samples.WithLabelValues(tenant)
	for _, r := range TenantRejectReasons {
		m.Rejected.WithLabelValues(tenant, r)
	}
}

// DeleteTenant removes tenant's series, for a tenant a reload removed.
func (m *TenantMetrics) DeleteTenant(tenant string) {
	match := prometheus.Labels{"tenant": tenant}
	m.Samples.DeletePartialMatch(match)
	m.Rejected.DeletePartialMatch(match)
}
