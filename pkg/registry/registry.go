// Package registry is the one place where the gateway creates its
// prometheus.Registry and every collector it exports.
//
// Collectors are created once, at startup, by the New* constructors here and
// handed to the packages that update them. Nothing in the gateway registers a
// collector later: a config reload changes which upstream label values exist
// (see ForwardMetrics.DeleteUpstream), never which collectors exist. That
// rules out the "duplicate metrics collector registration attempted" panic
// that a per-request or per-reload construction causes.
package registry

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
)

// Namespace prefixes every metric the gateway defines.
const Namespace = "gateway"

// New returns the gateway's registry with the Go runtime, process and build
// information collectors registered.
func New() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector(Namespace),
	)
	return reg
}
