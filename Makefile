# The README's two commands are `make demo` and `make test`.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BRANCH   ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
VPKG      = github.com/prometheus/common/version
LDFLAGS   = -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(REVISION) -X $(VPKG).Branch=$(BRANCH)
# Packages that run goroutines of their own: tested again under -race.
RACE_PKGS = ./pkg/prw/... ./pkg/receiver/... ./pkg/forward/... ./pkg/queue/... ./pkg/web/... ./pkg/gateway/... ./cmd/gateway/...
FUZZTIME ?= 100000x

.PHONY: all build test unit race fuzz lint bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o bin/gateway ./cmd/gateway

## test: formatting and vet, unit tests, the race detector, a fuzz smoke run,
## the integration tests against real Prometheus, vmagent and nginx, and the
## Helm chart's lint, render and manifest checks.
test: lint unit race fuzz integration helm-check

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -count=1 ./...

race:
	$(GO) test -count=1 -race $(RACE_PKGS)

# A smoke run of each fuzz target: FUZZTIME inputs each (about 7 s here).
# A count, not a duration: Go before 1.27 can fail a duration-bound run at
# its end with "context deadline exceeded" and no failing input
# (golang/go#75804). Minimizing is off: a new input found near the limit
# would otherwise fail the same way while it is being shrunk.
FUZZ = $(GO) test -run='^$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=0
fuzz:
	$(FUZZ) -fuzz='^FuzzHandlerV1$$' ./pkg/receiver
	$(FUZZ) -fuzz='^FuzzHandlerV2$$' ./pkg/receiver
	$(FUZZ) -fuzz='^FuzzSegmentReader$$' ./pkg/queue
	$(FUZZ) -fuzz='^FuzzRecordDecoder$$' ./pkg/forward

## bench: Go benchmarks with allocations (decode, relabel, encode, queue, handler).
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 ./pkg/...

clean:
	rm -rf bin

include mk/peers.mk
include mk/edge.mk
include mk/bench.mk
include mk/pgo.mk
include mk/helm.mk
