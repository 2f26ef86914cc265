package prw

// Protocol names a remote-write wire protocol.
type Protocol int

const (
	// ProtoV1 is remote write 1.0, prometheus.WriteRequest.
	ProtoV1 Protocol = iota
	// ProtoV2 is remote write 2.0, io.prometheus.write.v2.Request.
	ProtoV2
)

// Protobuf message names, as in the Content-Type proto parameter and the
// upstream protobuf_message setting.
const (
	MessageV1 = "prometheus.WriteRequest"
	MessageV2 = "io.prometheus.write.v2.Request"
)

// HTTP headers and content types of remote write, for both sides of it.
const (
	// Each protocol's Content-Type, as Prometheus sends it.
	ContentTypeV1 = "application/x-protobuf"
	ContentTypeV2 = "application/x-protobuf;proto=" + MessageV2

	// HeaderVersion carries the sender's version (see Protocol.Version).
	HeaderVersion = "X-Prometheus-Remote-Write-Version"

	// The 2.0 response headers that tell a sender what was written.
	HeaderSamplesWritten    = "X-Prometheus-Remote-Write-Samples-Written"
	HeaderHistogramsWritten = "X-Prometheus-Remote-Write-Histograms-Written"
	HeaderExemplarsWritten  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// pick returns v2 for ProtoV2, else v1 (any other value, read from disk, say).
func (p Protocol) pick(v1, v2 string) string {
	if p == ProtoV2 {
		return v2
	}
	return v1
}

// String returns the protobuf message name of p.
func (p Protocol) String() string { return p.pick(MessageV1, MessageV2) }

// Label returns the short form used as a metric label value: "1.0" or "2.0".
func (p Protocol) Label() string { return p.pick("1.0", "2.0") }

// ContentType returns the Content-Type of a request in p.
func (p Protocol) ContentType() string { return p.pick(ContentTypeV1, ContentTypeV2) }

// Version returns the HeaderVersion value of a request in p.
func (p Protocol) Version() string { return p.pick("0.1.0", "2.0.0") }
