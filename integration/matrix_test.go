//go:build integration

package integration

// The delivery matrix: rows are inputs and configurations, columns are
// upstream behaviours. Each row starts one gateway with one upstream per
// column (two in the fan-out and replay rows), sends the same known workload
// and checks, for every cell, exactly which points arrived, that none was
// lost or duplicated, and what the gateway counted as dropped and why.
//
// Only third-party packages are used here (no package of this module), so
// the test exercises the real binary the way an agent and an upstream do.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

const (
	mxRequests = 10 // client requests per row
	mxSeries   = 20 // float series per request
	mxSamples  = 20 // samples per float series and request
	// mxLimit is the largest request, in samples+histograms+exemplars, the
	// 413 column accepts (as AMP, Mimir and Cortex limit request sizes).
	mxLimit = 50
	// mxFailFirst is how many attempts the columns that fail "at first"
	// fail, per upstream.
	mxFailFirst = 2
	// mxHang is how long the timeout column holds a request at most; the
	// upstream's remote_timeout is 1s, so the gateway must give up first.
	mxHang = 5 * time.Second
	// mxSettle bounds the wait for every cell of a row to be delivered (or
	// to be failed for good).
	mxSettle = 45 * time.Second
	// mxDroppedSeries is the value of label series that row 2's relabeling
	// drops.
	mxDroppedSeries = "7"

	mxContentTypeV1 = "application/x-protobuf"
	mxContentTypeV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

// mxColumn is an upstream behaviour.
type mxColumn struct {
	id, name string
	// dupsAllowed: an attempt that timed out or whose connection was reset
	// may have been stored by the upstream, so the retry may duplicate it
	// (at least once). Everywhere else a duplicate is a failure.
	dupsAllowed bool
	// failure is the upstream answer the column injects, for the check that
	// it really happened ("" for none).
	failure string
}

var mxColumns = []mxColumn{
	{id: "a", name: "204"},
	{id: "b", name: "400", failure: "400"},
	{id: "c", name: "413", failure: "413"},
	{id: "d", name: "429", failure: "429"},
	{id: "e", name: "503", failure: "503"},
	{id: "f", name: "timeout", failure: "timeout", dupsAllowed: true},
	{id: "g", name: "reset", failure: "reset", dupsAllowed: true},
	{id: "h", name: "old_receiver", failure: "2.0-without-written-headers"},
}

func (c mxColumn) label() string { return c.id + "_" + c.name }

// mxRow is an input and configuration.
type mxRow struct {
	id, name string
	inV2     bool     // the client sends remote write 2.0
	protos   []string // per column, one upstream per entry, speaking this protocol
	relabel  bool     // write_relabel_configs on every upstream
	tenant   bool     // a tenants section; the client sends X-Scope-OrgID: team-a
	replay   bool     // fed while every upstream answers 503, killed, restarted
	memory   bool     // queue_config.storage: memory
}

var mxRows = []mxRow{
	{id: "1", name: "v1_plain", protos: []string{protoV1}},
	{id: "2", name: "v1_relabel", protos: []string{protoV1}, relabel: true},
	{id: "3", name: "v1_tenant", protos: []string{protoV1}, tenant: true},
	{id: "4", name: "v2_to_v1", inV2: true, protos: []string{protoV1}},
	{id: "5", name: "v2_to_v2", inV2: true, protos: []string{protoV2}},
	{id: "6", name: "v1_fanout", protos: []string{protoV1, protoV1}},
	{id: "7", name: "v1_replay_after_kill9", protos: []string{protoV1, protoV2}, replay: true},
	{id: "8", name: "v1_memory_queue", protos: []string{protoV1}, memory: true},
}

// TestMatrix runs every row at once (each row is one gateway process and
// its in-process upstreams), then checks each cell in its own subtest.
func TestMatrix(t *testing.T) {
	requireIntegration(t)
	gatewayBin(t)
	start := time.Now()
	// Rows run in their own goroutines rather than as parallel tests: they
	// mostly wait (retries, Retry-After, timeouts), and -parallel defaults
	// to the number of CPUs.
	var wg sync.WaitGroup
	for _, row := range mxRows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(row.id+"_"+row.name, func(t *testing.T) { mxRunRow(t, row) })
		}()
	}
	wg.Wait()
	t.Logf("delivery matrix: %d rows x %d columns in %v", len(mxRows), len(mxColumns), time.Since(start).Round(time.Millisecond))
}

func mxRunRow(t *testing.T, row mxRow) {
	base := time.Now().Add(-time.Hour).Truncate(time.Second).UnixMilli()
	work := mxWorkload(row, base)
	exp := mxExpect(row, work)

	cols := make(map[string][]*mxUpstream, len(mxColumns))
	var all []*mxUpstream
	for _, col := range mxColumns {
		for k, proto := range row.protos {
			name := col.label()
			if len(row.protos) > 1 {
				name += "-" + strconv.Itoa(k+1)
			}
			u := newMxUpstream(t, name, col, proto)
			if !row.replay {
				u.accept.Store(1)
			}
			cols[col.id] = append(cols[col.id], u)
			all = append(all, u)
		}
	}
	storage := filepath.Join(t.TempDir(), "data")
	gw := mxGateway(t, "gateway-row"+row.id, storage, mxConfig(row, all, 1))
	mxSend(t, gw, row, work)

	if row.replay {
		// Every upstream refused what it was offered: the data is only in
		// the disk queues when the gateway dies.
		err := eventually(20*time.Second, 100*time.Millisecond, func() error {
			for _, u := range all {
				if u.answered("outage") == 0 {
					return fmt.Errorf("%s has not been tried yet", u.name)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("before the kill: %v", err)
		}
		if err := gw.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %s: %v", gw.Name, err)
		}
		select {
		case <-gw.Exited():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still running 10s after SIGKILL", gw.Name)
		}
		// The upstreams now serve the restarted gateway (generation 2) only.
		// A request the killed gateway had written to its socket just
		// before it died can still reach an upstream after this point; it
		// was never acknowledged, so the successor resends it. A real
		// upstream would store both (at least once); answering it 503
		// ("stale") keeps the cell about the replay from disk.
		for _, u := range all {
			u.endOutage(2)
		}
		gw = mxGateway(t, "gateway-row"+row.id+"-restarted", storage, mxConfig(row, all, 2))
	}

	start := time.Now()
	err := eventually(mxSettle, 200*time.Millisecond, func() error {
		m, err := mxScrape(gw)
		if err != nil {
			return err
		}
		var pending []string
		for _, u := range all {
			if v := u.verdict(exp, m); !v.settled() {
				pending = append(pending, u.name+": "+v.pendingSummary())
			}
		}
		if len(pending) > 0 {
			return errors.New(strings.Join(pending, "; "))
		}
		return nil
	})
	if err != nil {
		t.Logf("row %s: not every cell settled within %v: %v", row.name, mxSettle, err)
	} else {
		t.Logf("row %s: every cell settled %v after the last write", row.name, time.Since(start).Round(time.Millisecond))
	}
	m, err := mxScrape(gw)
	if err != nil {
		t.Fatalf("scrape %s: %v", gw.Name, err)
	}
	for _, col := range mxColumns {
		t.Run(col.label(), func(t *testing.T) {
			for _, u := range cols[col.id] {
				u.verdict(exp, m).report(t)
			}
		})
	}
}

// --- workload ---------------------------------------------------------------

// mxSeriesData is one series of one client request.
type mxSeriesData struct {
	lset       labels.Labels
	samples    []prompb.Sample
	exemplars  []prompb.Exemplar
	histograms []prompb.Histogram
}

// mxWorkload returns the client requests: each has series
// matrix_samples{series="0".."19"} with 20 samples (every sample of a series
// has its own timestamp and value across the whole workload), an exemplar on
// series 0, and series matrix_hist with one native histogram.
func mxWorkload(row mxRow, base int64) [][]mxSeriesData {
	reqs := make([][]mxSeriesData, mxRequests)
	for i := range reqs {
		for s := range mxSeries {
			kv := []string{"__name__", "matrix_samples", "job", "matrix", "row", row.id, "series", strconv.Itoa(s)}
			if row.tenant {
				kv = append(kv, "tenant", "spoofed-by-client") // the tenant's extra label replaces it
			}
			sd := mxSeriesData{lset: labels.FromStrings(kv...)}
			for j := range mxSamples {
				n := i*mxSamples + j
				sd.samples = append(sd.samples, prompb.Sample{
					Timestamp: base + int64(n)*1000,
					Value:     float64(s*100000+n) + 0.25,
				})
			}
			if s == 0 {
				sd.exemplars = append(sd.exemplars, prompb.Exemplar{
					Labels:    []prompb.Label{{Name: "trace_id", Value: fmt.Sprintf("trace-%d", i)}},
					Value:     sd.samples[0].Value,
					Timestamp: sd.samples[0].Timestamp,
				})
			}
			reqs[i] = append(reqs[i], sd)
		}
		kv := []string{"__name__", "matrix_hist", "job", "matrix", "row", row.id, "series", "h"}
		if row.tenant {
			kv = append(kv, "tenant", "spoofed-by-client")
		}
		reqs[i] = append(reqs[i], mxSeriesData{
			lset: labels.FromStrings(kv...),
			histograms: []prompb.Histogram{{
				Count:          &prompb.Histogram_CountInt{CountInt: uint64(10 + i)},
				Sum:            1.5*float64(i) + 10,
				Schema:         0,
				ZeroThreshold:  1e-128,
				ZeroCount:      &prompb.Histogram_ZeroCountInt{ZeroCountInt: 2},
				PositiveSpans:  []prompb.BucketSpan{{Offset: 0, Length: 2}},
				PositiveDeltas: []int64{4, int64(i)}, // buckets 4 and 4+i
				Timestamp:      base + int64(i*mxSamples)*1000 + 500,
			}},
		})
	}
	return reqs
}

func mxEncodeV1(req []mxSeriesData) ([]byte, error) {
	var wr prompb.WriteRequest
	for _, s := range req {
		ts := prompb.TimeSeries{Samples: s.samples, Exemplars: s.exemplars, Histograms: s.histograms}
		s.lset.Range(func(l labels.Label) { ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value}) })
		wr.Timeseries = append(wr.Timeseries, ts)
	}
	return wr.Marshal()
}

func mxEncodeV2(req []mxSeriesData) ([]byte, error) {
	st := writev2.NewSymbolTable()
	var wr writev2.Request
	for _, s := range req {
		ts := writev2.TimeSeries{LabelsRefs: st.SymbolizeLabels(s.lset, nil)}
		for _, x := range s.samples {
			ts.Samples = append(ts.Samples, writev2.Sample{Value: x.Value, Timestamp: x.Timestamp})
		}
		for _, e := range s.exemplars {
			ts.Exemplars = append(ts.Exemplars, writev2.Exemplar{
				LabelsRefs: st.SymbolizeLabels(mxPromLabels(e.Labels), nil), Value: e.Value, Timestamp: e.Timestamp,
			})
		}
		for _, h := range s.histograms {
			ts.Histograms = append(ts.Histograms, mxHistToV2(h))
		}
		wr.Timeseries = append(wr.Timeseries, ts)
	}
	wr.Symbols = st.Symbols()
	return wr.Marshal()
}

func mxHistToV2(h prompb.Histogram) writev2.Histogram {
	out := writev2.Histogram{
		Sum: h.Sum, Schema: h.Schema, ZeroThreshold: h.ZeroThreshold,
		NegativeDeltas: h.NegativeDeltas, NegativeCounts: h.NegativeCounts,
		PositiveDeltas: h.PositiveDeltas, PositiveCounts: h.PositiveCounts,
		ResetHint: writev2.Histogram_ResetHint(h.ResetHint), Timestamp: h.Timestamp, CustomValues: h.CustomValues,
	}
	switch c := h.Count.(type) {
	case *prompb.Histogram_CountInt:
		out.Count = &writev2.Histogram_CountInt{CountInt: c.CountInt}
	case *prompb.Histogram_CountFloat:
		out.Count = &writev2.Histogram_CountFloat{CountFloat: c.CountFloat}
	}
	switch c := h.ZeroCount.(type) {
	case *prompb.Histogram_ZeroCountInt:
		out.ZeroCount = &writev2.Histogram_ZeroCountInt{ZeroCountInt: c.ZeroCountInt}
	case *prompb.Histogram_ZeroCountFloat:
		out.ZeroCount = &writev2.Histogram_ZeroCountFloat{ZeroCountFloat: c.ZeroCountFloat}
	}
	for _, s := range h.NegativeSpans {
		out.NegativeSpans = append(out.NegativeSpans, writev2.BucketSpan{Offset: s.Offset, Length: s.Length})
	}
	for _, s := range h.PositiveSpans {
		out.PositiveSpans = append(out.PositiveSpans, writev2.BucketSpan{Offset: s.Offset, Length: s.Length})
	}
	return out
}

var mxClient = &http.Client{Timeout: 30 * time.Second}

// mxSend posts the workload; every request must be answered 2xx.
func mxSend(t *testing.T, gw *Process, row mxRow, work [][]mxSeriesData) {
	t.Helper()
	for i, req := range work {
		var raw []byte
		var err error
		if row.inV2 {
			raw, err = mxEncodeV2(req)
		} else {
			raw, err = mxEncodeV1(req)
		}
		if err != nil {
			t.Fatalf("encode request %d: %v", i, err)
		}
		hreq, err := http.NewRequest(http.MethodPost, gw.URL("/api/v1/write"), bytes.NewReader(snappy.Encode(nil, raw)))
		if err != nil {
			t.Fatal(err)
		}
		hreq.Header.Set("Content-Encoding", "snappy")
		hreq.Header.Set("User-Agent", "rwgateway-matrix-test")
		if row.inV2 {
			hreq.Header.Set("Content-Type", mxContentTypeV2)
			hreq.Header.Set("X-Prometheus-Remote-Write-Version", "2.0.0")
		} else {
			hreq.Header.Set("Content-Type", mxContentTypeV1)
			hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
		}
		if row.tenant {
			hreq.Header.Set("X-Scope-OrgID", "team-a")
		}
		resp, err := mxClient.Do(hreq)
		if err != nil {
			t.Fatalf("write request %d: %v", i, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("write request %d: %s %s", i, resp.Status, body)
		}
		if row.inV2 {
			samples, hists, exs := 0, 0, 0
			for _, s := range req {
				samples += len(s.samples)
				hists += len(s.histograms)
				exs += len(s.exemplars)
			}
			for h, want := range map[string]int{
				"X-Prometheus-Remote-Write-Samples-Written":    samples,
				"X-Prometheus-Remote-Write-Histograms-Written": hists,
				"X-Prometheus-Remote-Write-Exemplars-Written":  exs,
			} {
				if got := resp.Header.Get(h); got != strconv.Itoa(want) {
					t.Errorf("write request %d: %s: %q, want %d", i, h, got, want)
				}
			}
		}
	}
}

// --- expectations -----------------------------------------------------------

// mxExpectation is what every upstream of a row must receive (unless its
// column refuses everything), one key per point.
type mxExpectation struct {
	keys map[string]bool
	// samples, histograms and exemplars count keys by kind.
	samples, histograms, exemplars int
	// relabelDropped is the points row 2's relabeling drops per upstream.
	relabelDropped int
}

func mxExpect(row mxRow, work [][]mxSeriesData) mxExpectation {
	exp := mxExpectation{keys: map[string]bool{}}
	for _, req := range work {
		for _, s := range req {
			lb := labels.NewBuilder(s.lset)
			if row.tenant {
				lb.Set("tenant", "team-a")
			}
			if row.relabel {
				if s.lset.Get("series") == mxDroppedSeries {
					exp.relabelDropped += len(s.samples) + len(s.exemplars) + len(s.histograms)
					continue
				}
				lb.Set("env", "matrix")
				lb.Set("job", "relabeled-"+s.lset.Get("job"))
			}
			ls := lb.Labels()
			exp.samples += len(s.samples)
			exp.histograms += len(s.histograms)
			exp.exemplars += len(s.exemplars)
			for _, x := range s.samples {
				exp.keys[mxSampleKey(ls, x.Timestamp, x.Value)] = true
			}
			for _, e := range s.exemplars {
				exp.keys[mxExemplarKey(ls, e.Timestamp, e.Value, mxPromLabels(e.Labels))] = true
			}
			for _, h := range s.histograms {
				exp.keys[mxHistKeyV1(ls, h)] = true
			}
		}
	}
	return exp
}

func mxPromLabels(ls []prompb.Label) labels.Labels {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	return b.Labels()
}

func mxFloat(v float64) string { return fmt.Sprintf("%g(%016x)", v, math.Float64bits(v)) }

func mxFloats(vs []float64) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = mxFloat(v)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func mxSampleKey(ls labels.Labels, t int64, v float64) string {
	return fmt.Sprintf("%s sample t=%d v=%s", ls, t, mxFloat(v))
}

func mxExemplarKey(ls labels.Labels, t int64, v float64, el labels.Labels) string {
	return fmt.Sprintf("%s exemplar t=%d v=%s labels=%s", ls, t, mxFloat(v), el)
}

// mxHist holds the fields 1.0 and 2.0 histograms share.
type mxHist struct {
	t                  int64
	count, zeroCount   string
	sum, zeroThreshold float64
	schema, resetHint  int32
	negSpans, posSpans []string
	negDeltas          []int64
	posDeltas          []int64
	negCounts          []float64
	posCounts          []float64
	customValues       []float64
}

func (h mxHist) key(ls labels.Labels) string {
	return fmt.Sprintf("%s histogram t=%d count=%s zero_count=%s sum=%s zero_threshold=%s schema=%d reset_hint=%d neg=%v%v%s pos=%v%v%s custom=%s",
		ls, h.t, h.count, h.zeroCount, mxFloat(h.sum), mxFloat(h.zeroThreshold), h.schema, h.resetHint,
		h.negSpans, h.negDeltas, mxFloats(h.negCounts), h.posSpans, h.posDeltas, mxFloats(h.posCounts), mxFloats(h.customValues))
}

func mxHistKeyV1(ls labels.Labels, h prompb.Histogram) string {
	m := mxHist{t: h.Timestamp, sum: h.Sum, zeroThreshold: h.ZeroThreshold, schema: h.Schema, resetHint: int32(h.ResetHint),
		negDeltas: h.NegativeDeltas, posDeltas: h.PositiveDeltas, negCounts: h.NegativeCounts, posCounts: h.PositiveCounts,
		customValues: h.CustomValues, count: "unset", zeroCount: "unset"}
	switch c := h.Count.(type) {
	case *prompb.Histogram_CountInt:
		m.count = fmt.Sprintf("int:%d", c.CountInt)
	case *prompb.Histogram_CountFloat:
		m.count = "float:" + mxFloat(c.CountFloat)
	}
	switch c := h.ZeroCount.(type) {
	case *prompb.Histogram_ZeroCountInt:
		m.zeroCount = fmt.Sprintf("int:%d", c.ZeroCountInt)
	case *prompb.Histogram_ZeroCountFloat:
		m.zeroCount = "float:" + mxFloat(c.ZeroCountFloat)
	}
	for _, s := range h.NegativeSpans {
		m.negSpans = append(m.negSpans, fmt.Sprintf("%d:%d", s.Offset, s.Length))
	}
	for _, s := range h.PositiveSpans {
		m.posSpans = append(m.posSpans, fmt.Sprintf("%d:%d", s.Offset, s.Length))
	}
	return m.key(ls)
}

func mxHistKeyV2(ls labels.Labels, h writev2.Histogram) string {
	m := mxHist{t: h.Timestamp, sum: h.Sum, zeroThreshold: h.ZeroThreshold, schema: h.Schema, resetHint: int32(h.ResetHint),
		negDeltas: h.NegativeDeltas, posDeltas: h.PositiveDeltas, negCounts: h.NegativeCounts, posCounts: h.PositiveCounts,
		customValues: h.CustomValues, count: "unset", zeroCount: "unset"}
	switch c := h.Count.(type) {
	case *writev2.Histogram_CountInt:
		m.count = fmt.Sprintf("int:%d", c.CountInt)
	case *writev2.Histogram_CountFloat:
		m.count = "float:" + mxFloat(c.CountFloat)
	}
	switch c := h.ZeroCount.(type) {
	case *writev2.Histogram_ZeroCountInt:
		m.zeroCount = fmt.Sprintf("int:%d", c.ZeroCountInt)
	case *writev2.Histogram_ZeroCountFloat:
		m.zeroCount = "float:" + mxFloat(c.ZeroCountFloat)
	}
	for _, s := range h.NegativeSpans {
		m.negSpans = append(m.negSpans, fmt.Sprintf("%d:%d", s.Offset, s.Length))
	}
	for _, s := range h.PositiveSpans {
		m.posSpans = append(m.posSpans, fmt.Sprintf("%d:%d", s.Offset, s.Length))
	}
	return m.key(ls)
}

// --- gateway ------------------------------------------------------------------

// mxConfig returns the configuration of a row's gateway. Its upstream
// requests carry X-Matrix-Gateway: generation, so that the upstreams of the
// replay row can tell the killed gateway's requests from its successor's.
func mxConfig(row mxRow, ups []*mxUpstream, generation int) string {
	var b strings.Builder
	b.WriteString("upstreams:\n")
	for _, u := range ups {
		timeout := "10s"
		if u.col.id == "f" {
			timeout = "1s"
		}
		storage := ""
		if row.memory {
			storage = ", storage: memory"
		}
		fmt.Fprintf(&b, "  - name: %s\n    url: %s/api/v1/write\n    protobuf_message: %s\n    remote_timeout: %s\n", u.name, u.URL, u.proto, timeout)
		fmt.Fprintf(&b, "    headers: {X-Matrix-Gateway: \"%d\"}\n", generation)
		fmt.Fprintf(&b, "    queue_config: {max_shards: 4, batch_send_deadline: 500ms, min_backoff: 50ms, max_backoff: 1s%s}\n", storage)
		if row.relabel {
			fmt.Fprintf(&b, `    write_relabel_configs:
      - {source_labels: [series], regex: %q, action: drop}
      - {target_label: env, replacement: matrix}
      - {source_labels: [job], target_label: job, replacement: "relabeled-$1"}
`, mxDroppedSeries)
		}
	}
	if row.tenant {
		b.WriteString(`tenants:
  header: X-Scope-OrgID
  required: true
  tenants:
    - id: team-a
      extra_labels: {tenant: team-a}
`)
	}
	return b.String()
}

// mxGateway starts bin/gateway with config on storage.
func mxGateway(t *testing.T, name, storage, config string) *Process {
	t.Helper()
	dir := t.TempDir()
	cfg := writeFile(t, dir, "gateway.yml", config)
	return StartProcess(t, ProcessOptions{
		Name: name,
		Bin:  gatewayBin(t),
		Dir:  dir,
		Args: func(addr string) []string {
			return []string{
				"--config.file=" + cfg,
				"--web.listen-address=" + addr,
				"--storage.path=" + storage,
				"--shutdown.flush-timeout=2s",
				"--log.level=info",
			}
		},
		ReadyPath: "/-/ready",
	})
}

// mxMetrics holds the gateway_upstream_* series, by mxMetricKey.
type mxMetrics map[string]float64

// mxMetricKey names a series by metric name, upstream, and its reason or
// code label.
func mxMetricKey(name, upstream, reason string) string { return name + "|" + upstream + "|" + reason }

func mxScrape(gw *Process) (mxMetrics, error) {
	resp, err := mxClient.Get(gw.URL("/metrics"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	out := mxMetrics{}
	for name, mf := range fams {
		if !strings.HasPrefix(name, "gateway_upstream_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var up, reason string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "upstream":
					up = l.GetValue()
				case "reason", "code":
					reason = l.GetValue()
				}
			}
			v := m.GetCounter().GetValue()
			if g := m.GetGauge(); g != nil {
				v = g.GetValue()
			}
			out[mxMetricKey(name, up, reason)] = v
		}
	}
	return out, nil
}

// drops returns upstream's gateway_upstream_dropped_samples_total by reason.
func (m mxMetrics) drops(upstream string) map[string]float64 {
	prefix := mxMetricKey("gateway_upstream_dropped_samples_total", upstream, "")
	out := map[string]float64{}
	for k, v := range m {
		if reason, ok := strings.CutPrefix(k, prefix); ok {
			out[reason] = v
		}
	}
	return out
}

// --- upstreams ----------------------------------------------------------------

// mxUpstream is an in-process remote-write upstream with its column's
// behaviour. It decodes every request (1.0 or 2.0), and records the points
// of the requests it answers 2xx, one key per point with the number of times
// it arrived.
type mxUpstream struct {
	*httptest.Server
	name  string
	col   mxColumn
	proto string // as configured
	// accept is the gateway generation (X-Matrix-Gateway) served; requests
	// of any other get 503 and are not recorded: "outage" while accept is
	// 0 (row 7 before the kill), "stale" after it (a request of the killed
	// gateway that was on the wire when it died).
	accept atomic.Int32

	mu          sync.Mutex
	attempts    int            // requests of the accepted generation
	answers     map[string]int // by status code, "timeout", "reset", "outage", "stale"
	got         map[string]int // point key -> times received
	samples     int            // points in requests answered 2xx, duplicates included
	histograms  int
	exemplars   int
	largest     int // points of the largest request answered 2xx
	v2NoHeaders int // 2.0 requests answered 204 without written headers
	errs        []string
}

func newMxUpstream(t *testing.T, name string, col mxColumn, proto string) *mxUpstream {
	u := &mxUpstream{name: name, col: col, proto: proto, answers: map[string]int{}, got: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

func (u *mxUpstream) endOutage(generation int32) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.attempts = 0
	u.accept.Store(generation)
}

func (u *mxUpstream) answered(what string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.answers[what]
}

func (u *mxUpstream) note(what string) {
	u.mu.Lock()
	u.answers[what]++
	u.mu.Unlock()
}

func (u *mxUpstream) refuse(w http.ResponseWriter, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	u.mu.Lock()
	u.errs = append(u.errs, msg)
	u.answers[strconv.Itoa(code)]++
	u.mu.Unlock()
	http.Error(w, msg, code)
}

// mxDecoded is a decoded request: one key per point.
type mxDecoded struct {
	keys                           []string
	samples, histograms, exemplars int
}

func (d mxDecoded) points() int { return d.samples + d.histograms + d.exemplars }

func (u *mxUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		u.note("read_error")
		return
	}
	if accept := u.accept.Load(); r.Header.Get("X-Matrix-Gateway") != strconv.Itoa(int(accept)) {
		if accept == 0 {
			u.note("outage")
		} else {
			u.note("stale")
		}
		http.Error(w, "outage", http.StatusServiceUnavailable)
		return
	}
	var v2 bool
	switch ct := r.Header.Get("Content-Type"); ct {
	case mxContentTypeV1:
	case mxContentTypeV2:
		v2 = true
	default:
		u.refuse(w, http.StatusUnsupportedMediaType, "Content-Type %q", ct)
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "snappy" {
		u.refuse(w, http.StatusUnsupportedMediaType, "Content-Encoding %q", ce)
		return
	}
	if v, want := r.Header.Get("X-Prometheus-Remote-Write-Version"), map[bool]string{false: "0.1.", true: "2."}[v2]; !strings.HasPrefix(v, want) {
		u.refuse(w, http.StatusBadRequest, "X-Prometheus-Remote-Write-Version %q with Content-Type %q", v, r.Header.Get("Content-Type"))
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		u.refuse(w, http.StatusBadRequest, "snappy: %v", err)
		return
	}
	var d mxDecoded
	if v2 {
		d, err = mxDecodeV2(raw)
	} else {
		d, err = mxDecodeV1(raw)
	}
	if err != nil {
		u.refuse(w, http.StatusBadRequest, "decode %s request: %v", map[bool]string{false: "1.0", true: "2.0"}[v2], err)
		return
	}

	u.mu.Lock()
	n := u.attempts
	u.attempts++
	downgraded := u.v2NoHeaders > 0
	u.mu.Unlock()
	// An upstream configured for 1.0 must get 1.0; one configured for 2.0
	// gets 2.0, or 1.0 once it answered 2.0 without written headers.
	if wantV2 := u.proto == protoV2; v2 != wantV2 && (v2 || !downgraded) {
		u.refuse(w, http.StatusUnsupportedMediaType, "got a %s request, the upstream is configured for %s",
			map[bool]string{false: "1.0", true: "2.0"}[v2], u.proto)
		return
	}

	switch u.col.id {
	case "b":
		u.note("400")
		http.Error(w, "bad request, always", http.StatusBadRequest)
		return
	case "c":
		if d.points() > mxLimit {
			u.note("413")
			http.Error(w, fmt.Sprintf("request of %d samples is over the limit of %d", d.points(), mxLimit), http.StatusRequestEntityTooLarge)
			return
		}
	case "d":
		if n < mxFailFirst {
			u.note("429")
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
	case "e":
		if n < mxFailFirst {
			u.note("503")
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
	case "f":
		if n < mxFailFirst {
			timer := time.NewTimer(mxHang)
			defer timer.Stop()
			select {
			case <-r.Context().Done(): // the gateway gave up after remote_timeout
			case <-timer.C:
				u.mu.Lock()
				u.errs = append(u.errs, fmt.Sprintf("attempt %d still waiting after %v: the gateway did not give up after remote_timeout 1s", n, mxHang))
				u.mu.Unlock()
			}
			u.note("timeout")
			http.Error(w, "too late", http.StatusServiceUnavailable)
			return
		}
	case "g":
		if n < mxFailFirst {
			hj, ok := w.(http.Hijacker)
			if !ok {
				u.refuse(w, http.StatusInternalServerError, "cannot hijack the connection")
				return
			}
			conn, _, err := hj.Hijack()
			if err != nil {
				u.refuse(w, http.StatusInternalServerError, "hijack: %v", err)
				return
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // close sends RST
			}
			_ = conn.Close()
			u.note("reset")
			return
		}
	case "h":
		if v2 {
			// An old 1.0 receiver: it cannot read 2.0, stores nothing, and
			// still answers 204, without the written headers.
			u.mu.Lock()
			u.v2NoHeaders++
			u.answers["2.0-without-written-headers"]++
			u.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}

	u.mu.Lock()
	for _, k := range d.keys {
		u.got[k]++
	}
	u.samples += d.samples
	u.histograms += d.histograms
	u.exemplars += d.exemplars
	u.largest = max(u.largest, d.points())
	u.answers["204"]++
	u.mu.Unlock()
	if v2 {
		w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(d.samples))
		w.Header().Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.Itoa(d.histograms))
		w.Header().Set("X-Prometheus-Remote-Write-Exemplars-Written", strconv.Itoa(d.exemplars))
	}
	w.WriteHeader(http.StatusNoContent)
}

// mxLabelSet builds a label set from names and values in the order sent,
// and refuses what receivers refuse: unsorted or duplicate names, empty
// names, no metric name.
func mxLabelSet(names, values []string, series bool) (labels.Labels, error) {
	b := labels.NewScratchBuilder(len(names))
	for i, n := range names {
		if n == "" {
			return labels.EmptyLabels(), fmt.Errorf("empty label name in %q", names)
		}
		if i > 0 && n <= names[i-1] {
			return labels.EmptyLabels(), fmt.Errorf("label names not sorted or duplicated: %q", names)
		}
		b.Add(n, values[i])
	}
	ls := b.Labels()
	if series && ls.Get(labels.MetricName) == "" {
		return ls, fmt.Errorf("series without %s: %s", labels.MetricName, ls)
	}
	return ls, nil
}

func mxDecodeV1(raw []byte) (mxDecoded, error) {
	var d mxDecoded
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		return d, err
	}
	for _, ts := range req.Timeseries {
		names, values := make([]string, len(ts.Labels)), make([]string, len(ts.Labels))
		for i, l := range ts.Labels {
			names[i], values[i] = l.Name, l.Value
		}
		ls, err := mxLabelSet(names, values, true)
		if err != nil {
			return d, err
		}
		for _, x := range ts.Samples {
			d.keys = append(d.keys, mxSampleKey(ls, x.Timestamp, x.Value))
		}
		for _, e := range ts.Exemplars {
			d.keys = append(d.keys, mxExemplarKey(ls, e.Timestamp, e.Value, mxPromLabels(e.Labels)))
		}
		for _, h := range ts.Histograms {
			d.keys = append(d.keys, mxHistKeyV1(ls, h))
		}
		d.samples += len(ts.Samples)
		d.exemplars += len(ts.Exemplars)
		d.histograms += len(ts.Histograms)
	}
	return d, nil
}

func mxDecodeV2(raw []byte) (mxDecoded, error) {
	var d mxDecoded
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		return d, err
	}
	if len(req.Symbols) == 0 || req.Symbols[0] != "" {
		return d, errors.New("symbols do not start with the empty string")
	}
	resolve := func(refs []uint32, series bool) (labels.Labels, error) {
		if len(refs)%2 != 0 {
			return labels.EmptyLabels(), fmt.Errorf("odd number of label refs: %d", len(refs))
		}
		var names, values []string
		for i := 0; i < len(refs); i += 2 {
			if int(refs[i]) >= len(req.Symbols) || int(refs[i+1]) >= len(req.Symbols) {
				return labels.EmptyLabels(), fmt.Errorf("label ref outside the %d symbols", len(req.Symbols))
			}
			names = append(names, req.Symbols[refs[i]])
			values = append(values, req.Symbols[refs[i+1]])
		}
		return mxLabelSet(names, values, series)
	}
	for i, ts := range req.Timeseries {
		if len(ts.Samples) > 0 && len(ts.Histograms) > 0 {
			return d, fmt.Errorf("timeseries %d has both samples and histograms", i)
		}
		ls, err := resolve(ts.LabelsRefs, true)
		if err != nil {
			return d, fmt.Errorf("timeseries %d: %w", i, err)
		}
		for _, x := range ts.Samples {
			d.keys = append(d.keys, mxSampleKey(ls, x.Timestamp, x.Value))
		}
		for _, e := range ts.Exemplars {
			el, err := resolve(e.LabelsRefs, false)
			if err != nil {
				return d, fmt.Errorf("timeseries %d exemplar: %w", i, err)
			}
			d.keys = append(d.keys, mxExemplarKey(ls, e.Timestamp, e.Value, el))
		}
		for _, h := range ts.Histograms {
			d.keys = append(d.keys, mxHistKeyV2(ls, h))
		}
		d.samples += len(ts.Samples)
		d.exemplars += len(ts.Exemplars)
		d.histograms += len(ts.Histograms)
	}
	return d, nil
}

// --- verdicts -------------------------------------------------------------------

// mxVerdict compares what one upstream received, and what the gateway
// counted for it, with what its cell expects.
type mxVerdict struct {
	u        *mxUpstream
	want     int      // points that must arrive
	missing  []string // expected, never arrived
	extra    []string // arrived, not expected
	dups     []string // arrived more than once ("key xN")
	dupCount int      // deliveries beyond the first
	// dropWrong lists every reason whose counter differs from the
	// expected value; dropOver is set if one is above it (no waiting helps).
	dropWrong []string
	dropOver  bool
	// sentWrong lists the gateway's sent counters that differ from the
	// points the upstream must have acknowledged, each once.
	sentWrong []string
	sentOver  bool
	errs      []string
	answers   map[string]int
	largest   int
	received  int
}

func (u *mxUpstream) verdict(exp mxExpectation, m mxMetrics) *mxVerdict {
	u.mu.Lock()
	defer u.mu.Unlock()
	v := &mxVerdict{u: u, errs: slices.Clone(u.errs), answers: maps.Clone(u.answers), largest: u.largest}

	want := exp.keys
	if u.col.id == "b" {
		want = nil // refused, always: nothing may arrive
	}
	v.want = len(want)
	for k := range want {
		if u.got[k] == 0 {
			v.missing = append(v.missing, k)
		}
	}
	for k, n := range u.got {
		v.received += n
		if !want[k] {
			v.extra = append(v.extra, k)
		}
		if n > 1 {
			v.dups = append(v.dups, fmt.Sprintf("%s x%d", k, n))
			v.dupCount += n - 1
		}
	}
	sort.Strings(v.missing)
	sort.Strings(v.extra)
	sort.Strings(v.dups)

	wantDrops := map[string]float64{}
	if exp.relabelDropped > 0 {
		wantDrops["relabel"] = float64(exp.relabelDropped)
	}
	if u.col.id == "b" {
		wantDrops["http_4xx"] = float64(len(exp.keys))
	}
	got := m.drops(u.name)
	reasons := map[string]bool{}
	for r := range got {
		reasons[r] = true
	}
	for r := range wantDrops {
		reasons[r] = true
	}
	for _, r := range slices.Sorted(maps.Keys(reasons)) {
		if got[r] != wantDrops[r] {
			v.dropWrong = append(v.dropWrong, fmt.Sprintf(`gateway_upstream_dropped_samples_total{upstream=%q,reason=%q} = %v, want %v`, u.name, r, got[r], wantDrops[r]))
			if got[r] > wantDrops[r] {
				v.dropOver = true
			}
		}
	}

	// A batch acknowledged twice (a retry after a timeout or reset whose
	// first attempt the upstream kept) is still sent once as the gateway
	// sees it, so the counters match the expected points, not the
	// deliveries.
	var sentWant [3]int
	if u.col.id != "b" {
		sentWant = [3]int{exp.samples, exp.histograms, exp.exemplars}
	}
	for i, c := range []struct {
		metric string
		acked  int
	}{
		{"gateway_upstream_sent_samples_total", u.samples},
		{"gateway_upstream_sent_histograms_total", u.histograms},
		{"gateway_upstream_sent_exemplars_total", u.exemplars},
	} {
		if sent := m[mxMetricKey(c.metric, u.name, "")]; sent != float64(sentWant[i]) {
			v.sentWrong = append(v.sentWrong, fmt.Sprintf("%s{upstream=%q} = %v, want %d (the upstream answered 2xx to %d, duplicates included)", c.metric, u.name, sent, sentWant[i], c.acked))
			if sent > float64(sentWant[i]) {
				v.sentOver = true
			}
		}
	}
	return v
}

// complete: everything expected arrived and every counter is as expected.
func (v *mxVerdict) complete() bool {
	return len(v.missing) == 0 && len(v.dropWrong) == 0 && len(v.sentWrong) == 0
}

// hopeless: waiting cannot make the cell pass.
func (v *mxVerdict) hopeless() bool {
	return len(v.errs) > 0 || len(v.extra) > 0 || v.dropOver || v.sentOver
}

func (v *mxVerdict) settled() bool { return v.complete() || v.hopeless() }

func (v *mxVerdict) pendingSummary() string {
	var parts []string
	if len(v.missing) > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d points missing", len(v.missing), v.want))
	}
	parts = append(parts, v.dropWrong...)
	parts = append(parts, v.sentWrong...)
	return strings.Join(parts, ", ")
}

func mxExamples(keys []string, n int) string {
	if len(keys) > n {
		return strings.Join(keys[:n], "; ") + fmt.Sprintf("; ... (%d more)", len(keys)-n)
	}
	return strings.Join(keys, "; ")
}

// report fails t for everything wrong in v.
func (v *mxVerdict) report(t *testing.T) {
	t.Helper()
	u := v.u
	t.Logf("%s: %d/%d expected points arrived, %d deliveries in all (%d duplicate), upstream answers %v, largest request %d points",
		u.name, v.want-len(v.missing), v.want, v.received, v.dupCount, v.answers, v.largest)
	if len(v.errs) > 0 {
		t.Errorf("%s: the upstream got malformed or wrong-protocol requests: %s", u.name, mxExamples(v.errs, 3))
	}
	if len(v.missing) > 0 {
		t.Errorf("%s: LOST %d of %d points that must arrive, e.g. %s", u.name, len(v.missing), v.want, mxExamples(v.missing, 2))
	}
	if len(v.extra) > 0 {
		t.Errorf("%s: %d points arrived that must not, e.g. %s", u.name, len(v.extra), mxExamples(v.extra, 3))
	}
	if len(v.dups) > 0 {
		if u.col.dupsAllowed {
			t.Logf("%s: %d points arrived more than once (allowed: at-least-once after a timeout or reset), e.g. %s", u.name, len(v.dups), mxExamples(v.dups, 2))
		} else {
			t.Errorf("%s: %d points arrived more than once (%d extra deliveries), and no attempt timed out or was reset: e.g. %s", u.name, len(v.dups), v.dupCount, mxExamples(v.dups, 3))
		}
	}
	for _, s := range v.dropWrong {
		t.Errorf("%s: %s", u.name, s)
	}
	for _, s := range v.sentWrong {
		t.Errorf("%s: %s", u.name, s)
	}
	if v.largest > mxLimit && u.col.id == "c" {
		t.Errorf("%s: accepted a request of %d points, over the limit %d", u.name, v.largest, mxLimit)
	}
	// The column's failure must really have been injected, or the cell
	// proves nothing. A 1.0 upstream is never sent 2.0, so column h is
	// plain 204 for it.
	if f := u.col.failure; f != "" && !(u.col.id == "h" && u.proto == protoV1) && v.answers[f] == 0 {
		t.Errorf("%s: the upstream never answered %s: the column's failure was not exercised (answers %v)", u.name, f, v.answers)
	}
}
