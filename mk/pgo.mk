# Profile-guided optimization of the gateway. `go build` optimizes a main
# package with the CPU profile default.pgo in its directory (-pgo=auto,
# the default), so `make build`, `go build ./cmd/gateway` and the Docker
# image all use cmd/gateway/default.pgo.
# Included from the top-level Makefile, which defines `build` (bin/gateway).
GO ?= go
PGO_PROFILE = cmd/gateway/default.pgo
# The load the profile represents (bench/compare scenarios): the closed
# loop (remote write 1.0, 100k series), remote write 2.0 input to a 1.0
# and to a 2.0 upstream, and fan-out to two upstreams, the gateway at its
# defaults (disk queue on).
PGO_SCENARIOS = closed,v2,v2up,2up
# Rounds and load window of each scenario; every run of the system gateway
# is profiled for its whole load window.
PGO_FLAGS ?= -rounds 3 -duration 15s

.PHONY: pgo

# Refreshes cmd/gateway/default.pgo: runs bench/compare with the gateway
# alone (bin/gateway, itself built with the current profile, as Go's PGO
# expects) on 127.0.0.1, fetches /debug/pprof/profile during every load
# window and writes the merged profile; the previous one is kept if any
# profile fails. About 4 minutes. Commit the result: builds use it from
# then on.
pgo: build
	$(GO) run ./bench/compare -gateway bin/gateway -systems gateway \
	  -scenarios $(PGO_SCENARIOS) -out '' $(PGO_FLAGS) -profile $(PGO_PROFILE)
	@ls -l $(PGO_PROFILE)
