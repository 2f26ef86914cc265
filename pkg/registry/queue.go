package registry

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// QueueMetrics are the collectors of the on-disk upstream queues: the
// storage counters updated by pkg/queue and the delivery state updated by
// pkg/forward. Per-queue series carry the upstream label; create them once
// with NewQueueMetrics and hand the same value to every queue.
type QueueMetrics struct {
	// Bytes is the size of the segment files on disk: what max_bytes bounds.
	Bytes *prometheus.GaugeVec // upstream
	// Segments is the number of segment files.
	Segments *prometheus.GaugeVec // upstream
	// Records is the number of records appended and not yet acknowledged.
	Records *prometheus.GaugeVec // upstream
	// WrittenBytes counts bytes written to segments, framing included.
	WrittenBytes *prometheus.CounterVec // upstream
	// ReadBytes counts bytes of records read back, framing included.
	ReadBytes *prometheus.CounterVec // upstream
	// CorruptBytes counts bytes found unreadable, by kind.
	CorruptBytes *prometheus.CounterVec // upstream, kind
	// QuarantinedFiles counts files moved to the quarantine directory.
	QuarantinedFiles *prometheus.CounterVec // upstream
	// DroppedBytes and DroppedRecords count unacknowledged data deleted to
	// make room under the drop_oldest policy, by reason.
	DroppedBytes   *prometheus.CounterVec // upstream, reason
	DroppedRecords *prometheus.CounterVec // upstream, reason
	// Full counts appends refused because the queue or its disk was full,
	// by reason.
	Full *prometheus.CounterVec // upstream, reason
	// Lag is the age of the oldest record not yet acknowledged by the
	// upstream: now minus the time it was appended; 0 when all is sent.
	Lag *prometheus.GaugeVec // upstream
	// OrphanedDirectories and OrphanedBytes describe the queue directories
	// of upstreams that are no longer configured.
	OrphanedDirectories prometheus.Gauge
	OrphanedBytes       prometheus.Gauge
}

// NewQueueMetrics creates the queue collectors and registers them with reg.
// A nil reg leaves them unregistered (for tests and benchmarks).
func NewQueueMetrics(reg prometheus.Registerer) *QueueMetrics {
	f := promauto.With(reg)
	gauge := func(name, help string) *prometheus.GaugeVec {
		return f.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "queue", Name: name, Help: help}, []string{"upstream"})
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return f.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "queue", Name: name, Help: help},
			append([]string{"upstream"}, labels...))
	}
	return &QueueMetrics{
		Bytes:            gauge("bytes", "Size of the queue's segment files on disk."),
		Segments:         gauge("segments", "Number of the queue's segment files."),
		Records:          gauge("records", "Records appended to the queue and not yet acknowledged."),
		WrittenBytes:     counter("written_bytes_total", "Bytes written to queue segments, framing included."),
		ReadBytes:        counter("read_bytes_total", "Bytes of records read from queue segments, framing included."),
		CorruptBytes:     counter("corrupt_bytes_total", "Bytes of queue files found unreadable, by kind.", "kind"),
		QuarantinedFiles: counter("quarantined_files_total", "Queue files moved to the quarantine directory."),
		DroppedBytes:     counter("dropped_bytes_total", "Unacknowledged bytes deleted from the queue to make room, by reason.", "reason"),
		DroppedRecords:   counter("dropped_records_total", "Unacknowledged records deleted from the queue to make room, by reason.", "reason"),
		Full:             counter("full_total", "Appends refused because the queue or its disk was full, by reason.", "reason"),
		Lag: f.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "upstream", Name: "queue_lag_seconds",
			Help: "Age of the oldest queued record not yet acknowledged by the upstream (0 when everything is sent).",
		}, []string{"upstream"}),
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

// DeleteUpstream removes every series of upstream, for a queue that a reload
// closed. The collectors stay registered.
func (m *QueueMetrics) DeleteUpstream(upstream string) {
	l := prometheus.Labels{"upstream": upstream}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.Bytes, m.Segments, m.Records, m.WrittenBytes, m.ReadBytes, m.CorruptBytes,
		m.QuarantinedFiles, m.DroppedBytes, m.DroppedRecords, m.Full, m.Lag,
	} {
		v.DeletePartialMatch(l)
	}
}
