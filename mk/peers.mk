# Real remote-write peers (Prometheus 2.42, vmagent), the integration tests
# against them, and the demo. Included from the top-level Makefile, which
# defines `build` (bin/gateway).
GO ?= go
# Extra `go test` flags for the integration tests, e.g. INTEGRATION_FLAGS='-v -run TestVMAgent'.
INTEGRATION_FLAGS ?=

.PHONY: peers integration demo

# Installs the peers into .cache/peers/ (Debian packages, extracted) unless on PATH.
peers:
	scripts/peers.sh install

# Runs the gateway binary against the real peers; needs bin/gateway and the peers.
integration: peers build
	$(GO) vet -tags integration ./integration/...
	$(GO) test -tags integration -count=1 -timeout 10m $(INTEGRATION_FLAGS) ./integration/...

# Runs client Prometheus → gateway → upstream Prometheus until Ctrl-C (or DEMO_DURATION seconds).
demo:
	scripts/demo.sh
