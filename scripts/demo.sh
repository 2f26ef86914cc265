#!/usr/bin/env bash
# demo.sh runs the gateway for real on this machine:
#
#   client Prometheus ──remote write──▶ gateway ──remote write──▶ upstream Prometheus
#   (scrapes itself and the gateway every 5s)      (adds gw="demo")   (--web.enable-remote-write-receiver)
#
# It builds bin/gateway (make build), installs the peers (scripts/peers.sh),
# starts the three processes on 127.0.0.1 with their files under .cache/demo/,
# waits until data arrives upstream, prints where to look, and runs until
# Ctrl-C, then stops the three processes it started.
#
# Environment:
#   DEMO_DURATION=SECONDS   stop by itself after that many seconds
#   UPSTREAM_PORT=9091 GATEWAY_PORT=9095 CLIENT_PORT=9090
#                           preferred ports; a free one is used if taken
#   DEMO_DIR=.cache/demo    the processes' files (emptied first)
#   GATEWAY_BIN=PATH        run this gateway binary instead of building one
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
dir=${DEMO_DIR:-$root/.cache/demo}
duration=${DEMO_DURATION:-}

log() { printf 'demo: %s\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

[[ -z $duration || $duration =~ ^[0-9]+$ ]] || die "DEMO_DURATION=$duration is not a number of seconds"
[[ -n $dir && $dir != / && $dir != "$root" ]] || die "DEMO_DIR=$dir: not a directory to empty"
command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install curl)"

# port_in_use reports whether something accepts connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port prints $1 if it is free, else a free port from 20000-59999.
pick_port() {
	local p=$1 i
	if ! port_in_use "$p"; then
		echo "$p"
		return
	fi
	for i in $(seq 1 50); do
		p=$((20000 + RANDOM % 40000))
		if ! port_in_use "$p"; then
			log "port $1 is taken; using $p"
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

pids=()
names=()

# stop_all stops what was started in reverse order, each before the next, so
# the gateway can flush to a still-running upstream: SIGTERM, then SIGKILL
# after 30s (the gateway's default flush timeout is 25s).
stop_all() {
	local i pid
	trap - EXIT
	# make passes a SIGTERM on to this script after the one its process
	# group got: ignored, the stop is bounded. A second Ctrl-C kills what
	# is left at once.
	trap '' TERM
	trap 'for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done; exit 130' INT
	((${#pids[@]} > 0)) || return 0
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid=${pids[i]}
		log "stopping ${names[i]} (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 300); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "${names[i]} (pid $pid) still running 30s after SIGTERM; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	pids=()
	log "stopped; logs and data are in $dir"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOGFILE CMD... runs CMD in the background and records its PID.
# CMD gets a session of its own (setsid, where there is one): Ctrl-C then
# reaches this script alone, and stop_all stops each process in turn. In
# the terminal's process group, every process would get it at once, and the
# client would retry its last writes to a gateway already gone.
start() {
	local name=$1 logfile=$2
	shift 2
	if command -v setsid >/dev/null; then
		set -- setsid "$@"
	fi
	"$@" >"$logfile" 2>&1 &
	pids+=("$!")
	names+=("$name")
	log "started $name (pid $!), log $logfile"
}

# wait_ready NAME URL PID waits up to 60s for URL to answer 2xx.
wait_ready() {
	local name=$1 url=$2 pid=$3
	for _ in $(seq 1 600); do
		if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || die "$name exited; see its log in $dir"
		sleep 0.1
	done
	die "$name not ready at $url after 60s; see its log in $dir"
}

# query_value BASE QUERY prints the first value of an instant query, or nothing.
query_value() {
	curl -fsS --max-time 5 -G "$1/api/v1/query" --data-urlencode "query=$2" 2>/dev/null |
		sed -n 's/.*"value":\[[^,]*,"\([^"]*\)"\].*/\1/p'
}

gateway=${GATEWAY_BIN:-}
if [[ -z $gateway ]]; then
	log "building the gateway (make build)"
	make --no-print-directory build >&2
	gateway=$root/bin/gateway
else
	log "running GATEWAY_BIN=$gateway, not a fresh build"
fi
[[ -x $gateway ]] || die "GATEWAY_BIN=$gateway is not an executable"
log "installing peers (scripts/peers.sh)"
eval "$(scripts/peers.sh env)"

rm -rf "$dir"
mkdir -p "$dir"

up_port=$(pick_port "${UPSTREAM_PORT:-9091}")
gw_port=$(pick_port "${GATEWAY_PORT:-9095}")
cl_port=$(pick_port "${CLIENT_PORT:-9090}")
[[ -n $up_port && -n $gw_port && -n $cl_port ]] || die "no free ports"
up=http://127.0.0.1:$up_port
gw=http://127.0.0.1:$gw_port
cl=http://127.0.0.1:$cl_port

cat >"$dir/upstream.yml" <<EOF
# Receives remote write only.
global:
  scrape_interval: 1m
EOF

cat >"$dir/gateway.yml" <<EOF
global:
  external_labels: {gw: demo}
upstreams:
  - name: upstream
    url: $up/api/v1/write
    protobuf_message: prometheus.WriteRequest
    queue_config: {batch_send_deadline: 1s, max_shards: 4}
EOF

cat >"$dir/client.yml" <<EOF
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:$cl_port']
  - job_name: gateway
    static_configs:
      - targets: ['127.0.0.1:$gw_port']
remote_write:
  - url: $gw/api/v1/write
    queue_config: {batch_send_deadline: 1s}
EOF

start upstream "$dir/upstream.log" "$PROMETHEUS_BIN" \
	--config.file="$dir/upstream.yml" \
	--web.listen-address="127.0.0.1:$up_port" \
	--storage.tsdb.path="$dir/upstream-data" \
	--web.enable-remote-write-receiver
wait_ready upstream "$up/-/ready" "${pids[-1]}"

start gateway "$dir/gateway.log" "$gateway" \
	--config.file="$dir/gateway.yml" \
	--web.listen-address="127.0.0.1:$gw_port" \
	--storage.path="$dir/gateway-data" \
	--log.level=info
wait_ready gateway "$gw/-/ready" "${pids[-1]}"

start client "$dir/client.log" "$PROMETHEUS_BIN" \
	--config.file="$dir/client.yml" \
	--web.listen-address="127.0.0.1:$cl_port" \
	--storage.tsdb.path="$dir/client-data"
wait_ready client "$cl/-/ready" "${pids[-1]}"

cat <<EOF

  client Prometheus   $cl   (scrapes itself and the gateway every 5s, remote-writes to the gateway)
  gateway             $gw   (config $dir/gateway.yml, adds gw="demo")
  upstream Prometheus $up   (receives what the gateway forwards)

  Forwarded series in the upstream:
    $up/graph?g0.expr=up&g0.tab=1
    $up/graph?g0.expr=rate(gateway_receiver_requests_total%5B1m%5D)&g0.tab=0
  From a shell:
    curl -s '$up/api/v1/query?query=up'
    curl -s '$up/api/v1/query' --data-urlencode 'query=count({gw="demo"})'
    curl -s $gw/metrics | grep ^gateway_
    curl -s $gw/-/ready
  Logs: $dir/{upstream,gateway,client}.log

EOF

log "waiting for data to arrive upstream"
n=""
for _ in $(seq 1 120); do
	n=$(query_value "$up" 'count({gw="demo"})')
	[[ -n $n && $n != 0 ]] && break
	for i in "${!pids[@]}"; do
		kill -0 "${pids[i]}" 2>/dev/null || die "${names[i]} exited; see $dir/${names[i]}.log"
	done
	sleep 1
done
[[ -n $n && $n != 0 ]] || die "no data arrived upstream within 120s; see the logs in $dir"
echo "$n series arrived upstream (count({gw=\"demo\"}) at $up)"

if [[ -n $duration ]]; then
	log "running for ${duration}s (DEMO_DURATION)"
else
	log "running until Ctrl-C"
fi
start_s=$SECONDS
while [[ -z $duration ]] || ((SECONDS - start_s < duration)); do
	for i in "${!pids[@]}"; do
		kill -0 "${pids[i]}" 2>/dev/null || die "${names[i]} exited unexpectedly; see $dir/${names[i]}.log"
	done
	sleep 1
done
n=$(query_value "$up" 'count({gw="demo"})')
echo "${n:-0} series upstream after ${duration}s; gateway up in upstream: $(query_value "$up" 'up{job="gateway",gw="demo"}')"
