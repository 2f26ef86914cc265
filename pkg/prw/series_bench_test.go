package prw

import (
	"fmt"
	"testing"

	"go.yaml.in/yaml/v2"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// benchForm returns node_exporter-like series in the form, with 2.0
// extensions, and the series of formSeries.
func benchForm(b *testing.B) ([]byte, []RawSeries, []Series) {
	ss := formSeries()
	for i := range 200 {
		s := Series{
			Labels: labels.FromStrings(
				"__name__", "node_cpu_seconds_total",
				"cluster", "prod-eu-1",
				"cpu", fmt.Sprint(i/8),
				"instance", fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal:9100", i/250, i%250),
				"job", "node",
				"mode", fmt.Sprint("mode", i%8),
			),
			Samples:  []Sample{{Value: float64(i), Timestamp: 2000, StartTimestamp: 1000}, {Value: float64(i) + 1, Timestamp: 3000, StartTimestamp: 1000}},
			Metadata: Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, Help: "CPU time."},
		}
		if i%4 == 0 {
			s.Exemplars = []Exemplar{{Labels: labels.FromStrings("trace_id", "abc"), Value: 1, Timestamp: 2500}}
		}
		ss = append(ss, s)
	}
	var (
		msg, scratch []byte
		rss          []RawSeries
	)
	for i := range ss {
		var rs RawSeries
		msg, rs, scratch = AppendSeries(msg, &ss[i], scratch)
		rss = append(rss, rs)
	}
	return msg, rss, ss
}

func BenchmarkAppendSeries(b *testing.B) {
	_, _, ss := benchForm(b)
	var out, scratch []byte
	b.ReportAllocs()
	for b.Loop() {
		out = out[:0]
		for i := range ss {
			out, _, scratch = AppendSeries(out, &ss[i], scratch)
		}
	}
}

// benchRewrite times rewrite, which appends series i (ts, described by
// rs) to out, over every series of benchForm.
func benchRewrite(b *testing.B, rewrite func(out, ts []byte, rs RawSeries, i int) ([]byte, error)) {
	msg, rss, _ := benchForm(b)
	var out []byte
	var err error
	b.ReportAllocs()
	for b.Loop() {
		out = out[:0]
		for i, rs := range rss {
			if out, err = rewrite(out, rs.Bytes(msg), rs, i); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkAppendV1(b *testing.B) {
	benchRewrite(b, func(out, ts []byte, _ RawSeries, _ int) (o []byte, err error) {
		o, _, _, err = AppendV1(out, ts)
		return o, err
	})
}

func BenchmarkFilterPoints(b *testing.B) {
	keep := func(kind int, t int64, _ int) bool { return kind != KindExemplar && t >= 2000 }
	var scratch []byte
	benchRewrite(b, func(out, ts []byte, rs RawSeries, _ int) (o []byte, err error) {
		o, _, _, scratch, err = FilterPoints(out, ts, rs, keep, scratch)
		return o, err
	})
}

func BenchmarkReplaceLabels(b *testing.B) {
	msg, rss, _ := benchForm(b)
	var sb labels.ScratchBuilder
	lss := make([]labels.Labels, len(rss))
	for i, rs := range rss {
		ls, err := SeriesLabels(rs.Bytes(msg), &sb)
		if err != nil {
			b.Fatal(err)
		}
		lb := labels.NewBuilder(ls)
		lb.Set("env", "prod")
		lss[i] = lb.Labels()
	}
	var scratch []byte
	benchRewrite(b, func(out, ts []byte, rs RawSeries, i int) (o []byte, err error) {
		o, _, scratch, err = replaceLabels(out, ts, rs, lss[i], scratch)
		return o, err
	})
}

func BenchmarkWithMetadata(b *testing.B) {
	md := Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, Help: "Up."}
	benchRewrite(b, func(out, ts []byte, _ RawSeries, _ int) (o []byte, err error) {
		o, _, err = WithMetadata(out, ts, md)
		return o, err
	})
}

// BenchmarkRelabel relabels the series of benchForm as an upstream's
// write_relabel_configs would: rules that change nothing, drop one series
// in eight, or drop a label of every series.
func BenchmarkRelabel(b *testing.B) {
	msg, rss, _ := benchForm(b)
	raw := &RawV1{Msg: msg}
	for _, rs := range rss {
		raw.Append(rs)
	}
	for _, bc := range []struct{ name, rules string }{
		{"unchanged", "- source_labels: [mode]\n  regex: none\n  action: drop\n"},
		{"drop", "- source_labels: [mode]\n  regex: mode3\n  action: drop\n"},
		{"labeldrop", "- regex: cluster\n  action: labeldrop\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var cfgs []*relabel.Config
			if err := yaml.UnmarshalStrict([]byte(bc.rules), &cfgs); err != nil {
				b.Fatal(err)
			}
			lb := labels.NewBuilder(labels.EmptyLabels())
			fn := func(lb *labels.Builder) bool { return relabel.ProcessBuilder(lb, cfgs...) }
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Relabel(raw, lb, fn); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rss)), "ns/series")
		})
	}
}

// BenchmarkAddLabels adds an external label to the series of benchForm:
// one that sorts among theirs and they all lack (replica), one that sorts
// before them all (agent), and one they all have (cluster: nothing
// changes).
func BenchmarkAddLabels(b *testing.B) {
	msg, rss, _ := benchForm(b)
	raw := &RawV1{Msg: msg}
	for _, rs := range rss {
		raw.Append(rs)
	}
	for _, ext := range []labels.Labels{
		labels.FromStrings("replica", "a"),
		labels.FromStrings("agent", "a1"),
		labels.FromStrings("cluster", "x"),
	} {
		b.Run(ext.String(), func(b *testing.B) {
			var dst RawV1
			b.ReportAllocs()
			for b.Loop() {
				if _, err := AddLabels(raw, ext, &dst); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(rss)), "ns/series")
		})
	}
}
