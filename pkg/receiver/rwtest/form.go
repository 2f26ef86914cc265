package rwtest

import (
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwgateway/gateway/pkg/prw"
)

// Decode returns the series and 1.0 family metadata of req, read from the
// form (see prw.AppendSeries) with the generated messages, extensions
// included: what a test compares with what it sent. It fails on bytes that
// are not the form.
func Decode(req *prw.Request) ([]prw.Series, []prw.FamilyMetadata, error) {
	var (
		series []prw.Series
		fams   []prw.FamilyMetadata
		sb     labels.ScratchBuilder
	)
	raw := req.Raw
	for _, rs := range raw.Series {
		s, err := readSeries(rs.Bytes(raw.Msg), &sb)
		if err != nil {
			return nil, nil, err
		}
		series = append(series, s)
	}
	for _, sp := range raw.Metadata {
		var md prompb.MetricMetadata
		if err := md.Unmarshal(sp.Bytes(raw.Msg)); err != nil {
			return nil, nil, err
		}
		fams = append(fams, prw.FamilyMetadata{MetricFamilyName: md.MetricFamilyName,
			Metadata: prw.Metadata{Type: prw.MetricType(md.Type), Help: md.Help, Unit: md.Unit}})
	}
	return series, fams, nil
}

// readSeries decodes one TimeSeries message in the form.
func readSeries(ts []byte, sb *labels.ScratchBuilder) (s prw.Series, err error) {
	if s.Labels, err = prw.SeriesLabels(ts, sb); err != nil {
		return s, err
	}
	for len(ts) > 0 {
		num, typ, n := protowire.ConsumeTag(ts)
		m := protowire.ConsumeFieldValue(num, typ, ts[n:])
		if n < 0 || m < 0 {
			return s, prw.ErrMalformed
		}
		v, _ := protowire.ConsumeBytes(ts[n:])
		ts = ts[n+m:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 2:
			var x writev2.Sample
			err = x.Unmarshal(v)
			s.Samples = append(s.Samples, prw.Sample{Value: x.Value, Timestamp: x.Timestamp, StartTimestamp: x.StartTimestamp})
		case 3:
			var e prompb.Exemplar
			err = e.Unmarshal(v)
			s.Exemplars = append(s.Exemplars, prw.Exemplar{Labels: e.ToExemplar(sb, nil).Labels, Value: e.Value, Timestamp: e.Timestamp})
		case 4:
			var h prw.Histogram
			err = h.Unmarshal(v)
			s.Histograms = append(s.Histograms, h)
		case 15:
			s.Metadata = prw.ReadMetadata(v)
		}
		if err != nil {
			return s, err
		}
	}
	return s, nil
}

// HashLabels returns the shard hash of labels: that of their canonical
// TimeSeries labels fields, as prw.HashSeries has it.
func HashLabels(ls labels.Labels) uint64 {
	h, _, _ := prw.HashSeries(prw.AppendLabels(nil, ls), nil)
	return h
}

// HistogramToV1 converts a histogram to 1.0, without its StartTimestamp.
func HistogramToV1(h prw.Histogram) prompb.Histogram {
	h.StartTimestamp = 0
	b, err := h.Marshal()
	var out prompb.Histogram
	if err == nil {
		err = out.Unmarshal(b)
	}
	if err != nil {
		panic(err) // a histogram's 2.0 and 1.0 messages differ by field 17 only
	}
	return out
}
