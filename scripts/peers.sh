#!/usr/bin/env bash
# peers.sh installs the real remote-write peers that the integration tests and
# the demo run against: Prometheus 2.42 and vmagent.
#
# Usage:
#   scripts/peers.sh [install]   install if needed, log what was found
#   scripts/peers.sh env         install if needed, print PROMETHEUS_BIN=... VMAGENT_BIN=...
#                                (eval "$(scripts/peers.sh env)")
#
# Where each binary comes from, first match wins:
#   1. $PROMETHEUS_BIN / $VMAGENT_BIN if set and executable;
#   2. `prometheus` (2.42.x only) / `vmagent` on PATH;
#   3. the cache .cache/peers/ (override with $PEERS_CACHE), filled from
#      Debian's packages: `apt-get download prometheus victoria-metrics`, then
#      `dpkg -x`. Nothing is installed system-wide. If the download fails, the
#      package lists are refreshed once (`apt-get update`, as root or via
#      `sudo -n`) and the download retried.
#
# The chosen paths are also written to .cache/peers/env, which the
# integration tests read when the variables are not in their environment.
#
# Debian bookworm ships prometheus 2.42.0+ds (usr/bin/prometheus) and
# victoria-metrics 1.79.5+ds1 (usr/bin/vmagent among others). Debian's vmagent
# is built without version ldflags: `vmagent -version` prints an empty line and
# exits 0, so its version is taken from the package.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${PEERS_CACHE:-$root/.cache/peers}
want_prom_minor=2.42

# name and root_hint are read by lib/debs.sh.
# shellcheck disable=SC2034
name=peers
# shellcheck disable=SC2034
root_hint="run it as root once, or put prometheus ${want_prom_minor}.x and vmagent on PATH, or set PROMETHEUS_BIN and VMAGENT_BIN"
# shellcheck source=scripts/lib/debs.sh
source "$root/scripts/lib/debs.sh"

# prom_version prints the x.y.z version of the prometheus binary $1, or
# nothing if it does not run.
prom_version() {
	"$1" --version 2>&1 | sed -n 's/^prometheus, version \([0-9][0-9.]*\).*/\1/p' | head -n1
}

# prom_ok reports whether $1 is a runnable Prometheus 2.42.x.
prom_ok() {
	local v
	[[ -x $1 ]] || return 1
	v=$(prom_version "$1") || return 1
	[[ $v == "$want_prom_minor".* ]]
}

# vmagent_ok reports whether $1 is a runnable vmagent.
vmagent_ok() {
	[[ -x $1 ]] || return 1
	"$1" -version >/dev/null 2>&1 || return 1
	# -help exits 0 and lists -remoteWrite.url on every vmagent. Not piped
	# into grep -q: an early grep exit would fail the pipe under pipefail.
	local help
	help=$("$1" -help 2>&1) || return 1
	[[ $help == *-remoteWrite.url* ]]
}

# install_from_debian fills $cache/root from the Debian packages named.
install_from_debian() {
	extract_debs "$cache/root" "$@"
}

resolve() {
	local prom="" vma="" need=()

	if [[ -n ${PROMETHEUS_BIN:-} ]]; then
		prom_ok "$PROMETHEUS_BIN" || die "PROMETHEUS_BIN=$PROMETHEUS_BIN is not a runnable Prometheus ${want_prom_minor}.x"
		prom=$PROMETHEUS_BIN
	elif p=$(command -v prometheus 2>/dev/null) && prom_ok "$p"; then
		prom=$p
	elif prom_ok "$cache/root/usr/bin/prometheus"; then
		prom=$cache/root/usr/bin/prometheus
	else
		need+=(prometheus)
	fi

	if [[ -n ${VMAGENT_BIN:-} ]]; then
		vmagent_ok "$VMAGENT_BIN" || die "VMAGENT_BIN=$VMAGENT_BIN is not a runnable vmagent"
		vma=$VMAGENT_BIN
	elif p=$(command -v vmagent 2>/dev/null) && vmagent_ok "$p"; then
		vma=$p
	elif vmagent_ok "$cache/root/usr/bin/vmagent"; then
		vma=$cache/root/usr/bin/vmagent
	else
		need+=(victoria-metrics)
	fi

	if ((${#need[@]} > 0)); then
		mkdir -p "$cache"
		# One installer at a time (make -j, parallel CI steps).
		exec 9>"$cache/.lock"
		if command -v flock >/dev/null 2>&1; then flock 9; fi
		install_from_debian "${need[@]}"
		if [[ -z $prom ]]; then
			prom=$cache/root/usr/bin/prometheus
			if ! prom_ok "$prom"; then
				[[ -x $prom ]] || die "the prometheus package has no usr/bin/prometheus"
				v=$(prom_version "$prom")
				[[ -n $v ]] || die "$prom does not run: $("$prom" --version 2>&1 | head -n3)"
				die "$prom is version $v, want ${want_prom_minor}.x (Debian bookworm's)"
			fi
		fi
		if [[ -z $vma ]]; then
			vma=$cache/root/usr/bin/vmagent
			[[ -x $vma ]] || die "the victoria-metrics package has no usr/bin/vmagent: $(ls "$cache/root/usr/bin")"
			vmagent_ok "$vma" || die "$vma does not run: $("$vma" -version 2>&1 | head -n3; ldd "$vma" 2>&1 | grep 'not found' || true)"
		fi
	fi

	mkdir -p "$cache"
	printf 'PROMETHEUS_BIN=%s\nVMAGENT_BIN=%s\n' "$prom" "$vma" >"$cache/env.tmp"
	mv "$cache/env.tmp" "$cache/env"
	log "prometheus: $prom (version $(prom_version "$prom"))"
	local vmv=""
	if [[ $vma == "$cache"/* && -f $cache/packages.txt ]]; then
		vmv=$(sed -n 's/^Package: victoria-metrics Version: //p' "$cache/packages.txt" | tail -n1)
	fi
	log "vmagent:    $vma${vmv:+ (Debian victoria-metrics $vmv)}"
	PROMETHEUS_BIN=$prom
	VMAGENT_BIN=$vma
}

case ${1:-install} in
install)
	resolve
	;;
env)
	resolve
	printf 'PROMETHEUS_BIN=%s\nVMAGENT_BIN=%s\n' "$PROMETHEUS_BIN" "$VMAGENT_BIN"
	;;
-h | --help | help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	;;
*)
	die "unknown command '$1' (want install or env)"
	;;
esac
