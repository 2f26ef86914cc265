package forward

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/queue"
)

// Storage layout under Options.StoragePath.
const (
	queuesDir     = "queues"
	quarantineDir = "quarantine"
)

// diskQueue is what a forwarder uses of pkg/queue; tests wrap it.
type diskQueue interface {
	AppendAt(recs ...[]byte) (queue.Position, error)
	HasRoom(n int, payloadBytes int64) bool
	Fits(n int, payloadBytes int64) bool
	NextUnless(ctx context.Context, have func(queue.Position) bool) ([]byte, queue.Position, error)
	Ack(pos queue.Position) error
	Rewind() error
	Len() (records, bytes int64)
	Opened() queue.Position
	SetLimits(maxBytes int64, policy queue.FullPolicy)
	Close() error
}

// queueDir is where upstream name's queue lives.
func queueDir(storage, name string) string { return filepath.Join(storage, queuesDir, name) }

func fullPolicy(q *config.QueueConfig) queue.FullPolicy {
	if q.FullPolicy == config.FullPolicyDropOldest {
		return queue.DropOldest
	}
	return queue.Block
}

// openQueue opens the disk queue of upstream u.
func (m *Manager) openQueue(u *config.UpstreamConfig) (diskQueue, error) {
	q, err := queue.Open(queue.Options{
		Dir:           queueDir(m.opts.StoragePath, u.Name),
		QuarantineDir: filepath.Join(m.opts.StoragePath, quarantineDir, u.Name),
		Upstream:      u.Name,
		MaxBytes:      u.QueueConfig.MaxBytes,
		FullPolicy:    fullPolicy(&u.QueueConfig),
		Fsync:         m.opts.Fsync,
		SyncInterval:  m.opts.SyncInterval,
		Logger:        m.logger.With("upstream", u.Name, "component", "queue"),
		Metrics:       m.opts.QueueMetrics,
	})
	if err != nil {
		return nil, fmt.Errorf("open disk queue: %w", err)
	}
	if m.opts.wrapQueue != nil {
		return m.opts.wrapQueue(q), nil
	}
	return q, nil
}

// scanOrphans finds the queue directories of upstreams that set does not
// configure with a disk queue, exports their number and size, and logs
// them.
func (m *Manager) scanOrphans(set *upstreamSet) {
	dir := filepath.Join(m.opts.StoragePath, queuesDir)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.logger.Warn("list queue directories; orphaned queues are not reported", "dir", dir, "err", err)
		return
	}
	var names []string // sorted, as ReadDir sorts its entries
	var bytes int64
	for _, e := range entries {
		if !e.IsDir() || set.onDisk(e.Name()) {
			continue
		}
		names = append(names, e.Name())
		_ = filepath.WalkDir(filepath.Join(dir, e.Name()), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					bytes += fi.Size()
				}
			}
			return nil
		})
	}
	m.metrics.OrphanedDirectories.Set(float64(len(names)))
	m.metrics.OrphanedBytes.Set(float64(bytes))
	if len(names) > 0 {
		m.logger.Warn("queue directories without a configured disk-queued upstream: left in place, not sent; "+
			"re-add the upstream to send them, or stop the gateway and delete them",
			"dir", dir, "upstreams", names, "bytes", bytes)
	}
}

// lockStorage takes the lock on Options.StoragePath, once.
func (m *Manager) lockStorage() error {
	if m.opts.StoragePath == "" || m.unlock != nil {
		return nil
	}
	if err := os.MkdirAll(m.opts.StoragePath, 0o755); err != nil {
		return fmt.Errorf("create storage path: %w", err)
	}
	unlock, err := queue.Lock(m.opts.StoragePath)
	if err != nil {
		return fmt.Errorf("lock storage path %s: %w", m.opts.StoragePath, err)
	}
	m.unlock = unlock
	return nil
}

// closeQueue closes upstream name's disk queue; reloadMu is held.
func (m *Manager) closeQueue(name string) {
	q := m.queues[name]
	if q == nil {
		return
	}
	delete(m.queues, name)
	if err := q.Close(); err != nil {
		m.logger.Error("close disk queue", "upstream", name, "err", err)
	}
	m.opts.QueueMetrics.DeleteUpstream(name)
	m.metrics.QueueLag.DeleteLabelValues(name)
}
