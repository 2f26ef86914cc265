// Package integration tests the built gateway binary against real peers:
// Prometheus 2.42 and vmagent as remote-write clients and upstreams, and
// in-process 2.0 sinks.
//
// The tests carry the build tag integration and need bin/gateway (make build)
// and the peers (scripts/peers.sh); `make integration` does both first:
//
//	make integration
//	go test -tags integration -count=1 -run TestVMAgent -v ./integration/
//
// Environment:
//   - GATEWAY_BIN: the gateway binary (default ../bin/gateway).
//   - PROMETHEUS_BIN, VMAGENT_BIN: the peers (default from
//     ../.cache/peers/env as written by scripts/peers.sh, then PATH).
//   - GATEWAY_SKIP_PEERS=1: skip, rather than fail, tests whose peers are
//     missing.
//
// Every process listens on 127.0.0.1 on a free port, logs to a file in the
// test's temporary directory (printed when the test fails) and is killed by
// PID when the test ends. -short skips every test here.
package integration
