# shellcheck shell=bash
# shellcheck disable=SC2154 # name, root_hint and cache are set by the sourcing script
# debs.sh: fetch Debian packages and unpack them into a folder of the repo,
# without installing anything system-wide. Sourced by the install scripts,
# which set before sourcing:
#   name       a prefix for log lines ("peers", "nginx")
#   root_hint  what to tell a user who is neither root nor a sudoer
#   cache      the cache folder; packages.txt there lists what was unpacked

log() { printf '%s: %s\n' "$name" "$*" >&2; }
die() { printf '%s: error: %s\n' "$name" "$*" >&2; exit 1; }

# as_root runs "$@" as root: directly, or through non-interactive sudo.
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		die "need root to run '$*' (not root, and no password-less sudo); $root_hint"
	fi
}

# fetch_debs downloads the named Debian packages into the current directory,
# refreshing the package lists once if the first try fails.
fetch_debs() {
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script fetches from Debian's packages; $root_hint"
	command -v dpkg >/dev/null 2>&1 || die "dpkg not found; $root_hint"
	# apt-get download as root warns when _apt cannot write here; let it.
	chmod 0777 . 2>/dev/null || true
	if apt-get download -q "$@" >&2; then
		return 0
	fi
	log "apt-get download failed; refreshing package lists once (apt-get update)"
	as_root apt-get update -q >&2 || die "apt-get update failed"
	apt-get download -q "$@" >&2 || die "apt-get download $* failed after apt-get update; are Debian's package archives reachable?"
}

# extract_debs DEST PKG... downloads the named packages and unpacks them
# into DEST.
extract_debs() {
	local dest=$1 tmp deb
	shift
	tmp=$(mktemp -d)
	log "downloading Debian packages: $*"
	if ! (cd "$tmp" && fetch_debs "$@"); then
		rm -rf "$tmp"
		exit 1
	fi
	mkdir -p "$dest"
	for deb in "$tmp"/*.deb; do
		log "extracting $(basename "$deb") into $dest"
		dpkg -x "$deb" "$dest"
		dpkg-deb -f "$deb" Package Version | paste -sd' ' >>"$cache/packages.txt"
	done
	rm -rf "$tmp"
}
