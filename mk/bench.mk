# Comparison of the gateway with the newest vmagent, vmagent 1.79.5 and
# Prometheus 2.42 under the same remote-write load (bench/compare; method
# in docs/BENCHMARKS.md).
# Included from the top-level Makefile, which defines `build` (bin/gateway),
# VPKG and, through mk/peers.mk, `peers`.
GO ?= go
# Extra flags of bench/compare, e.g. BENCH_FLAGS='-rate 100000 -rounds 5',
# BENCH_FLAGS='-settings tuned' (the gateway, vmagent 1.79.5 and Prometheus
# with the same shards, capacity and batch size instead of their defaults)
# or BENCH_FLAGS='-scenarios 1up -systems gateway,vmagent-newest -out ""'.
BENCH_FLAGS ?=
# The newest vmagent, built from source: `go install` of its module with
# CGO_ENABLED=0, once, into .cache/bin/vmagent-<version>/vmagent (reused
# after), and linked as .cache/bin/vmagent-newest (bench/compare's default
# -vmagent-newest). Set VMAGENT_NEWEST_BIN to use a vmagent built elsewhere.
VMAGENT_NEWEST_VERSION ?= v1.151.0
VMAGENT_NEWEST_MODULE = github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent
VMAGENT_NEWEST_BIN ?= .cache/bin/vmagent-$(VMAGENT_NEWEST_VERSION)/vmagent
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

.PHONY: bench-compare baseline rwload vmagent-newest

# Runs gateway, the newest vmagent, vmagent 1.79.5 and Prometheus 2.42 (and
# with BASELINE, the baseline build too) at their defaults in interleaved
# rounds under cmd/rwload's load, forwarding to an in-process counting
# sink, and writes the results into docs/BENCHMARKS.md (BENCH_FLAGS='-out
# ""': not). Takes about 15 minutes (a baseline makes it a quarter longer);
# the first run also builds the newest vmagent.
bench-compare: build peers $(VMAGENT_NEWEST_BIN) $(BASELINE_BIN)
	eval "$$(scripts/peers.sh env)" && export PROMETHEUS_BIN VMAGENT_BIN && \
	  $(GO) run ./bench/compare -gateway bin/gateway -vmagent-newest $(VMAGENT_NEWEST_BIN) \
	  $(if $(BASELINE_BIN),-baseline $(BASELINE_BIN)) $(BENCH_FLAGS)

# Only builds the newest vmagent (if not built yet) and prints its path.
vmagent-newest: $(VMAGENT_NEWEST_BIN)
	@echo $(VMAGENT_NEWEST_BIN)

# go install into a temporary GOBIN, moved into place only when complete,
# so an interrupted build leaves nothing that looks built.
$(VMAGENT_NEWEST_BIN):
	@mkdir -p .cache/bin '$(dir $@)'
	@tmp=$$(mktemp -d '$(CURDIR)/.cache/bin/.vmagent-XXXXXX') || exit 1; \
	trap 'rm -rf "$$tmp"' EXIT; \
	trap 'exit 130' INT TERM; \
	echo "vmagent-newest: go install $(VMAGENT_NEWEST_MODULE)@$(VMAGENT_NEWEST_VERSION) (once; cached in $@)"; \
	start=$$(date +%s); \
	CGO_ENABLED=0 GOBIN="$$tmp" $(GO) install '$(VMAGENT_NEWEST_MODULE)@$(VMAGENT_NEWEST_VERSION)' && \
	mv "$$tmp/vmagent" '$@' && \
	ln -sfn '$(abspath $@)' .cache/bin/vmagent-newest && \
	echo "vmagent-newest: built $@ in $$(($$(date +%s) - start))s"

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
