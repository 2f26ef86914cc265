package queue

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// namespace prefixes the queue's metrics, as every metric of the gateway.
const namespace = "gateway"

// Metrics are the collectors of every queue of a process. Per-queue series
// carry the upstream label (Options.Upstream); create them once with
// NewMetrics and hand the same value to every queue.
type Metrics struct {
	// Bytes is the size of the segment files on disk: what max_bytes bounds.
	Bytes *prometheus.GaugeVec // upstream
	// Segments is the number of segment files.
	Segments *prometheus.GaugeVec // upstream
	// Records is the number of records appended and not yet acknowledged.
	Records *prometheus.GaugeVec // upstream
	// WrittenBytes counts bytes written to segments, framing included.
	WrittenBytes *prometheus.CounterVec // upstream
	// ReadBytes counts bytes of records the reader passed, framing
	// included: read back, or not read as the consumer held them (see
	// NextUnless).
	ReadBytes *prometheus.CounterVec // upstream
	// CorruptBytes counts bytes found unreadable, by kind (CorruptKinds;
	// the queue's user may add kinds of its own, for records it could not
	// decode).
	CorruptBytes *prometheus.CounterVec // upstream, kind
	// QuarantinedFiles counts files moved to the quarantine directory.
	QuarantinedFiles *prometheus.CounterVec // upstream
	// DroppedBytes and DroppedRecords count unacknowledged data deleted to
	// make room under the DropOldest policy, by reason.
	DroppedBytes   *prometheus.CounterVec // upstream, reason
	DroppedRecords *prometheus.CounterVec // upstream, reason
	// Full counts appends refused because the queue or its disk was full,
	// by reason.
	Full *prometheus.CounterVec // upstream, reason
}

// NewMetrics creates the queue collectors and registers them with reg. A
// nil reg leaves them unregistered (for tests and benchmarks).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	gauge := func(name, help string) *prometheus.GaugeVec {
		return f.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "queue", Name: name, Help: help}, []string{"upstream"})
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "queue", Name: name, Help: help},
			append([]string{"upstream"}, labels...))
	}
	return &Metrics{
		Bytes:            gauge("bytes", "Size of the queue's segment files on disk."),
		Segments:         gauge("segments", "Number of the queue's segment files."),
		Records:          gauge("records", "Records appended to the queue and not yet acknowledged."),
		WrittenBytes:     counter("written_bytes_total", "Bytes written to queue segments, framing included."),
		ReadBytes:        counter("read_bytes_total", "Bytes of records the reader has passed, framing included: read from queue segments, or skipped as the forwarder still held them."),
		CorruptBytes:     counter("corrupt_bytes_total", "Bytes of queue files found unreadable, by kind.", "kind"),
		QuarantinedFiles: counter("quarantined_files_total", "Queue files moved to the quarantine directory."),
		DroppedBytes:     counter("dropped_bytes_total", "Unacknowledged bytes deleted from the queue to make room, by reason.", "reason"),
		DroppedRecords:   counter("dropped_records_total", "Unacknowledged records deleted from the queue to make room, by reason.", "reason"),
		Full:             counter("full_total", "Appends refused because the queue or its disk was full, by reason.", "reason"),
	}
}

// DeleteUpstream removes every series of upstream, for a queue that was
// closed for good. The collectors stay registered.
func (m *Metrics) DeleteUpstream(upstream string) {
	l := prometheus.Labels{"upstream": upstream}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.Bytes, m.Segments, m.Records, m.WrittenBytes, m.ReadBytes, m.CorruptBytes,
		m.QuarantinedFiles, m.DroppedBytes, m.DroppedRecords, m.Full,
	} {
		v.DeletePartialMatch(l)
	}
}

// Label values of gateway_queue_corrupt_bytes_total{kind}.
const (
	// CorruptTornTail counts bytes truncated from the end of a segment: a
	// record torn by a crash, or trailing garbage.
	CorruptTornTail = "torn_tail"
	// CorruptRecord counts bytes skipped in the middle of a segment: records
	// whose checksum failed and bytes passed while resynchronising.
	CorruptRecord = "corrupt_record"
	// CorruptQuarantined counts the bytes of segment files moved to the
	// quarantine directory.
	CorruptQuarantined = "quarantined"
	// CorruptPosition counts the bytes of an unreadable read position file.
	CorruptPosition = "position"
)

// CorruptKinds lists every kind value, so each reads 0 from the start.
var CorruptKinds = []string{CorruptTornTail, CorruptRecord, CorruptQuarantined, CorruptPosition}

// Label values of gateway_queue_full_total{reason}.
const (
	// FullMaxBytes: the queue reached Options.MaxBytes under the Block policy.
	FullMaxBytes = "max_bytes"
	// FullNoSpace: the file system returned ENOSPC or EDQUOT.
	FullNoSpace = "no_space"
)

// FullReasons lists every reason value of gateway_queue_full_total.
var FullReasons = []string{FullMaxBytes, FullNoSpace}

// DropOldestReason is the reason label value of the dropped counters.
const DropOldestReason = "drop_oldest"

// queueMetrics are the series of one upstream, resolved once at Open.
type queueMetrics struct {
	bytes, segments, records          prometheus.Gauge
	written, read                     prometheus.Counter
	tornTail, corruptRecord           prometheus.Counter
	quarantinedBytes, corruptPosition prometheus.Counter
	quarantinedFiles                  prometheus.Counter
	droppedBytes, droppedRecs         prometheus.Counter
	fullMaxBytes, fullNoSpace         prometheus.Counter
}

func forUpstream(m *Metrics, u string) *queueMetrics {
	return &queueMetrics{
		bytes:            m.Bytes.WithLabelValues(u),
		segments:         m.Segments.WithLabelValues(u),
		records:          m.Records.WithLabelValues(u),
		written:          m.WrittenBytes.WithLabelValues(u),
		read:             m.ReadBytes.WithLabelValues(u),
		tornTail:         m.CorruptBytes.WithLabelValues(u, CorruptTornTail),
		corruptRecord:    m.CorruptBytes.WithLabelValues(u, CorruptRecord),
		quarantinedBytes: m.CorruptBytes.WithLabelValues(u, CorruptQuarantined),
		corruptPosition:  m.CorruptBytes.WithLabelValues(u, CorruptPosition),
		quarantinedFiles: m.QuarantinedFiles.WithLabelValues(u),
		droppedBytes:     m.DroppedBytes.WithLabelValues(u, DropOldestReason),
		droppedRecs:      m.DroppedRecords.WithLabelValues(u, DropOldestReason),
		fullMaxBytes:     m.Full.WithLabelValues(u, FullMaxBytes),
		fullNoSpace:      m.Full.WithLabelValues(u, FullNoSpace),
	}
}
