package forward

import (
	"encoding/binary"
	"regexp/syntax"
	"slices"
	"sync"
	"sync/atomic"
	"unicode"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/rwgateway/gateway/pkg/prw"
)

// maxRuleMemo bounds the answers a memo keeps (see memo).
const maxRuleMemo = 1 << 16

// writeRelabel is an upstream's write_relabel_configs. The rules that
// upstreams use most only keep or drop series by some labels' values
// (keep, drop, keepequal, dropequal), then only drop label names
// (labeldrop, labelkeep). For rules of that shape, Prometheus's relabeling
// is run once per distinct input, on just the labels the rules read, and
// its answer remembered: per series, what is left is reading its labels
// and a lookup (names are first looked for among those the request used). The answers are those of relabel.ProcessBuilder on the
// whole series, which any other shape of rules still runs (prw.Relabeler).
// Safe for concurrent use.
type writeRelabel struct {
	cfgs []*relabel.Config
	// fast reports the rules are of the shape above: filter, then names.
	fast          bool
	filter, names []*relabel.Config
	read          []string // the labels the filter rules read, sorted

	// The answers: of the filter rules by the read labels' values (see
	// keepSeries), of the names rules by name.
	series, name memo
	// A name whose first byte no names rule can match (nameFirst false)
	// is kept unless a labelkeep rule is among them (unmatched): no lookup.
	nameFirst [256]bool
	unmatched bool
}

func newWriteRelabel(cfgs []*relabel.Config) *writeRelabel {
	w := &writeRelabel{cfgs: cfgs}
	i := 0
	for ; i < len(cfgs); i++ {
		c := cfgs[i]
		switch c.Action {
		case relabel.KeepEqual, relabel.DropEqual:
			w.read = append(w.read, c.TargetLabel)
			fallthrough
		case relabel.Keep, relabel.Drop:
			for _, n := range c.SourceLabels {
				w.read = append(w.read, string(n))
			}
			continue
		}
		break
	}
	w.filter = cfgs[:i]
	for ; i < len(cfgs) && (cfgs[i].Action == relabel.LabelDrop || cfgs[i].Action == relabel.LabelKeep); i++ {
	}
	w.names, w.fast = cfgs[len(w.filter):i], i == len(cfgs)
	w.unmatched = true
	for _, c := range w.names {
		w.unmatched = w.unmatched && c.Action == relabel.LabelDrop
		first := firstBytes(c.Regex.Regexp.String()) // anchored
		for b, ok := range first {
			w.nameFirst[b] = w.nameFirst[b] || ok
		}
	}
	slices.Sort(w.read)
	w.read = slices.Compact(w.read)
	return w
}

// apply returns the series of in relabeled, as prw.Relabel with the rules
// after external labels (lb is its builder), and the points dropped. A
// changed request is of its own: written over dst (see prw.Rewrite), or
// made for it.
func (w *writeRelabel) apply(r *request, in, dst *prw.RawV1) (*prw.RawV1, int, error) {
	if !w.fast || w.series.off.Load() || w.name.off.Load() {
		return prw.Relabel(in, r.lb, func(lb *labels.Builder) bool {
			// External labels first, then write relabeling, as Prometheus does.
			r.external.Range(func(l labels.Label) {
				if lb.Get(l.Name) == "" {
					lb.Set(l.Name, l.Value)
				}
			})
			return relabel.ProcessBuilder(lb, w.cfgs...)
		})
	}
	// The rules see each series with its external labels, added first, as
	// Relabel adds them: merged into its labels as they are read.
	var ext *prw.LabelMerger
	if !r.externalPresent(in) {
		m := prw.NewLabelMerger(r.external)
		ext = &m
	}
	var (
		key, body, merged []byte
		names, series     answers // what the memos answered this request
		hasNames          = len(w.names) > 0
		build             = hasNames || ext != nil // a series with labels added changes
	)
	// keepName reports whether the label named name is kept. A sender's
	// label names mostly differ in their first byte.
	keepName := func(name []byte) bool {
		pick := byte(0)
		if len(name) > 0 { // always, in the form
			pick = name[0]
		}
		if !w.nameFirst[pick] {
			return w.unmatched
		}
		return names.get(&w.name, name, pick, func() bool {
			lb := labels.NewBuilder(labels.FromStrings(string(name), "v"))
			// labeldrop and labelkeep keep every series: only what they
			// leave of the label answers.
			_ = relabel.ProcessBuilder(lb, w.names...)
			return lb.Get(string(name)) != ""
		})
	}
	var fn prw.SeriesFunc
	fn = func(ts []byte) ([]byte, bool, error) {
		key, body = key[:0], body[:0]
		changed, i, j := false, 0, 0
		// ls is the series' labels fields: ts's own, or with the external
		// labels added (ls then holds only its labels).
		ls := ts
		if ext != nil {
			var err error
			if merged, changed, err = ext.Merge(merged[:0], ts); err != nil {
				return nil, false, err
			}
			ls = merged
		}
		// label reads the i-th label of the series and reports whether
		// it is kept.
		label := func(name, value []byte) bool {
			for ; j < len(w.read) && before(w.read[j], name); j++ {
				key = append(key, 0) // not there: ""
			}
			if j < len(w.read) && w.read[j] == string(name) {
				key = binary.AppendUvarint(key, uint64(len(value)))
				key = append(key, value...)
				j++
			}
			i++
			// A label of an empty value is none: Relabel leaves it out.
			kept := len(value) > 0 && (!hasNames || keepName(name))
			changed = changed || !kept
			return kept
		}
		// The leading labels that SmallLabel reads are written as
		// AppendLabel would: each run of kept ones is copied in one piece.
		off, run := 0, 0
		for n, name, value, ok := prw.SmallLabel(ls); ok; n, name, value, ok = prw.SmallLabel(ls[off:]) {
			if !label(name, value) {
				if build {
					body = append(body, ls[run:off]...)
				}
				run = off + n
			}
			off += n
		}
		if build {
			body = append(body, ls[run:off]...)
		}
		err := prw.RangeRawLabels(ls[off:], func(name, value []byte) bool {
			if label(name, value) && build {
				body = prw.AppendLabel(body, name, value)
			}
			return true
		})
		if err != nil {
			return nil, false, err
		}
		for ; j < len(w.read); j++ {
			key = append(key, 0)
		}
		// key is not empty: each read label adds a byte at least. Its last
		// byte and length tell most values of a label apart.
		if len(w.filter) > 0 && !series.get(&w.series, key, key[len(key)-1]^byte(len(key)), func() bool { return w.keepSeries(key) }) {
			return nil, false, nil
		}
		if !changed {
			return nil, true, nil
		}
		if !build {
			// Only labels of empty values go (rare): read again, kept.
			build = true
			defer func() { build = false }()
			return fn(ts)
		}
		return body, len(body) > 0, nil // none left: dropped
	}
	return prw.Rewrite(in, fn, dst)
}

// answers are what the memos answered for one request, by key: a sender's
// request uses few label names, and few values of the labels rules read,
// which are found here faster than in a memo. A key is looked for among
// those of the same pick, a byte of it the caller chooses.
type answers struct {
	heads [256]uint8 // by pick: 1 + the index in list of its latest key
	list  []answer
	keys  []byte
}

// answer is a key, in answers.keys, and its answer.
type answer struct {
	off, n uint32 // the key in keys
	keep   bool
	next   uint8 // the answer before it of the same pick, as heads
}

// maxAnswers bounds an answers' list (it holds uint8 indexes).
const maxAnswers = 255

// get returns the answer for key, of pick: held, or else m's for work (see
// memo.get), then held unless the list is full.
func (a *answers) get(m *memo, key []byte, pick byte, work func() bool) bool {
	for k := a.heads[pick]; k != 0; k = a.list[k-1].next {
		if e := &a.list[k-1]; string(a.keys[e.off:e.off+e.n]) == string(key) {
			return e.keep
		}
	}
	keep := m.get(key, work)
	if len(a.list) < maxAnswers {
		a.list = append(a.list, answer{off: uint32(len(a.keys)), n: uint32(len(key)), keep: keep, next: a.heads[pick]})
		a.keys = append(a.keys, key...)
		a.heads[pick] = uint8(len(a.list))
	}
	return keep
}

// before reports whether the label name r sorts before name; most names
// differ in their first byte, which decides without a call to compare.
func before(r string, name []byte) bool {
	if len(r) > 0 && len(name) > 0 && r[0] != name[0] {
		return r[0] < name[0]
	}
	return r < string(name)
}

// keepSeries reports whether the filter rules keep a series whose read
// labels have the values key holds (each a uvarint length, then its bytes).
func (w *writeRelabel) keepSeries(key []byte) bool {
	var sb labels.ScratchBuilder
	for b, i := key, 0; len(b) > 0; i++ {
		n, k := binary.Uvarint(b)
		if v := string(b[k : k+int(n)]); v != "" {
			sb.Add(w.read[i], v)
		}
		b = b[k+int(n):]
	}
	return relabel.ProcessBuilder(labels.NewBuilder(sb.Labels()), w.filter...)
}

// memo remembers answers by key. Past maxRuleMemo distinct keys (rules
// reading a label of many values, such as instance), remembering costs
// more than it saves: it stops (off), and the rules run on every series
// as any others do. Safe for concurrent use.
type memo struct {
	m   sync.Map // string -> bool: a concurrent hash trie, read without locks
	n   atomic.Int64
	off atomic.Bool
}

// get returns the answer for key: remembered, or else from answer.
func (m *memo) get(key []byte, answer func() bool) bool {
	if m.off.Load() {
		return answer()
	}
	if v, ok := m.m.Load(unsafe.String(unsafe.SliceData(key), len(key))); ok {
		return v.(bool)
	}
	v := answer()
	if m.n.Add(1) > maxRuleMemo {
		m.off.Store(true)
		m.m.Clear()
		return v
	}
	m.m.Store(string(key), v)
	return v
}

// firstBytes returns, by byte, whether a string that the regular
// expression expr matches can start with it; every byte where that is
// not worked out. A names rule's expression mostly names a few labels
// (rack, pod_template_hash|controller_revision_hash, __meta_.*): most
// names in a request start with a byte none of them can. Hand-written:
// the regexp packages keep their prefix analysis to themselves, and
// regexp/syntax gives the parsed expression to walk.
func firstBytes(expr string) (set [256]bool) {
	if p, err := syntax.Parse(expr, syntax.Perl); err == nil {
		if set, _, ok := first(p.Simplify()); ok {
			return set
		}
	}
	for b := range set {
		set[b] = true
	}
	return set
}

// first returns the bytes that a match of re can start with, and whether
// re matches the empty string; ok is false where it is not worked out.
// A rune beyond ASCII, or a case folded, counts every byte from 0x80.
func first(re *syntax.Regexp) (set [256]bool, empty, ok bool) {
	runes := func(pairs []rune, fold bool) {
		for i := 0; i+1 < len(pairs); i += 2 {
			for r := pairs[i]; r <= min(pairs[i+1], 0x7f); r++ {
				set[r] = true
				if fold && unicode.IsLetter(r) {
					set[unicode.ToUpper(r)], set[unicode.ToLower(r)] = true, true
				}
			}
			if pairs[i+1] >= 0x80 || fold {
				for b := 0x80; b < len(set); b++ {
					set[b] = true
				}
			}
		}
	}
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return set, true, true
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return set, true, true
		}
		runes([]rune{re.Rune[0], re.Rune[0]}, re.Flags&syntax.FoldCase != 0)
		return set, false, true
	case syntax.OpCharClass:
		runes(re.Rune, false) // folding is spelled out in the class
		return set, false, true
	case syntax.OpCapture, syntax.OpPlus:
		return first(re.Sub[0])
	case syntax.OpStar, syntax.OpQuest: // Simplify left no OpRepeat
		set, _, ok = first(re.Sub[0])
		return set, true, ok
	case syntax.OpConcat, syntax.OpAlternate:
		empty = re.Op == syntax.OpConcat
		for _, sub := range re.Sub {
			s, e, ok := first(sub)
			if !ok {
				return set, false, false
			}
			for b, in := range s {
				set[b] = set[b] || in
			}
			if re.Op == syntax.OpAlternate {
				empty = empty || e
			} else if !e {
				return set, false, true
			}
		}
		return set, empty, true
	}
	return set, false, false // any character, or what is not known here
}
