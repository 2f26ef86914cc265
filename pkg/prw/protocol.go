package prw

// Protocol names a remote-write wire protocol.
type Protocol int

const (
	// ProtoV1 is remote write 1.0, prometheus.WriteRequest.
	ProtoV1 Protocol = iota
	// ProtoV2 is remote write 2.0, io.prometheus.write.v2.Request.
	ProtoV2
)

// Protobuf message names, as they appear in the Content-Type proto parameter
// and in the upstream protobuf_message setting.
const (
	MessageV1 = "prometheus.WriteRequest"
	MessageV2 = "io.prometheus.write.v2.Request"
)

// HTTP headers and content types of remote write, for both sides of it.
const (
	// ContentTypeV1 and ContentTypeV2 are the Content-Type of a request in
	// each protocol, as Prometheus sends them.
	ContentTypeV1 = "application/x-protobuf"
	ContentTypeV2 = "application/x-protobuf;proto=" + MessageV2

	// HeaderVersion carries the sender's remote-write version:
	// VersionV1 or VersionV2.
	HeaderVersion = "X-Prometheus-Remote-Write-Version"
	VersionV1     = "0.1.0"
	VersionV2     = "2.0.0"

	// The 2.0 response headers that tell a sender what was written.
	HeaderSamplesWritten    = "X-Prometheus-Remote-Write-Samples-Written"
	HeaderHistogramsWritten = "X-Prometheus-Remote-Write-Histograms-Written"
	HeaderExemplarsWritten  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

type protocolNames struct{ message, label, contentType, version string }

// names returns the names of p. Any Protocol but ProtoV2 (one read from
// disk, say) is 1.0.
func (p Protocol) names() protocolNames {
	if p == ProtoV2 {
		return protocolNames{MessageV2, "2.0", ContentTypeV2, VersionV2}
	}
	return protocolNames{MessageV1, "1.0", ContentTypeV1, VersionV1}
}

// String returns the protobuf message name of p.
func (p Protocol) String() string { return p.names().message }

// Label returns the short form used as a metric label value: "1.0" or "2.0".
func (p Protocol) Label() string { return p.names().label }

// ContentType returns the Content-Type of a request in p.
func (p Protocol) ContentType() string { return p.names().contentType }

// Version returns the HeaderVersion value of a request in p.
func (p Protocol) Version() string { return p.names().version }
