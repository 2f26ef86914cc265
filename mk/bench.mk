# Comparison of the gateway with vmagent and Prometheus under the same
# remote-write load (bench/compare; method in docs/BENCHMARKS.md).
# Included from the top-level Makefile, which defines `build` (bin/gateway),
# VPKG and, through mk/peers.mk, `peers`.
GO ?= go
# Extra flags of bench/compare, e.g. BENCH_FLAGS='-rate 100000 -rounds 5'
# or BENCH_FLAGS='-scenarios 1up -systems gateway,vmagent -out ""'.
BENCH_FLAGS ?=
# Before and after a change: a git revision (commit, tag, branch, HEAD~3)
# to build as the baseline, e.g. `make bench-compare BASELINE=HEAD~1`. It
# is built once per commit into .cache/baseline/gateway-<commit> (from a
# temporary `git worktree` under .cache/baseline, removed after the build;
# the working tree is left alone) and run as the system gateway-baseline,
# like gateway, right after it in every round; each scenario then reports
# the change baseline → current (-baseline of bench/compare). Empty (the
# default): no baseline.
BASELINE ?=
BASELINE_DIR = .cache/baseline
ifneq ($(strip $(BASELINE)),)
BASELINE_COMMIT := $(shell git rev-parse --short=12 --verify --quiet '$(strip $(BASELINE))^{commit}')
ifeq ($(BASELINE_COMMIT),)
$(error BASELINE=$(BASELINE) is not a commit of this repository)
endif
BASELINE_BIN := $(BASELINE_DIR)/gateway-$(BASELINE_COMMIT)
endif

.PHONY: bench-compare baseline rwload

# Runs gateway, vmagent and Prometheus 2.42 (and with BASELINE, the
# baseline build too) in interleaved rounds under cmd/rwload's load,
# forwarding to an in-process counting sink, and writes the results into
# docs/BENCHMARKS.md (BENCH_FLAGS='-out ""': not). Takes under 10 minutes
# (a baseline makes it a third longer).
bench-compare: build peers $(BASELINE_BIN)
	eval "$$(scripts/peers.sh env)" && export PROMETHEUS_BIN VMAGENT_BIN && \
	  $(GO) run ./bench/compare -gateway bin/gateway $(if $(BASELINE_BIN),-baseline $(BASELINE_BIN)) $(BENCH_FLAGS)

# Only builds the baseline: make baseline BASELINE=<rev>.
baseline: $(BASELINE_BIN)
	@test -n '$(BASELINE_BIN)' || { echo 'baseline: set BASELINE=<git revision>' >&2; exit 2; }
	@echo $(BASELINE_BIN)

# The gateway of commit %, built as `make build` builds it (version from
# git describe), in a temporary worktree removed afterwards, on failure and
# on Ctrl-C too.
$(BASELINE_DIR)/gateway-%:
	@mkdir -p $(BASELINE_DIR)
	@wt=$$(mktemp -d '$(CURDIR)/$(BASELINE_DIR)/worktree-XXXXXX') || exit 1; \
	trap 'git worktree remove --force "$$wt" 2>/dev/null; rm -rf "$$wt" "$(CURDIR)/$@.tmp"; git worktree prune' EXIT; \
	trap 'exit 130' INT TERM; \
	echo "baseline: building $* in $$wt"; \
	git worktree add --detach --quiet "$$wt" $* && \
	ver=$$(git describe --tags --always $*) && \
	(cd "$$wt" && CGO_ENABLED=0 $(GO) build \
	  -ldflags "-X $(VPKG).Version=$$ver -X $(VPKG).Revision=$* -X $(VPKG).Branch=baseline" \
	  -o '$(CURDIR)/$@.tmp' ./cmd/gateway) && \
	mv '$(CURDIR)/$@.tmp' '$(CURDIR)/$@'

# Builds the load generator: bin/rwload.
rwload:
	CGO_ENABLED=0 $(GO) build -o bin/rwload ./cmd/rwload
