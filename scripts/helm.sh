#!/usr/bin/env bash
# helm.sh builds a pinned helm from source and checks the chart in
# deploy/helm/gateway with it.
#
# Usage:
#   scripts/helm.sh install   build helm into the cache unless it is there; print its path
#   scripts/helm.sh check     install, then `helm lint --strict` and `helm template`
#                             the chart for every mode, then run the chart's Go
#                             test (deploy/helm) with HELM_BIN set; GATEWAY_BIN,
#                             if set, is the gateway binary whose flags the
#                             test checks (else the test builds one)
#
# Where helm comes from, first match wins:
#   1. $HELM_BIN if set: used as is, never built (its version is not checked);
#   2. the cache .cache/tools/helm/helm (override the directory with
#      $HELM_CACHE) if `helm version` prints $HELM_VERSION;
#   3. otherwise `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION` into the
#      cache. The build runs from a temporary directory with GOWORK=off, so
#      it never reads or writes this repository's go.mod and go.sum; the
#      modules come from the Go module proxy like any other. It takes a few
#      minutes on two cores with cold Go caches.
#
# The ldflags are those of helm's own Makefile for a release build: the
# version, and Kubernetes 1.37 (helm v3.22.0 is built against client-go
# v0.37) as the default for .Capabilities.KubeVersion and lint's API
# deprecation checks. Without them helm reports version "v3.22" and
# renders as for Kubernetes 1.20.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELM_VERSION=${HELM_VERSION:-v3.22.0}
HELM_K8S_MINOR=${HELM_K8S_MINOR:-37}
cache=${HELM_CACHE:-$root/.cache/tools/helm}
chart=$root/deploy/helm/gateway
GO=${GO:-go}

log() { printf 'helm: %s\n' "$*" >&2; }
die() { printf 'helm: error: %s\n' "$*" >&2; exit 1; }

# helm_version prints the version of the helm binary $1, or nothing if it
# does not run.
helm_version() {
	"$1" version --template '{{.Version}}' 2>/dev/null || true
}

# install makes sure a helm binary exists and sets $helm to its path.
install() {
	if [[ -n ${HELM_BIN:-} ]]; then
		[[ -x $HELM_BIN ]] || die "HELM_BIN=$HELM_BIN is not executable"
		helm=$HELM_BIN
		log "using HELM_BIN=$helm ($(helm_version "$helm"))"
		return
	fi
	helm=$cache/helm
	if [[ -x $helm && $(helm_version "$helm") == "$HELM_VERSION" ]]; then
		log "using cached $helm ($HELM_VERSION)"
		return
	fi
	log "building helm $HELM_VERSION into $cache (a few minutes on cold Go caches)"
	mkdir -p "$cache"
	local start ldflags pkg=helm.sh/helm/v3
	# Global, not local: the EXIT trap may run after this function returns.
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	ldflags="-s -w -X $pkg/internal/version.version=$HELM_VERSION"
	ldflags+=" -X $pkg/internal/version.metadata= -X $pkg/internal/version.gitTreeState=clean"
	for p in pkg/lint/rules pkg/chartutil; do
		ldflags+=" -X $pkg/$p.k8sVersionMajor=1 -X $pkg/$p.k8sVersionMinor=$HELM_K8S_MINOR"
	done
	start=$SECONDS
	(
		cd "$tmp"
		# GOFLAGS is cleared so that a -mod=... from the environment cannot
		# break `go install pkg@version`.
		GOWORK=off GOFLAGS='' GOBIN=$tmp CGO_ENABLED=0 \
			"$GO" install -trimpath -ldflags "$ldflags" "$pkg/cmd/helm@$HELM_VERSION"
	)
	mv -f "$tmp/helm" "$helm"
	rm -rf "$tmp"
	trap - EXIT
	local got
	got=$(helm_version "$helm")
	[[ $got == "$HELM_VERSION" ]] || die "built $helm reports version '$got', want $HELM_VERSION"
	log "built $helm ($HELM_VERSION) in $((SECONDS - start))s"
}

# The modes the chart is checked in: a name, then --set flags. Keep in sync
# with chartModes in deploy/helm/chart_test.go.
modes=(
	"default|"
	"persistence|--set persistence.enabled=true"
	"autoscaling|--set autoscaling.enabled=true"
	"autoscaling-persistence|--set autoscaling.enabled=true --set persistence.enabled=true"
	"servicemonitor|--set serviceMonitor.enabled=true"
	"no-pdb|--set podDisruptionBudget.enabled=false"
)

check() {
	install
	local entry name args
	# Global, not local: the EXIT trap runs after this function returns.
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
	for entry in "${modes[@]}"; do
		name=${entry%%|*}
		# Word splitting of $args is intended: it holds --set flags.
		# shellcheck disable=SC2206
		args=(${entry#*|})
		log "lint + template: $name ${args[*]}"
		"$helm" lint --strict "$chart" "${args[@]}" >"$out/lint.txt" 2>&1 || {
			cat "$out/lint.txt" >&2
			die "helm lint failed for mode $name"
		}
		"$helm" template gateway "$chart" --namespace monitoring "${args[@]}" >"$out/$name.yaml" 2>"$out/template.err" || {
			cat "$out/template.err" >&2
			die "helm template failed for mode $name"
		}
		if [[ -s $out/template.err ]]; then
			cat "$out/template.err" >&2
			die "helm template wrote warnings for mode $name"
		fi
	done
	log "go test ./deploy/helm/ with HELM_BIN=$helm${GATEWAY_BIN:+ GATEWAY_BIN=$GATEWAY_BIN}"
	# -v: a skipped test must not pass silently here.
	(cd "$root" && HELM_BIN=$helm "$GO" test -count=1 -v ./deploy/helm/) >"$out/test.txt" 2>&1 || {
		cat "$out/test.txt" >&2
		die "go test ./deploy/helm/ failed"
	}
	if grep -q -- '--- SKIP' "$out/test.txt"; then
		cat "$out/test.txt" >&2
		die "go test ./deploy/helm/ skipped tests although helm is at $helm"
	fi
	grep -E '^(ok|FAIL|PASS)' "$out/test.txt" >&2
}

case ${1:-check} in
install) install; printf '%s\n' "$helm" ;;
check) check ;;
*) die "unknown command '$1'; want install or check" ;;
esac
