package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/receiver/rwtest"
)

// Field numbers of the remote-write messages that the timestamp patcher
// walks. Both protocols put samples in field 2 of a series and the
// timestamp in field 2 of a sample; only the request's series field differs.
const (
	fieldV1Timeseries = 1 // prometheus.WriteRequest.timeseries
	fieldV2Timeseries = 5 // io.prometheus.write.v2.Request.timeseries
	fieldSeriesSample = 2 // TimeSeries.samples, both protocols
	fieldSampleValue  = 1 // Sample.value (fixed64), both protocols
	fieldSampleTime   = 2 // Sample.timestamp (varint), both protocols
)

// tsVarintLen is the encoded length of every timestamp the patcher writes.
// Millisecond timestamps from 1971 to 2109 (2^35 to 2^42-1) are all six
// bytes long as varints, so a template marshalled with one such timestamp
// can take any other in place.
const tsVarintLen = 6

// placeholderTS is the timestamp templates are marshalled with: any value
// of tsVarintLen bytes. placeholderValue is non-zero so that proto3 does not
// omit the field.
const (
	placeholderTS    int64   = 1 << 40
	placeholderValue float64 = 1
)

// errTimestampRange is returned for a timestamp whose varint is not
// tsVarintLen bytes long: before 1971 or after 2109.
var errTimestampRange = errors.New("timestamp outside 1971-2109 cannot be patched in place")

// SeriesLabels returns the labels of series i of a load of families
// metric families: rwtest.SeriesLabels(i) (node_exporter's
// node_cpu_seconds_total on a large fleet, ten labels), trimmed to eight
// labels for i%3 == 0 and extended to twelve for i%3 == 2, so that label
// sets vary in size as on a real fleet. The labels that stay (cpu, mode,
// instance) already tell series apart, so different i give different label
// sets. Series i is of family i%families (see FamilyName): one family
// keeps a 2.0 request's symbols under 128, where each label reference
// takes one byte; a Prometheus request of a node_exporter's hundreds of
// families has more, and most references take two.
func SeriesLabels(i, families int) labels.Labels {
	b := labels.NewBuilder(rwtest.SeriesLabels(i))
	switch i % 3 {
	case 0:
		b.Del("datacenter", "rack")
	case 2:
		b.Set("service", "node-exporter").Set("team", fmt.Sprintf("team-%d", i%7))
	}
	if f := i % max(families, 1); f > 0 {
		b.Set(labels.MetricName, FamilyName(f))
	}
	return b.Labels()
}

// FamilyName is the metric name of family f: rwtest.MetricName for 0.
func FamilyName(f int) string {
	if f == 0 {
		return rwtest.MetricName
	}
	return fmt.Sprintf("%s_%d", rwtest.MetricName, f)
}

// familyHelp is the 2.0 help text of family f, one symbol per family.
func familyHelp(f int) string {
	if f == 0 {
		return rwtest.MetricHelp
	}
	return fmt.Sprintf("%s (family %d)", rwtest.MetricHelp, f)
}

// SampleValue returns the value of series i in round r: a counter that
// grows by 0.25 per round (rwtest.SampleValue).
func SampleValue(i, r int) float64 {
	return rwtest.SampleValue(i, r)
}

// chunk is one request's worth of series, marshalled once with placeholder
// samples, and where each sample's value and timestamp sit in it.
type chunk struct {
	raw        []byte
	firstIndex int     // series index of the first sample
	valueOffs  []int32 // offset of each sample's 8 value bytes
	tsOffs     []int32 // offset of each sample's tsVarintLen timestamp bytes
	lastTS     int64   // timestamp of the last encode, for monotonicity
}

// Payloads holds the request templates of one load: every series once,
// split into requests of SamplesPerRequest samples (the last one may be
// smaller). A request is produced by writing a round's values and timestamp
// into a template and snappy-compressing it, which costs about as much as
// the compression alone; see Encode.
//
// Payloads is not safe for concurrent use: one Run at a time may use it.
// Runs may reuse it one after another.
type Payloads struct {
	protocol Protocol
	series   int
	families int
	chunks   []chunk
	maxRaw   int
}

// NewPayloads builds the templates for series series of families metric
// families (see SeriesLabels) in requests of samplesPerRequest samples, in
// protocol p. It allocates about 270 bytes per series for 1.0 (less for
// 2.0, whose labels are interned per request).
func NewPayloads(p Protocol, series, samplesPerRequest, families int) (*Payloads, error) {
	if series <= 0 || samplesPerRequest <= 0 || families <= 0 {
		return nil, fmt.Errorf("series (%d), samples per request (%d) and families (%d) must be positive", series, samplesPerRequest, families)
	}
	pl := &Payloads{protocol: p, series: series, families: families}
	// One 2.0 start timestamp for the whole load: an hour before it was built.
	start := time.Now().Add(-time.Hour).UnixMilli()
	for lo := 0; lo < series; lo += samplesPerRequest {
		hi := min(lo+samplesPerRequest, series)
		var msg rwtest.Marshaler
		if p == ProtoV2 {
			msg = v2Template(lo, hi, families, start)
		} else {
			msg = v1Template(lo, hi, families)
		}
		raw, err := msg.Marshal()
		if err != nil {
			return nil, fmt.Errorf("marshal series %d-%d: %w", lo, hi, err)
		}
		c := chunk{raw: raw, firstIndex: lo}
		if err := c.index(p); err != nil {
			return nil, fmt.Errorf("index series %d-%d: %w", lo, hi, err)
		}
		if len(c.tsOffs) != hi-lo {
			return nil, fmt.Errorf("series %d-%d: found %d samples, want %d", lo, hi, len(c.tsOffs), hi-lo)
		}
		pl.maxRaw = max(pl.maxRaw, len(raw))
		pl.chunks = append(pl.chunks, c)
	}
	return pl, nil
}

func v1Template(lo, hi, families int) *prompb.WriteRequest {
	req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, hi-lo)}
	for n := range req.Timeseries {
		req.Timeseries[n] = prompb.TimeSeries{
			Labels:  prompb.FromLabels(SeriesLabels(lo+n, families), nil),
			Samples: []prompb.Sample{{Value: placeholderValue, Timestamp: placeholderTS}},
		}
	}
	return req
}

func v2Template(lo, hi, families int, startTS int64) *writev2.Request {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{Timeseries: make([]writev2.TimeSeries, hi-lo)}
	for n := range req.Timeseries {
		i := lo + n
		ls := st.SymbolizeLabels(SeriesLabels(i, families), nil)
		help, unit := st.Symbolize(familyHelp(i%families)), st.Symbolize(rwtest.MetricUnit)
		req.Timeseries[n] = writev2.TimeSeries{
			LabelsRefs: ls,
			Samples:    []writev2.Sample{{Value: placeholderValue, Timestamp: placeholderTS, StartTimestamp: startTS}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: help, UnitRef: unit},
		}
	}
	req.Symbols = st.Symbols()
	return req
}

// index records where each sample's value and timestamp are in c.raw.
func (c *chunk) index(p Protocol) error {
	seriesField := protowire.Number(fieldV1Timeseries)
	if p == ProtoV2 {
		seriesField = fieldV2Timeseries
	}
	return walk(c.raw, 0, func(num protowire.Number, typ protowire.Type, off int, b []byte) error {
		if num != seriesField || typ != protowire.BytesType {
			return nil
		}
		return walk(b, off, func(num protowire.Number, typ protowire.Type, off int, b []byte) error {
			if num != fieldSeriesSample || typ != protowire.BytesType {
				return nil
			}
			var haveValue, haveTS bool
			err := walk(b, off, func(num protowire.Number, typ protowire.Type, off int, b []byte) error {
				switch {
				case num == fieldSampleValue && typ == protowire.Fixed64Type:
					c.valueOffs = append(c.valueOffs, int32(off))
					haveValue = true
				case num == fieldSampleTime && typ == protowire.VarintType:
					if len(b) != tsVarintLen {
						return fmt.Errorf("timestamp varint is %d bytes, want %d", len(b), tsVarintLen)
					}
					c.tsOffs = append(c.tsOffs, int32(off))
					haveTS = true
				}
				return nil
			})
			if err == nil && (!haveValue || !haveTS) {
				err = errors.New("sample without value or timestamp")
			}
			return err
		})
	})
}

// walk calls f for each field of the message b, which starts at offset base
// of the outermost buffer, with the field's value bytes (for length-delimited
// fields, without the length) and their offset in the outermost buffer.
func walk(b []byte, base int, f func(num protowire.Number, typ protowire.Type, off int, v []byte) error) error {
	pos := 0
	for pos < len(b) {
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return protowire.ParseError(n)
		}
		pos += n
		var v []byte
		switch typ {
		case protowire.BytesType:
			bv, m := protowire.ConsumeBytes(b[pos:])
			if m < 0 {
				return protowire.ParseError(m)
			}
			v, pos = bv, pos+m-len(bv) // value starts after the length
			if err := f(num, typ, base+pos, v); err != nil {
				return err
			}
			pos += len(bv)
			continue
		default:
			m := protowire.ConsumeFieldValue(num, typ, b[pos:])
			if m < 0 {
				return protowire.ParseError(m)
			}
			v = b[pos : pos+m]
		}
		if err := f(num, typ, base+pos, v); err != nil {
			return err
		}
		pos += len(v)
	}
	return nil
}

// Protocol returns the payloads' protocol.
func (p *Payloads) Protocol() Protocol { return p.protocol }

// Series returns the number of distinct series.
func (p *Payloads) Series() int { return p.series }

// Families returns the number of metric families of the series.
func (p *Payloads) Families() int { return p.families }

// Requests returns how many requests one round (every series once) takes.
func (p *Payloads) Requests() int { return len(p.chunks) }

// Samples returns the number of samples in request k of a round.
func (p *Payloads) Samples(k int) int { return len(p.chunks[k].tsOffs) }

// MaxEncodedLen returns a buffer size that fits any encoded request.
func (p *Payloads) MaxEncodedLen() int { return snappy.MaxEncodedLen(p.maxRaw) }

// Encode writes round r's values and timestamp ts (milliseconds) into
// request k's template and returns it snappy-compressed, in dst if it is
// large enough. The returned timestamp is ts, raised if needed to one more
// than the previous timestamp of request k, so that every series' samples
// strictly increase in time as TSDBs require.
func (p *Payloads) Encode(dst []byte, k, r int, ts int64) ([]byte, int64, error) {
	c := &p.chunks[k]
	if c.lastTS != 0 && ts <= c.lastTS {
		ts = c.lastTS + 1
	}
	var tsBuf [binary.MaxVarintLen64]byte
	enc := protowire.AppendVarint(tsBuf[:0], uint64(ts))
	if len(enc) != tsVarintLen {
		return nil, 0, fmt.Errorf("%w: %d", errTimestampRange, ts)
	}
	for n, off := range c.tsOffs {
		copy(c.raw[off:off+tsVarintLen], enc)
		binary.LittleEndian.PutUint64(c.raw[c.valueOffs[n]:], math.Float64bits(SampleValue(c.firstIndex+n, r)))
	}
	c.lastTS = ts
	return snappy.Encode(dst, c.raw), ts, nil
}
