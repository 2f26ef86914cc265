package forward

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/config"
	"github.com/rwgateway/gateway/pkg/prw"
)

func (m *Manager) forwarderFor(name string) *forwarder {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.set.byName[name]
}

// upstreamSeries counts the gathered series labelled upstream=name.
func upstreamSeries(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "upstream" && l.GetValue() == name {
					n++
				}
			}
		}
	}
	return n
}

func TestApplyConfigReload(t *testing.T) {
	ups := map[string]*fakeUpstream{}
	for _, n := range []string{"a", "b", "c", "d"} {
		ups[n] = newFakeUpstream(t, nil)
	}
	cfgFor := func(names ...string) *config.Config {
		cfg := testConfig()
		for _, n := range names {
			cfg.Upstreams = append(cfg.Upstreams, testUpstream(t, n, ups[n].srv.URL, n == "c"))
		}
		return cfg
	}
	m, reg, _ := newTestManager(t, cfgFor("a", "b", "c"))
	send := func(ts int64) {
		require.NoError(t, m.Enqueue(t.Context(), prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(ts, 2, "__name__", "x")}, nil), "", nil))
	}
	send(0)
	for _, n := range []string{"a", "b", "c"} {
		require.Eventually(t, func() bool { return ups[n].samples() == 2 }, waitFor, tick, n)
	}
	fa, fc := m.forwarderFor("a"), m.forwarderFor("c")
	require.Positive(t, upstreamSeries(t, reg, "b"))

	// Remove b, add d, change c; a is unchanged.
	next := cfgFor("a", "c", "d")
	next.Upstreams[1].Headers = map[string]string{"X-Changed": "yes"}
	next.Global.ExternalLabels = labels.FromStrings("gw", "1")
	require.NoError(t, next.Validate())
	require.NoError(t, m.ApplyConfig(next))

	require.Same(t, fa, m.forwarderFor("a"), "unchanged upstream keeps its queue")
	require.NotSame(t, fc, m.forwarderFor("c"), "changed upstream is replaced")
	require.Nil(t, m.forwarderFor("b"))
	require.Zero(t, upstreamSeries(t, reg, "b"), "removed upstream's series are deleted")
	require.Positive(t, upstreamSeries(t, reg, "d"))

	send(10)
	for _, n := range []string{"a", "c", "d"} {
		require.Eventually(t, func() bool { return len(bySeries(ups[n].series())[`{__name__="x", gw="1"}`].Samples) == 2 }, waitFor, tick, n)
	}
	require.Equal(t, 2, ups["b"].samples())
	for _, r := range ups["c"].requests()[1:] {
		require.Equal(t, "yes", r.header.Get("X-Changed"))
	}

	// Same config again: nothing is replaced.
	require.NoError(t, m.ApplyConfig(next))
	require.Same(t, fa, m.forwarderFor("a"))
}

func TestApplyConfigConcurrent(t *testing.T) {
	a := newFakeUpstream(t, nil)
	b := newFakeUpstream(t, nil)
	variant := func(i int) *config.Config {
		ua := testUpstream(t, "a", a.srv.URL, false)
		ub := testUpstream(t, "b", b.srv.URL, true)
		switch i % 3 {
		case 0:
			return testConfig(ua, ub)
		case 1:
			ub.QueueConfig.MaxShards = 3
			return testConfig(ua, ub)
		default:
			cfg := testConfig(ua)
			cfg.Global.ExternalLabels = labels.FromStrings("variant", "2")
			return cfg
		}
	}
	m, reg, _ := newTestManager(t, variant(0))

	var (
		stop     atomic.Bool
		enqueued atomic.Int64
		wg       sync.WaitGroup
	)
	for g := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				req := prw.NewRequest(prw.ProtoV1, []prw.Series{floatSeries(int64(i), 1, "__name__", "x", "g", fmt.Sprint(g))}, nil)
				err := m.Enqueue(context.Background(), req, "", nil)
				if err != nil && !errors.Is(err, ErrQueueFull) {
					t.Errorf("enqueue: %v", err)
					return
				}
				enqueued.Add(1)
			}
		})
	}
	var reloads sync.WaitGroup
	for i := range 20 {
		reloads.Go(func() { require.NoError(t, m.ApplyConfig(variant(i))) })
	}
	reloads.Wait()
	stop.Store(true)
	wg.Wait()
	require.Positive(t, enqueued.Load())

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	m.Stop(ctx)
	_, err := reg.Gather()
	require.NoError(t, err, "pedantic registry: no duplicate or inconsistent collectors")
}
