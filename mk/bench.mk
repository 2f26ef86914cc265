# Comparison of the gateway with vmagent and Prometheus under the same
# remote-write load (bench/compare; method in docs/BENCHMARKS.md).
# Included from the top-level Makefile, which defines `build` (bin/gateway)
# and, through mk/peers.mk, `peers`.
GO ?= go
# Extra flags of bench/compare, e.g. BENCH_FLAGS='-rate 100000 -rounds 5'
# or BENCH_FLAGS='-scenarios 1up -systems gateway,vmagent -out ""'.
BENCH_FLAGS ?=

.PHONY: bench-compare rwload

# Runs gateway, vmagent and Prometheus 2.42 in interleaved rounds under
# cmd/rwload's load, forwarding to an in-process counting sink, and writes
# the results into docs/BENCHMARKS.md. Takes under 10 minutes.
bench-compare: build peers
	eval "$$(scripts/peers.sh env)" && export PROMETHEUS_BIN VMAGENT_BIN && \
	  $(GO) run ./bench/compare -gateway bin/gateway $(BENCH_FLAGS)

# Builds the load generator: bin/rwload.
rwload:
	CGO_ENABLED=0 $(GO) build -o bin/rwload ./cmd/rwload
