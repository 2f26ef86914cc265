package forward

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/pkg/prw"
)

// TestMemoryBudget: an upstream that takes nothing holds at most
// max_memory_bytes of queued data in memory, though its shards' capacity
// would take far more: a memory queue refuses requests past it, a disk
// queue's reader waits. Once the upstream takes data again, everything
// accepted arrives and the budget is given back.
func TestMemoryBudget(t *testing.T) {
	for _, disk := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "disk"}[disk], func(t *testing.T) {
			testDisk = disk
			defer func() { testDisk = false }()
			var sw switchable
			sw.code.Store(http.StatusServiceUnavailable)
			up := newFakeUpstream(t, sw.respond)
			u := testUpstream(t, "u", up.srv.URL, false)
			u.QueueConfig.MinShards, u.QueueConfig.MaxShards = 4, 4
			u.QueueConfig.Capacity = 100000
			u.QueueConfig.MaxBytesPerSend = 4096
			u.QueueConfig.MaxMemoryBytes = 16 << 10
			m, _, metrics := newTestManager(t, testConfig(u))
			gauge := metrics.QueueMemory.WithLabelValues("u")

			var peak atomic.Int64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					peak.Store(max(peak.Load(), int64(testutil.ToFloat64(gauge))))
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
				}
			}()
			accepted := 0
			for i := range 200 {
				var ss []prw.Series
				for j := range 10 {
					ss = append(ss, floatSeries(int64(i), 1, "__name__", "node_network_receive_bytes_total", "instance", "host-"+intString(j)+".example.com:9100", "device", "eth0"))
				}
				r := prw.NewRequest(prw.ProtoV1, ss, nil)
				err := m.Enqueue(t.Context(), r, "", nil)
				if disk {
					require.NoError(t, err, "a disk queue takes what memory does not hold")
				} else if err != nil {
					require.ErrorIs(t, err, ErrQueueFull)
					continue
				}
				accepted += 10
			}
			if !disk {
				require.Less(t, accepted, 2000, "a memory queue refuses requests past its budget")
				require.Positive(t, accepted)
			}
			time.Sleep(100 * time.Millisecond) // the disk reader fills what it may
			sw.code.Store(http.StatusNoContent)
			require.Eventually(t, func() bool { return len(sampleSet(up.series())) == accepted }, waitFor, tick)
			require.Eventually(t, func() bool { return testutil.ToFloat64(gauge) == 0 }, waitFor, tick)
			close(stop)
			<-done
			// One batch may be over: a budget with nothing held admits any.
			require.LessOrEqual(t, peak.Load(), u.QueueConfig.MaxMemoryBytes+int64(u.QueueConfig.MaxBytesPerSend))
			require.Positive(t, peak.Load())
		})
	}
}
