package forward

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rwgateway/gateway/cmd/rwload/loadgen"
	"github.com/rwgateway/gateway/pkg/prw"
	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

// A writeRelabel gives what Relabel gives with the rules after external
// labels, byte for byte, with the same points dropped, and the request
// itself when nothing changes: for rules it remembers answers of (keep,
// drop, keepequal, dropequal, then labeldrop, labelkeep) and for others,
// on series with labels missing, empty, long or of external names, asked twice
// so that the second time is answered from what it remembers, and once
// remembering nothing.
func TestWriteRelabelIsRelabel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	// job and jobs share their first byte, as mode and mod do.
	names := []string{"a", "b", "env", "job", "jobs", "mod", "mode", "zz"}
	// A value of 200 bytes takes two-byte lengths: its label, and those
	// after it, are read the general way, not by prw.SmallLabel.
	values := []string{"", "1", "2", "node", "steal", "idle", "prod", strings.Repeat("long", 50)}
	var wr prompb.WriteRequest
	for i := range 300 {
		pl := []prompb.Label{{Name: "__name__", Value: fmt.Sprint("m", i%5)}}
		for _, n := range names {
			if r.IntN(3) > 0 {
				pl = append(pl, prompb.Label{Name: n, Value: values[r.IntN(len(values))]})
			}
		}
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{Labels: pl, Samples: []prompb.Sample{{Value: 1, Timestamp: int64(i)}}})
	}
	msg, err := wr.Marshal()
	require.NoError(t, err)
	d, err := prw.NewV1Decoder().Decode(msg)
	require.NoError(t, err)
	require.Len(t, d.Req.Raw.Series, len(wr.Timeseries))

	for _, rules := range []string{
		"- source_labels: [mode]\n  regex: steal|idle\n  action: drop\n",
		"- source_labels: [job]\n  regex: node\n  action: keep\n",
		"- source_labels: [job, jobs]\n  regex: 'node;.*|;node'\n  action: keep\n",
		"- source_labels: [a, b]\n  regex: '1;.*'\n  action: keep\n- source_labels: [nothere]\n  regex: ''\n  action: keep\n",
		"- source_labels: [a]\n  target_label: b\n  action: dropequal\n",
		"- source_labels: [env]\n  target_label: a\n  action: keepequal\n",
		"- regex: b|zz\n  action: labeldrop\n",
		"- regex: __name__|job|mode|a\n  action: labelkeep\n",
		"- regex: .*\n  action: labeldrop\n",
		"- source_labels: [mode]\n  regex: steal\n  action: drop\n- regex: env\n  action: labeldrop\n",
		// Not remembered: Relabel as it is.
		"- regex: env\n  action: labeldrop\n- source_labels: [env]\n  regex: prod\n  action: drop\n",
		"- source_labels: [job]\n  target_label: job2\n  action: replace\n",
	} {
		cfgs := relabelConfigs(t, rules)
		for _, c := range cfgs {
			require.NoError(t, c.Validate(model.UTF8Validation)) // as config loading does
		}
		w := newWriteRelabel(cfgs)
		for _, ext := range []labels.Labels{labels.EmptyLabels(), labels.FromStrings("env", "prod"), labels.FromStrings("a", "x", "zz", "y")} {
			name := fmt.Sprintf("%q, external %s", rules, ext)
			in := d.Req.Raw
			want, wantDropped, err := prw.Relabel(in, labels.NewBuilder(labels.EmptyLabels()), func(lb *labels.Builder) bool {
				ext.Range(func(l labels.Label) {
					if lb.Get(l.Name) == "" {
						lb.Set(l.Name, l.Value)
					}
				})
				return relabel.ProcessBuilder(lb, cfgs...)
			})
			require.NoError(t, err)
			off := newWriteRelabel(cfgs) // as past maxRuleMemo inputs
			off.series.off.Store(true)
			for _, w := range []*writeRelabel{w, w, off} {
				req := &request{form: in, external: ext, lb: labels.NewBuilder(labels.EmptyLabels())}
				got, dropped, err := w.apply(req, in, nil)
				require.NoError(t, err, name)
				require.Equal(t, wantDropped, dropped, name)
				if got == in {
					require.Same(t, in, want, name+": unchanged")
				}
				require.Equal(t, hashed(want), hashed(got), name)
			}
		}
		require.Equal(t, !containsAny(rules, "replace", "labeldrop\n- source"), w.fast, rules)
	}
}

// Requests relabeled at once by one upstream's rules (as concurrent
// Enqueues do) each get what Relabel gives, while the answers are worked
// out and remembered; run with -race.
func TestWriteRelabelConcurrent(t *testing.T) {
	var wr prompb.WriteRequest
	for i := range 2000 {
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "i", Value: fmt.Sprint(i % 500)}, {Name: "rack", Value: "r"}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: int64(i)}},
		})
	}
	msg, err := wr.Marshal()
	require.NoError(t, err)
	d, err := prw.NewV1Decoder().Decode(msg)
	require.NoError(t, err)
	in := d.Req.Raw
	cfgs := relabelConfigs(t, "- source_labels: [i]\n  regex: '1.*'\n  action: drop\n- regex: rack\n  action: labeldrop\n")
	want, wantDropped, err := prw.Relabel(in, labels.NewBuilder(labels.EmptyLabels()), func(lb *labels.Builder) bool {
		return relabel.ProcessBuilder(lb, cfgs...)
	})
	require.NoError(t, err)
	w := newWriteRelabel(cfgs)
	require.True(t, w.fast)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 5 {
				req := &request{form: in, lb: labels.NewBuilder(labels.EmptyLabels())}
				got, dropped, err := w.apply(req, in, nil)
				assert.NoError(t, err)
				assert.Equal(t, wantDropped, dropped)
				assert.Equal(t, hashed(want), hashed(got))
			}
		})
	}
	wg.Wait()
}

// hashed returns a copy of raw with every series' hash computed, which
// the decoders leave to the first that needs it, and only what a series'
// descriptor tells of it: whether its hash was computed from its leading
// labels or before is the writer's affair.
func hashed(raw *prw.RawV1) *prw.RawV1 {
	c := *raw
	c.Series = slices.Clone(raw.Series)
	for i, rs := range c.Series {
		c.Series[i] = prw.RawSeries{Span: rs.Span, Hash: rs.ShardHash(c.Msg), Samples: rs.Samples, Histograms: rs.Histograms, Exemplars: rs.Exemplars, Ext: rs.Ext, Meta: rs.Meta}
	}
	return &c
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				return true
			}
		}
	}
	return false
}

// Answers are remembered up to maxRuleMemo distinct keys; past that,
// none is, and each is worked out.
func TestRuleMemo(t *testing.T) {
	var m memo
	asked := 0
	get := func(i int) bool {
		return m.get(fmt.Appendf(nil, "%d", i), func() bool { asked++; return i%2 == 0 })
	}
	for i := range maxRuleMemo {
		require.Equal(t, i%2 == 0, get(i))
	}
	require.True(t, get(0))
	require.False(t, get(maxRuleMemo-1))
	require.Equal(t, maxRuleMemo, asked, "remembered")
	require.True(t, get(maxRuleMemo))
	require.True(t, get(0))
	require.True(t, get(0))
	require.Equal(t, maxRuleMemo+3, asked, "past the bound, worked out each time")
}

// BenchmarkWriteRelabel relabels requests of 2000 series with an
// upstream's rules of the kinds used most (bench/compare's relabel
// scenario): a drop by a label's value that matches none, and a labeldrop
// that changes every series.
// "fleet" series have 8, 10 or 12 labels, as rwload's (see
// loadgen.SeriesLabels).
func BenchmarkWriteRelabel(b *testing.B) {
	uniform := rwtest.V1Request(2000, 1)
	fleet := rwtest.V1Request(2000, 1)
	for i := range fleet.Timeseries {
		fleet.Timeseries[i].Labels = prompb.FromLabels(loadgen.SeriesLabels(i, 1), nil)
	}
	replica := labels.FromStrings("replica", "a")
	for _, bc := range []struct {
		name, rules string
		req         *prompb.WriteRequest
		external    labels.Labels
	}{
		{"drop", "- source_labels: [mode]\n  regex: guest\n  action: drop\n", uniform, labels.EmptyLabels()},
		{"drop+labeldrop", "- source_labels: [mode]\n  regex: guest\n  action: drop\n- regex: rack\n  action: labeldrop\n", uniform, labels.EmptyLabels()},
		{"fleet/drop+labeldrop", "- source_labels: [mode]\n  regex: guest\n  action: drop\n- regex: rack\n  action: labeldrop\n", fleet, labels.EmptyLabels()},
		{"fleet/external+drop+labeldrop", "- source_labels: [mode]\n  regex: guest\n  action: drop\n- regex: rack\n  action: labeldrop\n", fleet, replica},
	} {
		msg, err := bc.req.Marshal()
		require.NoError(b, err)
		d, err := prw.NewV1Decoder().Decode(msg)
		require.NoError(b, err)
		in := d.Req.Raw
		b.Run(bc.name, func(b *testing.B) {
			w := newWriteRelabel(relabelConfigs(b, bc.rules))
			req := &request{form: in, lb: labels.NewBuilder(labels.EmptyLabels()), external: bc.external}
			dst := new(prw.RawV1) // as transform passes, and recycles
			b.ReportAllocs()
			for b.Loop() {
				out, _, err := w.apply(req, in, dst)
				if err != nil {
					b.Fatal(err)
				}
				if out != in && out != dst {
					rewrites.Put(out)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(in.Series)), "ns/series")
		})
	}
}

// firstBytes holds every byte a name that a rule's regular expression
// matches starts with (names of every kind, against expressions of every
// construct), and for plain names only their first bytes.
func TestFirstBytes(t *testing.T) {
	exprs := []string{"rack", "rack|dc", "__meta_.*", ".*foo", "(rack)", "r.*", "id|name", "", "(?i)rack",
		"a*b", "(foo)?bar", "[a-c]x|y{2,3}", "x{0,2}z", "k8s_.+", "(?i)k", "(?i)s", "é.*", "[^a]x", `\d+`,
		"^job$", "(a|)b", "a?", "(?:)", `\bfoo`, "[[:upper:]]+", `\pL`, "(?i)[a-c]", "(x*|a)b"}
	names := []string{"rack", "dc", "__meta_x", "xfoo", "foo", "r", "rx", "id", "name", "RACK", "Rack", "b", "ab",
		"aab", "bar", "foobar", "ax", "bx", "cx", "yy", "yyy", "z", "xz", "xxz", "k8s_a", "K", "k", "S", "s", "ſ",
		"\u212a", "é", "éa", "1", "123", "job", "a", "Ab", "Bx", "ÿ", "Éx", "x"}
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := []rune("abcdfijkmnorxyz_KRSé1ſ\u212a")
	for range 20000 {
		n := make([]rune, 1+r.IntN(5))
		for i := range n {
			n[i] = alphabet[r.IntN(len(alphabet))]
		}
		names = append(names, string(n))
	}
	for _, expr := range exprs {
		re := relabel.MustNewRegexp(expr)
		set := firstBytes(re.Regexp.String())
		for _, n := range names {
			if re.MatchString(n) {
				require.True(t, set[n[0]], "%q matches %q, starting with %#x", expr, n, n[0])
			}
		}
	}
	only := func(expr string, bytes string) {
		t.Helper()
		set := firstBytes(relabel.MustNewRegexp(expr).Regexp.String())
		for b, in := range set {
			require.Equal(t, strings.IndexByte(bytes, byte(b)) >= 0, in, "%q, byte %q", expr, rune(b))
		}
	}
	only("rack", "r")
	only("rack|dc", "rd")
	only("__meta_.*", "_")
	only("(foo)?bar", "fb")
	only("x{0,2}z|[a-c]y", "xzabc")
	only("(?:)", "")
}

// A request that write relabeling or external labels changed lends its
// memory to later ones once Enqueue is done with it, and only then: with
// a disk queue whose handoff holds it whole, not while the handoff holds
// its chunks (a request over max_samples_per_send) nor while a memory
// queue holds its items. With both, the series are written once, with
// the external labels and the rules' changes, also when the rules change
// nothing. The upstream holds its first answers until every request is
// in, so later requests are changed while earlier ones wait; each arrives
// as changed.
func TestRewrittenRequestsReused(t *testing.T) {
	const dropRack, dropNone = "- regex: rack\n  action: labeldrop\n", "- regex: none\n  action: labeldrop\n"
	for _, tc := range []struct {
		name     string
		disk     bool
		maxN     int
		external bool   // replica="a"
		rules    string // write_relabel_configs
	}{
		{"relabeled, disk, whole", true, 2000, false, dropRack},
		{"relabeled, disk, chunks", true, 30, false, dropRack},
		{"relabeled, memory", false, 2000, false, dropRack},
		{"external labels, disk, whole", true, 2000, true, ""},
		{"external labels, disk, chunks", true, 30, true, ""},
		{"external labels, memory", false, 2000, true, ""},
		{"both, disk, whole", true, 2000, true, dropRack},
		{"both, disk, chunks", true, 30, true, dropRack},
		{"both, memory", false, 2000, true, dropRack},
		{"external labels, rules that change nothing, disk, whole", true, 2000, true, dropNone},
		{"external labels, rules that change nothing, disk, chunks", true, 30, true, dropNone},
		{"external labels, rules that change nothing, memory", false, 2000, true, dropNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hold := make(chan struct{})
			up := newFakeUpstream(t, func(_ http.ResponseWriter, _ *http.Request, _ *gotRequest, _ int) int {
				<-hold
				return http.StatusNoContent
			})
			u := testUpstream(t, "u", up.srv.URL, false)
			u.QueueConfig.MaxSamplesPerSend = tc.maxN
			cfg, mid := testConfig(u), ""
			if tc.rules != dropRack {
				mid = `rack="r", `
			}
			if tc.external {
				cfg.Global.ExternalLabels, mid = labels.FromStrings("replica", "a"), mid+`replica="a", `
			}
			if tc.rules != "" {
				u.WriteRelabelConfigs = relabelConfigs(t, tc.rules)
			}
			opts := Options{}
			if tc.disk {
				opts.StoragePath = t.TempDir()
			}
			m, _, _, _ := newTestManagerOpts(t, cfg, opts)
			var want []string
			for k := range 8 {
				var wr prompb.WriteRequest
				for i := range 100 {
					wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
						Labels: []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "i", Value: fmt.Sprint(i)},
							{Name: "rack", Value: "r"}, {Name: "request", Value: strings.Repeat(fmt.Sprint(k), 1+k)}},
						Samples: []prompb.Sample{{Value: float64(k*1000 + i), Timestamp: int64(k)}},
					})
					want = append(want, fmt.Sprintf(`{__name__="m", i="%d", %srequest="%s"} %d`, i, mid, strings.Repeat(fmt.Sprint(k), 1+k), k*1000+i))
				}
				postV1(t, m, &wr)
			}
			close(hold)
			require.Eventually(t, func() bool { return len(up.series()) >= len(want) }, waitFor, time.Millisecond)
			var got []string
			for _, s := range up.series() {
				require.Len(t, s.Samples, 1)
				got = append(got, fmt.Sprintf("%s %v", s.Labels, s.Samples[0].Value))
			}
			slices.Sort(want)
			slices.Sort(got)
			require.Equal(t, want, got)
		})
	}
}
