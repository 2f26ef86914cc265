package queue

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwgateway/gateway/pkg/registry"
)

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

func forUpstream(m *registry.QueueMetrics, u string) *queueMetrics {
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
