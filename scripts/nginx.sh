#!/usr/bin/env bash
# nginx.sh installs the nginx that integration/edge_test.go runs in front of
# the gateway (TLS termination, a path prefix, X-Forwarded-For).
#
# Usage:
#   scripts/nginx.sh [install]   install if needed, log what was found
#   scripts/nginx.sh env         install if needed, print NGINX_BIN=...
#
# Where the binary comes from, first match wins:
#   1. $NGINX_BIN if set and runnable;
#   2. `nginx` on PATH, or /usr/sbin/nginx (not on a normal user's PATH);
#   3. the cache .cache/peers/ (override with $PEERS_CACHE), filled from
#      Debian's package: `apt-get download nginx`, then `dpkg -x`. Nothing is
#      installed system-wide and no service is started. If the download
#      fails, the package lists are refreshed once (`apt-get update`, as root
#      or via `sudo -n`) and the download retried.
# Any of them must be nginx >= 1.19.5 (for `-e`) with the SSL and proxy
# modules, as Debian bookworm's 1.22 is.
#
# Only the `nginx` package is needed: nginx-common holds the stock
# configuration, which the test does not use (it writes its own and passes
# -c and -p). The binary links libssl3, libpcre2-8-0, zlib1g and libcrypt1,
# which every Debian machine with ca-certificates has; if one is missing
# anyway, those packages are extracted next to it and NGINX_BIN is a
# wrapper that sets LD_LIBRARY_PATH and execs nginx (same PID).
#
# The chosen path is written to .cache/peers/nginx.env, which the
# integration tests read when NGINX_BIN is not in their environment.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${PEERS_CACHE:-$root/.cache/peers}
nginx_root=$cache/nginx
# nginx -e (error log path on the command line) appeared in 1.19.5.
min_version=1.19.5

# name and root_hint are read by lib/debs.sh.
# shellcheck disable=SC2034
name=nginx
# shellcheck disable=SC2034
root_hint="run it as root once, or put nginx >= $min_version on PATH, or set NGINX_BIN"
# shellcheck source=scripts/lib/debs.sh
source "$root/scripts/lib/debs.sh"

# nginx_version prints the version of the nginx binary $1, or nothing.
nginx_version() {
	"$1" -v 2>&1 | sed -n 's|^nginx version: nginx/\([0-9][0-9.]*\).*|\1|p' | head -n1
}

# version_ge reports whether version $1 >= $2.
version_ge() {
	[[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]
}

# nginx_ok reports whether $1 runs and is a recent nginx with SSL.
nginx_ok() {
	local v conf
	[[ -x $1 ]] || return 1
	v=$(nginx_version "$1")
	[[ -n $v ]] && version_ge "$v" "$min_version" || return 1
	conf=$("$1" -V 2>&1) || return 1
	[[ $conf == *--with-http_ssl_module* ]]
}

# extract downloads the named packages and unpacks them into $nginx_root.
extract() {
	extract_debs "$nginx_root" "$@"
}

# install_from_debian extracts Debian's nginx into the cache and prints the
# path to run it by: the binary, or a wrapper if libraries were missing.
install_from_debian() {
	local bin=$nginx_root/usr/sbin/nginx wrapper=$nginx_root/nginx-wrapper missing libdirs
	extract nginx
	[[ -x $bin ]] || die "the nginx package has no usr/sbin/nginx"
	missing=$(ldd "$bin" 2>/dev/null | sed -n 's/^[[:space:]]*\([^ ]*\) => not found.*/\1/p' | paste -sd' ')
	if [[ -n $missing ]]; then
		log "libraries missing on this machine: $missing; extracting them next to nginx"
		extract libssl3 libpcre2-8-0 zlib1g libcrypt1
		libdirs=$(find "$nginx_root" -name 'lib*.so.*' -printf '%h\n' | sort -u | paste -sd:)
		cat >"$wrapper" <<-EOF
			#!/bin/sh
			# Written by scripts/nginx.sh: Debian's nginx with the libraries it brought.
			LD_LIBRARY_PATH=$libdirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} exec "$bin" "\$@"
		EOF
		chmod +x "$wrapper"
		bin=$wrapper
	fi
	if ! nginx_ok "$bin"; then
		die "$bin does not run or is not nginx >= $min_version with SSL: $("$bin" -V 2>&1 | head -n3; ldd "$nginx_root/usr/sbin/nginx" 2>&1 | grep 'not found' || true)"
	fi
	printf '%s\n' "$bin"
}

resolve() {
	local p=""
	if [[ -n ${NGINX_BIN:-} ]]; then
		nginx_ok "$NGINX_BIN" || die "NGINX_BIN=$NGINX_BIN is not a runnable nginx >= $min_version with SSL"
		p=$NGINX_BIN
	elif p=$(command -v nginx 2>/dev/null) && nginx_ok "$p"; then
		:
	elif nginx_ok /usr/sbin/nginx; then
		p=/usr/sbin/nginx
	elif nginx_ok "$nginx_root/nginx-wrapper"; then
		p=$nginx_root/nginx-wrapper
	elif nginx_ok "$nginx_root/usr/sbin/nginx"; then
		p=$nginx_root/usr/sbin/nginx
	else
		mkdir -p "$cache"
		# One installer at a time (make -j, parallel CI steps); the same
		# lock as scripts/peers.sh, which also appends to packages.txt.
		exec 9>"$cache/.lock"
		if command -v flock >/dev/null 2>&1; then flock 9; fi
		p=$(install_from_debian)
	fi
	mkdir -p "$cache"
	printf 'NGINX_BIN=%s\n' "$p" >"$cache/nginx.env.tmp"
	mv "$cache/nginx.env.tmp" "$cache/nginx.env"
	log "using $p (version $(nginx_version "$p"))"
	NGINX_BIN=$p
}

case ${1:-install} in
install)
	resolve
	;;
env)
	resolve
	printf 'NGINX_BIN=%s\n' "$NGINX_BIN"
	;;
-h | --help | help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	;;
*)
	die "unknown command '$1' (want install or env)"
	;;
esac
