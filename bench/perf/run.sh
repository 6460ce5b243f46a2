#!/usr/bin/env bash
# craftedge performance suite: one command, one run, alternating targets on
# the same 10 KiB and 100 KiB pages (see bench/perf/README.md).
#
#   bench/perf/run.sh [--quick] [--profile]
#
#   --quick     1 round of 2 s per target, short memory step, no HTTP purge
#               step, Go benchmarks once (about 2 minutes)
#   --profile   also take CPU profiles of craftedge hits under load (admin
#               /debug/pprof/profile) into $CACHE_DIR/profiles
#
# Default: 5 rounds of 3 s per target (about 10 minutes). Environment:
# ROUNDS, SECS, THREADS (2), CONNS (64), SERVER_CPU (0), CLIENT_CPU (1),
# CACHE_HANDLER_VERSION (v0.16.0), XDG_CACHE_HOME, KEEP_WORK=1 (keep the temp
# directory: configs, logs, raw wrk output), ONLY="respond ce-identity ..."
# (measure only these rows, skip the purge, memory and Go steps: for A/B
# re-checks with more rounds; report in results/latest-only.md), STEPS="purge memory go" (run only these of
# the steps hits, purge, memory, go and esi (bench/perf/esi.sh); naming purge runs it in --quick too),
# BASELINE=<git ref> (also build craftedge at that commit, from git archive
# into the temp directory, and measure its hits in the same rounds: rows
# "base-identity", "base-gzip", "base-browser", for a before/after of one run).
#
# Every server runs on 127.0.0.1, pinned to SERVER_CPU; wrk and the origin
# run on CLIENT_CPU. Output: markdown tables on stdout and in
# bench/perf/results/latest.md (latest-<steps>.md with STEPS). Every process started here is stopped on
# exit, failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
PERF=$REPO/bench/perf

QUICK=0
PROFILE=0
for arg in "$@"; do
	case $arg in
	--quick) QUICK=1 ;;
	--profile) PROFILE=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "unknown argument: $arg (try --help)" >&2
		exit 2
		;;
	esac
done

if [ "$QUICK" = 1 ]; then
	ROUNDS=${ROUNDS:-1} SECS=${SECS:-2} WS_SECS=8 BENCHTIME=1x HTTP_PURGE=0 BUDGET=240
else
	ROUNDS=${ROUNDS:-5} SECS=${SECS:-3} WS_SECS=20 BENCHTIME=3x HTTP_PURGE=1 BUDGET=900
fi
STEPS_GIVEN=${STEPS:+1}
STEPS=${STEPS:-hits purge memory go esi}
step() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }
[ -n "$STEPS_GIVEN" ] && step purge && HTTP_PURGE=1
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/craftedge-bench
CACHE_HANDLER_VERSION=${CACHE_HANDLER_VERSION:-v0.16.0}
XCADDY_VERSION=v0.4.5
CADDY_VERSION=$(awk '$1 == "github.com/caddyserver/caddy/v2" { print $2; exit }' go.mod)
BROWSER='Accept-Encoding: gzip, deflate, br, zstd'
MEM_BOUND_MIB=32
# The overhead this suite states for the memory step: anonymous RSS may
# reach `memory` + this. craftedge sets Go's soft memory limit to
# memory + memory/16 (tag index, ~0.5 KiB per entry) + 40 MiB (idle process
# ~12 MiB, request buffers, GC headroom) unless GOMEMLIMIT is set
# (pagecache.MemoryLimitFor).
MEM_OVERHEAD_MIB=$((40 + MEM_BOUND_MIB / 16))
START=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "FAILED: $*"
	exit 1
}

# --- processes: every one is recorded, and stopped on exit ---------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/craftedge-perf.XXXXXX")
chmod 711 "$WORK" # nginx workers (nobody) must reach their temp dirs
declare -A PID=()

stop() { # name
	local pid=${PID[$1]:-}
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	unset "PID[$1]"
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM HUP
	for name in "${!PID[@]}"; do stop "$name"; done
	if [ "$rc" -ne 0 ]; then
		for f in "$WORK"/*.log; do
			[ -s "$f" ] || continue
			echo "--- ${f##*/}" >&2
			tail -n 8 "$f" >&2
		done
	fi
	if [ -n "${KEEP_WORK:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# start NAME CPU CMD...: runs CMD pinned to CPU, logs to $WORK/NAME.log.
start() {
	local name=$1 cpu=$2
	shift 2
	taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
	PID[$name]=$!
}

# Caddy processes keep their data and autosave out of $HOME.
caddy_env=(env "XDG_DATA_HOME=$WORK/data" "XDG_CONFIG_HOME=$WORK/config")

wait_up() { # name url
	for _ in $(seq 150); do
		curl -s -o /dev/null --max-time 1 "$2" && return 0
		kill -0 "${PID[$1]}" 2>/dev/null || die "$1 exited at start"
		sleep 0.1
	done
	die "$1 did not answer $2 within 15 s"
}

vm() { # pid field -> kB
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# Rows: id server port client.
ROWS=(
	"respond respond 18081 identity"
	"ce-identity ce-hit 18082 identity"
	"ce-gzip ce-hit 18082 gzip"
	"ce-browser ce-hit 18082 browser"
	"ch-identity cache-handler 18084 identity"
	"ch-browser cache-handler 18084 browser"
	"nx-identity nginx 18085 identity"
	"nx-browser nginx 18085 browser"
	"nxgz-browser nginx 18086 browser"
	"snap-identity ce-snap 18083 identity"
	"snap-browser ce-snap 18083 browser"
)
if [ -n "${BASELINE:-}" ]; then
	ROWS+=("base-identity ce-base 18089 identity" "base-gzip ce-base 18089 gzip" "base-browser ce-base 18089 browser")
fi
if [ -n "${ONLY:-}" ]; then
	kept=()
	for row in "${ROWS[@]}"; do
		case " $ONLY " in *" ${row%% *} "*) kept+=("$row") ;; esac
	done
	ROWS=("${kept[@]}")
	[ ${#ROWS[@]} -gt 0 ] || die "ONLY=$ONLY matches no row"
fi
# uses SERVER: a selected row is served by SERVER (respond always is: the
# ratios' ceiling). Servers no row uses are neither built, installed nor started.
uses() {
	[ "$1" = respond ] && return 0
	local row
	for row in "${ROWS[@]}"; do
		set -- "$1" $row
		[ "$3" = "$1" ] && return 0
	done
	return 1
}

# --- tools -----------------------------------------------------------------
as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi
}
need() { # command package
	command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] && return 0
	log "installing $2 (apt)"
	{ as_root apt-get install -y -qq "$2" || { as_root apt-get update -qq && as_root apt-get install -y -qq "$2"; }; } \
		>"$WORK/apt-$2.log" 2>&1 || die "could not install $2 with apt-get (see above)"
}
[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 CPUs: server and load generator share a CPU"
need wrk wrk
step hits && uses nginx && need nginx nginx
need taskset util-linux
need python3 python3
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

log "building craftedge"
go build -o "$WORK/craftedge" ./cmd/craftedge
CE=$WORK/craftedge
BASE_REF=
if [ -n "${BASELINE:-}" ] && step hits && uses ce-base; then
	BASE_REF=$(git rev-parse --short "$BASELINE") || die "BASELINE=$BASELINE is not a git ref"
	log "building the baseline craftedge at $BASE_REF (git archive)"
	mkdir -p "$WORK/base-src"
	git archive "$BASE_REF" | tar -x -C "$WORK/base-src"
	(cd "$WORK/base-src" && go build -o "$WORK/craftedge-base" ./cmd/craftedge) >"$WORK/base-build.log" 2>&1 ||
		die "building the baseline failed (log: $WORK/base-build.log)"
fi
CH=$CACHE_DIR/caddy-$CADDY_VERSION-cache-handler-$CACHE_HANDLER_VERSION
if step hits && uses cache-handler && [ ! -x "$CH" ]; then
	log "building Caddy $CADDY_VERSION + cache-handler $CACHE_HANDLER_VERSION with xcaddy (once; cached as $CH)"
	mkdir -p "$CACHE_DIR"
	(cd "$CACHE_DIR" && timeout 900 go run "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION" build "$CADDY_VERSION" \
		--with "github.com/caddyserver/cache-handler@$CACHE_HANDLER_VERSION" --output "$CH.tmp") >"$WORK/xcaddy.log" 2>&1 ||
		die "xcaddy build failed (log: $WORK/xcaddy.log)"
	mv "$CH.tmp" "$CH"
fi

python3 -B "$PERF/pages.py" "$WORK/site"
P10K=$(cat "$WORK/site/p10k.html")
P100K=$(cat "$WORK/site/p100k.html")
P1K=$(cat "$WORK/site/p1k.html")

# --- configs -----------------------------------------------------------------
global() { # admin-port [extra global lines]
	cat <<EOF
{
	admin localhost:$1
	default_bind 127.0.0.1
	auto_https off
	persist_config off
	grace_period 1s
	log {
		level ERROR
	}
$2
}
EOF
}

# The origin: what Craft renders, as Craft sends it (no Vary, no ETag, no
# Cache-Control; tags in Cache-Tag). /bulk/* are small entries sharing one
# tag (purge step), /ws/* the 10 KiB page under many URLs (memory step).
{
	global 2090 ""
	cat <<EOF
http://:18090 {
	bind 127.0.0.1
	header Content-Type "text/html; charset=utf-8"
	handle /bulk/* {
		header Cache-Tag "bulk"
		respond \`$P1K\`
	}
	handle /ws/* {
		header Cache-Tag "ws page"
		respond \`$P10K\`
	}
	handle /p10k.html {
		header Cache-Tag "page entry:1"
		respond \`$P10K\`
	}
	handle /p100k.html {
		header Cache-Tag "page entry:2"
		respond \`$P100K\`
	}
	respond 404
}
EOF
} >"$WORK/origin.Caddyfile"

# The ceiling: Caddy's static respond of the same bodies.
{
	global 2091 ""
	cat <<EOF
http://127.0.0.1:18081 {
	header Content-Type "text/html; charset=utf-8"
	handle /p10k.html {
		respond \`$P10K\`
	}
	handle /p100k.html {
		respond \`$P100K\`
	}
}
EOF
} >"$WORK/respond.Caddyfile"

craftedge_conf() { # admin port storage memory upstream [extra craftedge option]
	global "$1" "	craftedge {
		storage $WORK/$3
		memory $4${6:+
		$6}
	}"
	cat <<EOF
http://127.0.0.1:$2 {
	craftedge {
		upstream origin
		ttl 1h
	}
	reverse_proxy $5
}
EOF
}
craftedge_conf 2092 18082 hit.db 256MiB 127.0.0.1:18090 >"$WORK/ce-hit.Caddyfile"
craftedge_conf 2093 18083 snap.db 256MiB 127.0.0.1:18090 >"$WORK/ce-snap-warm.Caddyfile"
# Snapshot serving: same storage, origin unreachable (nothing listens on
# 18099), process restarted so the memory tier is empty (warm_start off:
# the warm start would refill it with both pages, fresh).
craftedge_conf 2093 18083 snap.db 256MiB 127.0.0.1:18099 "warm_start off" >"$WORK/ce-snap.Caddyfile"
craftedge_conf 2097 18087 purge.db 256MiB 127.0.0.1:18090 >"$WORK/ce-purge.Caddyfile"
craftedge_conf 2099 18089 base.db 256MiB 127.0.0.1:18090 >"$WORK/ce-base.Caddyfile"
craftedge_conf 2098 18088 mem.db "${MEM_BOUND_MIB}MiB" 127.0.0.1:18090 >"$WORK/ce-mem.Caddyfile"

{
	global 2094 "	cache {
		ttl 1h
	}"
	cat <<EOF
http://127.0.0.1:18084 {
	cache
	reverse_proxy 127.0.0.1:18090
}
EOF
} >"$WORK/cache-handler.Caddyfile"

mkdir -p "$WORK/nginx/cache" "$WORK/nginx/tmp"
chmod -R 777 "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	tcp_nodelay on;
	keepalive_timeout 65;
	keepalive_requests 1000000;
	client_body_temp_path $WORK/nginx/tmp/body;
	proxy_temp_path $WORK/nginx/tmp/proxy;
	fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
	uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
	scgi_temp_path $WORK/nginx/tmp/scgi;
	proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=pages:16m max_size=512m inactive=1h use_temp_path=off;
	upstream origin {
		server 127.0.0.1:18090;
		keepalive 16;
	}
	# proxy_cache, gzip off (identity bodies to every client).
	server {
		listen 127.0.0.1:18085;
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_cache pages;
			proxy_cache_valid 200 1h;
			proxy_cache_lock on;
			add_header X-Cache-Status \$upstream_cache_status always;
		}
	}
	# The same with gzip on, as Debian's default nginx.conf has it (level 1,
	# text/html): every hit is compressed again for gzip-capable clients.
	server {
		listen 127.0.0.1:18086;
		gzip on;
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_cache pages;
			proxy_cache_valid 200 1h;
			proxy_cache_lock on;
			add_header X-Cache-Status \$upstream_cache_status always;
		}
	}
}
EOF

# --- start and warm ------------------------------------------------------------
log "starting servers (servers on CPU $SERVER_CPU, wrk and origin on CPU $CLIENT_CPU)"
start origin "$CLIENT_CPU" "${caddy_env[@]}" "$CE" run --config "$WORK/origin.Caddyfile" --adapter caddyfile
wait_up origin http://127.0.0.1:18090/p10k.html

health() { curl -s --max-time 5 "http://localhost:$1/craftedge/health"; }
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[k]
print(d)' "$1"; }

# --- hits: every target, alternating (step "hits") --------------------------------
if step hits; then
# start_row_server NAME PORT CMD...: starts a server the selected rows use.
start_row_server() {
	local name=$1 port=$2
	shift 2
	uses "$name" || return 0
	start "$name" "$SERVER_CPU" "$@"
	wait_up "$name" "http://127.0.0.1:$port/p10k.html"
}
start_row_server respond 18081 "${caddy_env[@]}" "$CE" run --config "$WORK/respond.Caddyfile" --adapter caddyfile
start_row_server ce-hit 18082 "${caddy_env[@]}" "$CE" run --config "$WORK/ce-hit.Caddyfile" --adapter caddyfile
start_row_server ce-snap 18083 "${caddy_env[@]}" "$CE" run --config "$WORK/ce-snap-warm.Caddyfile" --adapter caddyfile
start_row_server cache-handler 18084 "${caddy_env[@]}" "$CH" run --config "$WORK/cache-handler.Caddyfile" --adapter caddyfile
start_row_server nginx 18085 "$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx.conf"
start_row_server ce-base 18089 "${caddy_env[@]}" "$WORK/craftedge-base" run --config "$WORK/ce-base.Caddyfile" --adapter caddyfile

if uses ce-snap; then
	# Snapshots: store both pages, wait for the write-behind queue to drain,
	# then restart with the origin unreachable.
	for p in p10k p100k; do curl -s -o /dev/null --max-time 5 "http://127.0.0.1:18083/$p.html"; done
	for _ in $(seq 100); do
		h=$(health 2093)
		[ "$(jget snapshots.count <<<"$h")" -ge 2 ] && [ "$(jget snapshots.pending <<<"$h")" = 0 ] && break
		sleep 0.1
	done
	[ "$(jget snapshots.count <<<"$h")" -ge 2 ] || die "snapshots were not written: $h"
	stop ce-snap
	start ce-snap "$SERVER_CPU" "${caddy_env[@]}" "$CE" run --config "$WORK/ce-snap.Caddyfile" --adapter caddyfile
	wait_up ce-snap http://localhost:2093/craftedge/health
fi

client_header() {
	case $1 in
	identity) echo "" ;;
	gzip) echo "Accept-Encoding: gzip" ;;
	browser) echo "$BROWSER" ;;
	esac
}
# What a row must show: its cache's hit marker and the content coding.
expect() { # id -> "header-regex|content-encoding"
	case $1 in
	respond) echo "^http/1.1 200|" ;;
	ce-identity | base-identity) echo "^cache-status: craftedge; hit\$|" ;;
	ce-gzip | base-gzip) echo "^cache-status: craftedge; hit\$|gzip" ;;
	ce-browser | base-browser) echo "^cache-status: craftedge; hit\$|zstd" ;;
	ch-*) echo "^cache-status: souin; hit;|" ;;
	nx-*) echo "^x-cache-status: hit\$|" ;;
	nxgz-browser) echo "^x-cache-status: hit\$|gzip" ;;
	snap-identity) echo "^cache-status: craftedge; .*detail=snapshot|" ;;
	snap-browser) echo "^cache-status: craftedge; .*detail=snapshot|zstd" ;;
	esac
}
check() { # id port client page -> appends "id page bytes coding" to bodies.tsv
	local hdr ex re ce got size
	hdr=$(client_header "$3")
	ex=$(expect "$1")
	re=${ex%|*}
	ce=${ex#*|}
	size=$(curl -s --max-time 5 -D "$WORK/h" -o "$WORK/b" -w '%{size_download}' ${hdr:+-H "$hdr"} "http://127.0.0.1:$2/$4.html")
	tr -d '\r' <"$WORK/h" | tr 'A-Z' 'a-z' >"$WORK/hl"
	grep -Eq "$re" "$WORK/hl" || die "$1 $4: no hit marker /$re/ in: $(tr '\n' ' ' <"$WORK/hl")"
	got=$(awk -F': ' '$1 == "content-encoding" { print $2 }' "$WORK/hl")
	[ "$got" = "$ce" ] || die "$1 $4: content-encoding '$got', want '$ce'"
	echo "$1 $4 $size ${got:-identity}" >>"$WORK/bodies.tsv"
}

log "warming and checking every target serves hits"
for row in "${ROWS[@]}"; do
	read -r id server port client <<<"$row"
	for page in p10k p100k; do
		for _ in 1 2 3; do
			curl -s -o /dev/null --max-time 5 ${client:+-H "$(client_header "$client")"} "http://127.0.0.1:$port/$page.html"
		done
	done
done
# Let the snapshot server's breaker open (it has failed 5 times by now) and
# every write-behind settle.
sleep 1
: >"$WORK/bodies.tsv"
for row in "${ROWS[@]}"; do
	read -r id server port client <<<"$row"
	for page in p10k p100k; do check "$id" "$port" "$client" "$page"; done
done
# Snapshot serves are promoted into memory (marked as snapshots, never
# fresh: issue 16): at most the two pages, each still labelled a snapshot.
! uses ce-snap || [ "$(jget memory.entries <<<"$(health 2093)")" -le 2 ] || die "snapshot server has more memory entries than its two promoted pages"

# --- rounds --------------------------------------------------------------------
# cpu_ticks NAME: user + system CPU time (clock ticks) of a server process
# and its children (nginx's worker) so far.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
	local pid=${PID[$1]} t=0 p
	for p in "$pid" $(pgrep -P "$pid" || true); do
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
run_wrk() { # id port client page round server
	local hdr out args t0 t1
	hdr=$(client_header "$3")
	out=$WORK/wrk-$1-$4-$5.out
	args=(-t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency --timeout 5s)
	[ -n "$hdr" ] && args+=(-H "$hdr")
	t0=$(cpu_ticks "$6")
	timeout $((SECS + 30)) taskset -c "$CLIENT_CPU" wrk "${args[@]}" "http://127.0.0.1:$2/$4.html" >"$out" 2>&1 || true
	t1=$(cpu_ticks "$6")
	# The server's CPU seconds over the run, for CPU per request.
	python3 -B "$PERF/report.py" parse-wrk "$1" "$4" "$5" "$out" "$(((t1 - t0) * 1000 / CLK_TCK))" >>"$WORK/results.tsv"
}
n=${#ROWS[@]}
log "measuring: $ROUNDS round(s) x 2 pages x $n targets x ${SECS}s (wrk -t$THREADS -c$CONNS)"
: >"$WORK/results.tsv"
for r in $(seq "$ROUNDS"); do
	for page in p10k p100k; do
		for i in $(seq 0 $((n - 1))); do
			# Rotate the order every round so no target always runs first.
			read -r id server port client <<<"${ROWS[$(((i + r - 1) % n))]}"
			run_wrk "$id" "$port" "$client" "$page" "$r" "$server"
		done
	done
	log "round $r done ($((SECONDS - START)) s)"
done

log "checking every target still serves hits"
: >"$WORK/bodies.tsv"
for row in "${ROWS[@]}"; do
	read -r id server port client <<<"$row"
	for page in p10k p100k; do check "$id" "$port" "$client" "$page"; done
done
: >"$WORK/extra.tsv"
if uses ce-snap; then
	h=$(health 2093)
	[ "$(jget memory.entries <<<"$h")" -le 2 ] || die "snapshot server stored more than its two promoted pages during the run"
	echo "snap_served $(jget served.snapshot <<<"$h" 2>/dev/null || echo '?')" >"$WORK/extra.tsv"
	echo "snap_memory_entries $(jget memory.entries <<<"$h")" >>"$WORK/extra.tsv"
fi

# Peak RSS of each server process (nginx: master + worker).
: >"$WORK/rss.tsv"
for name in respond ce-hit ce-snap cache-handler ce-base; do
	if [ -n "${PID[$name]:-}" ]; then echo "$name $(vm "${PID[$name]}" VmHWM)" >>"$WORK/rss.tsv"; fi
done
if [ -n "${PID[nginx]:-}" ]; then
	nx=$(vm "${PID[nginx]}" VmHWM)
	for w in $(pgrep -P "${PID[nginx]}"); do nx=$((nx + $(vm "$w" VmHWM))); done
	echo "nginx $nx" >>"$WORK/rss.tsv"
fi

if [ "$PROFILE" = 1 ]; then
	mkdir -p "$CACHE_DIR/profiles"
	for page in p10k p100k; do
		for client in identity browser; do
			log "profiling craftedge hits ($page, $client): 10 s"
			hdr=$(client_header "$client")
			timeout 40 taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d12s ${hdr:+-H "$hdr"} "http://127.0.0.1:18082/$page.html" >/dev/null 2>&1 &
			PID[wrk-profile]=$!
			sleep 1
			curl -s --max-time 30 -o "$CACHE_DIR/profiles/ce-hit-$page-$client.pprof" "http://localhost:2092/debug/pprof/profile?seconds=10"
			wait "${PID[wrk-profile]}" || true
			unset "PID[wrk-profile]"
		done
	done
	cp "$CE" "$CACHE_DIR/profiles/craftedge"
	log "profiles in $CACHE_DIR/profiles (go tool pprof $CACHE_DIR/profiles/craftedge FILE)"
fi
for name in respond ce-hit ce-snap cache-handler nginx ce-base; do stop "$name"; done
fi # step hits

# --- purge of one tag covering 100,000 entries, over HTTP ------------------------
: >"$WORK/purge.tsv"
if step purge && [ "$HTTP_PURGE" = 1 ] && [ -z "${ONLY:-}" ] && [ $((SECONDS - START)) -lt $((BUDGET - 180)) ]; then
	log "purge step: filling 100,000 entries tagged 'bulk'"
	start ce-purge "$SERVER_CPU" "${caddy_env[@]}" "$CE" run --config "$WORK/ce-purge.Caddyfile" --adapter caddyfile
	wait_up ce-purge http://127.0.0.1:18087/p10k.html
	curl -s -o /dev/null -H "$BROWSER" http://127.0.0.1:18087/p10k.html
	fill_pids=()
	for k in 0 1 2 3; do
		a=$((k * 25000 + 1)) b=$(((k + 1) * 25000))
		timeout 240 taskset -c "$CLIENT_CPU" curl -s "http://127.0.0.1:18087/bulk/[$a-$b]" >/dev/null &
		PID[fill-$k]=$!
		fill_pids+=("fill-$k")
	done
	for f in "${fill_pids[@]}"; do
		wait "${PID[$f]}" || true
		unset "PID[$f]"
	done
	for _ in $(seq 600); do # let the snapshot write-behind finish (bounded: 60 s)
		[ "$(jget snapshots.pending <<<"$(health 2097)")" = 0 ] && break
		sleep 0.1
	done
	entries=$(jget memory.entries <<<"$(health 2097)")
	log "purge step: $entries entries in memory; idle hits, then hits during the purge"
	PSECS=2
	wrk_p() {
		timeout 30 taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d"${PSECS}s" --latency --timeout 5s \
			-H "$BROWSER" http://127.0.0.1:18087/p10k.html >"$1" 2>&1 || true
	}
	wrk_p "$WORK/purge-idle.out"
	wrk_p "$WORK/purge-during.out" &
	PID[wrk-purge]=$!
	sleep 0.7
	resp=$(curl -s --max-time 30 -w '|%{time_total}' -X POST -H 'Content-Type: application/json' \
		-d '{"tags":["bulk"]}' http://localhost:2097/craftedge/purge | tr -d ' \n')
	# The purged entries are no longer served when the call returns; the
	# memory tier reclaims them in the background (purge_pending).
	t0=$(date +%s%N) cleanup_ms=
	for _ in $(seq 250); do # bounded: at most 250 polls
		# (no purge_pending in health: a build without background cleanup)
		if [ "$(jget memory.purge_pending <<<"$(health 2097)" 2>/dev/null || echo 0)" = 0 ]; then
			cleanup_ms=$((($(date +%s%N) - t0) / 1000000))
			break
		fi
		sleep 0.02
	done
	wait "${PID[wrk-purge]}" || true
	unset "PID[wrk-purge]"
	check_hit=$(curl -s -D - -o /dev/null -H "$BROWSER" http://127.0.0.1:18087/p10k.html | tr -d '\r' | grep -i '^cache-status:' || true)
	{
		echo "entries $entries"
		echo "response ${resp%|*}"
		echo "seconds ${resp##*|}"
		echo "cleanup_ms_after ${cleanup_ms:-unknown}"
		echo "after ${check_hit#*: }"
	} >>"$WORK/purge.tsv"
	python3 -B "$PERF/report.py" parse-wrk idle p10k 1 "$WORK/purge-idle.out" | sed 's/^/wrk /' >>"$WORK/purge.tsv"
	python3 -B "$PERF/report.py" parse-wrk during p10k 1 "$WORK/purge-during.out" | sed 's/^/wrk /' >>"$WORK/purge.tsv"
	stop ce-purge
fi

# --- memory bound under a working set 4x the bound, over HTTP --------------------
# /ws/N is the 10 KiB page (stored with gzip and zstd: ~15 KiB per entry);
# WS keys of it are about 4x the bound. wrk cycles through them in order,
# so with eviction of the oldest entries nearly every request is a miss
# that stores (the worst case for memory churn). Run once as shipped (Go's
# default GOGC=100, no memory limit), and in the full run once more with a
# soft memory limit (GOMEMLIMIT = bound + MEM_OVERHEAD_MIB) to show where
# the excess over the bound comes from (GC headroom). craftedge as shipped
# sets a soft memory limit from the bound (pagecache.MemoryLimitFor);
# GOMEMLIMIT=off turns that off and shows what Go's GOGC alone gives.
WS=$((4 * MEM_BOUND_MIB * 1024 / 15))
cat >"$WORK/ws.lua" <<EOF
local n, step, i = $WS, 1, 0
function setup(thread)
	thread:set("first", i)
	i = i + 1
end
function init(args)
	i = first
	step = $THREADS
end
function request()
	i = (i + step) % n
	return wrk.format(nil, "/ws/" .. i)
end
EOF
mem_step() { # label [env assignments...]
	local label=$1 maxb=0 max_anon=0 base_rss base_anon a b h p
	shift
	log "memory step ($label): bound ${MEM_BOUND_MIB} MiB, $WS keys of the 10 KiB page, ${WS_SECS}s"
	rm -f "$WORK/mem.db"
	start ce-mem "$SERVER_CPU" "${caddy_env[@]}" "$@" "$CE" run --config "$WORK/ce-mem.Caddyfile" --adapter caddyfile
	wait_up ce-mem http://127.0.0.1:18088/p10k.html
	sleep 1
	p=${PID[ce-mem]}
	base_rss=$(vm "$p" VmRSS)
	base_anon=$(vm "$p" RssAnon)
	timeout $((WS_SECS + 30)) taskset -c "$CLIENT_CPU" wrk -t"$THREADS" -c"$CONNS" -d"${WS_SECS}s" --latency --timeout 10s \
		-s "$WORK/ws.lua" -H "$BROWSER" http://127.0.0.1:18088/ >"$WORK/ws-$label.out" 2>&1 &
	PID[wrk-ws]=$!
	while kill -0 "${PID[wrk-ws]}" 2>/dev/null; do
		b=$(jget memory.bytes <<<"$(health 2098)" 2>/dev/null || echo 0)
		[ "$b" -gt "$maxb" ] && maxb=$b
		a=$(vm "$p" RssAnon)
		[ "${a:-0}" -gt "$max_anon" ] && max_anon=$a
		sleep 0.5
	done
	wait "${PID[wrk-ws]}" || true
	unset "PID[wrk-ws]"
	h=$(health 2098)
	{
		echo "label $label"
		echo "env ${*:-none}"
		echo "bound_mib $MEM_BOUND_MIB"
		echo "keys $WS"
		echo "base_rss_kb $base_rss"
		echo "base_anon_kb $base_anon"
		echo "max_anon_kb $max_anon"
		echo "hwm_kb $(vm "$p" VmHWM)"
		echo "rss_kb $(vm "$p" VmRSS)"
		echo "rss_anon_kb $(vm "$p" RssAnon)"
		echo "rss_file_kb $(vm "$p" RssFile)"
		echo "cache_bytes_max $maxb"
		echo "cache_bytes $(jget memory.bytes <<<"$h")"
		echo "max_bytes $(jget memory.max_bytes <<<"$h")"
		echo "entries $(jget memory.entries <<<"$h")"
		echo "evicted $(jget memory.evicted <<<"$h")"
		echo "stores $(jget memory.stores <<<"$h")"
		python3 -B "$PERF/report.py" parse-wrk ws p10k 1 "$WORK/ws-$label.out" | sed 's/^/wrk /'
	} >"$WORK/mem-$label.tsv"
	stop ce-mem
}
if step memory && [ -z "${ONLY:-}" ]; then
	mem_step default
	[ "$QUICK" = 1 ] || mem_step nolimit "GOMEMLIMIT=off"
fi
stop origin

# --- webhook acknowledgement latency ---------------------------------------------
# BenchmarkWebhookAck (caddymodule/webhookhandler/bench_webhook_test.go): signed Standard Webhooks
# deliveries POSTed one after another to craftedge_webhook through a real Caddy on
# loopback, each verified, checked against the bbolt replay memory and answered 202
# once its refetch job is durably enqueued, while the refetches run against the
# vendor simulator. Caddy's logs share stdout, so the result line is picked by its
# units and given its name back.
# --- Go benchmarks (in-process, both CPUs) --------------------------------------
if step go && [ -z "${ONLY:-}" ]; then
	log "Go benchmarks: purge and memory per entry (pagecache, -benchtime $BENCHTIME)"
	go test -run '^$' -bench 'PurgeTag|Memory' -benchtime "$BENCHTIME" -timeout 10m ./pagecache >"$WORK/gobench.out" 2>&1 ||
		{ cat "$WORK/gobench.out" >&2; die "go test -bench failed"; }
	log "Go benchmark: webhook acknowledgement through Caddy (1000 signed deliveries)"
	go test -run '^$' -bench WebhookAck -benchtime 1000x -timeout 5m ./caddymodule/webhookhandler >"$WORK/webhook-bench.out" 2>&1 ||
		{ tail -20 "$WORK/webhook-bench.out" >&2; die "go test -bench WebhookAck failed"; }
	grep -E 'ns/op.*p50-µs' "$WORK/webhook-bench.out" | tail -1 | sed 's/^[[:space:]]*/BenchmarkWebhookAck-2 /' >>"$WORK/gobench.out"
fi

# --- edge-side includes: bench/perf/esi.sh (its own servers; results/esi.md) ---
if step esi && [ -z "${ONLY:-}" ]; then
	CE=$CE SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU "$PERF/esi.sh" $([ "$QUICK" = 1 ] && echo --quick) >/dev/null || die "esi.sh failed"
fi

# --- report ----------------------------------------------------------------------
# A run of some steps only (STEPS=...) does not replace the full report.
OUT=latest.md
[ -n "$STEPS_GIVEN" ] && OUT="latest-${STEPS// /-}.md"
[ -n "${ONLY:-}" ] && OUT="latest-only.md" # some rows only: latest.md stays the full run
mkdir -p "$PERF/results"
python3 -B "$PERF/report.py" report \
	--work "$WORK" \
	--date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')" \
	--load "$LOAD_START -> $(cut -d' ' -f1-3 /proc/loadavg)" \
	--machine "$(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -r)" \
	--setup "wrk -t$THREADS -c$CONNS, $ROUNDS round(s) x ${SECS}s per target, servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU; caddy $CADDY_VERSION; cache-handler $CACHE_HANDLER_VERSION; $( (uses nginx && "$NGINX" -v 2>&1 | sed 's/^nginx version: //') || echo "nginx not run"); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" \
	--command "${STEPS_GIVEN:+STEPS=\"$STEPS\" }${BASELINE:+BASELINE=$BASELINE }${ONLY:+ONLY=\"$ONLY\" }bench/perf/run.sh $*" \
	--benchtime "$BENCHTIME" \
	--server-cpu "$SERVER_CPU" \
	--mem-overhead "$MEM_OVERHEAD_MIB" \
	--steps "$STEPS" \
	--baseline "$BASE_REF" \
	>"$PERF/results/$OUT"
cat "$PERF/results/$OUT"
log "done in $((SECONDS - START)) s; written to bench/perf/results/$OUT"
