#!/usr/bin/env bash
# Edge-side include rows of the perf suite (issue 19), over loopback:
#
#   (a) throughput: a hit on a 10 KiB page with two cached 1 KiB fragments
#       against a plain hit on a page of the same assembled bytes, for an
#       identity and a browser client (target: at least 0.8x);
#   (b) latency: a page with one private fragment (fetched from the origin
#       for every request, never stored) against that fragment fetched from
#       the origin directly, one connection and CONNS_LAT connections
#       (target: p99 at most the fragment's p99 + 1 ms).
#
#   bench/perf/esi.sh [--quick]      (run.sh runs it as its step "esi")
#
# Environment: ROUNDS (3; --quick 1), SECS (3; --quick 2), THREADS (2), CONNS
# (64), CONNS_LAT (8), SERVER_CPU (0), CLIENT_CPU (1), CE (a craftedge binary;
# default: built here). The gateway runs pinned to SERVER_CPU; wrk and the
# origin (Caddy's static respond, so the fragment's origin time is Caddy's
# own) on CLIENT_CPU. Output: a markdown table on stdout and in
# bench/perf/results/esi.md. Every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
PERF=$REPO/bench/perf

QUICK=0
for arg in "$@"; do
	case $arg in
	--quick) QUICK=1 ;;
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
if [ "$QUICK" = 1 ]; then ROUNDS=${ROUNDS:-1} SECS=${SECS:-2}; else ROUNDS=${ROUNDS:-3} SECS=${SECS:-3}; fi
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
CONNS_LAT=${CONNS_LAT:-8}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BROWSER='Accept-Encoding: gzip, deflate, br, zstd'
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[%s] esi: %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "FAILED: $*"
	exit 1
}
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v taskset >/dev/null || die "taskset is not installed (util-linux)"

W=$(mktemp -d "${TMPDIR:-/tmp}/craftedge-esi.XXXXXX")
declare -A PID=()
cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM HUP
	for name in "${!PID[@]}"; do
		kill -TERM "${PID[$name]}" 2>/dev/null
		wait "${PID[$name]}" 2>/dev/null
	done
	if [ "$rc" -ne 0 ]; then
		for f in "$W"/*.log; do [ -s "$f" ] && { echo "--- ${f##*/}" >&2; tail -n 8 "$f" >&2; }; done
	fi
	rm -rf "$W"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
start() { # name cpu cmd...
	local name=$1 cpu=$2
	shift 2
	env "XDG_DATA_HOME=$W/data" "XDG_CONFIG_HOME=$W/config" taskset -c "$cpu" "$@" >"$W/$name.log" 2>&1 &
	PID[$name]=$!
}
wait_up() { # name url
	for _ in $(seq 150); do
		curl -s -o /dev/null --max-time 1 "$2" && return 0
		kill -0 "${PID[$1]}" 2>/dev/null || die "$1 exited at start"
		sleep 0.1
	done
	die "$1 did not answer $2 within 15 s"
}

if [ -z "${CE:-}" ]; then
	log "building craftedge"
	go build -o "$W/craftedge" ./cmd/craftedge
	CE=$W/craftedge
fi

# The pages: the suite's 10 KiB page cut in two, with a 1 KiB fragment after
# each half; the plain page is the assembled bytes.
python3 -B "$PERF/pages.py" "$W/site"
P10K=$(cat "$W/site/p10k.html")
F1K=$(cat "$W/site/p1k.html")
HALF=$((${#P10K} / 2))
A=${P10K:0:HALF}
B=${P10K:HALF}
TOKEN='<input type="hidden" name="CRAFT_CSRF_TOKEN" value="bWFza2VkLXRva2VuLW9mLXRoaXMtdmlzaXRvcg==">'

global() { # admin-port
	printf '{\n\tadmin localhost:%s\n\tdefault_bind 127.0.0.1\n\tauto_https off\n\tpersist_config off\n\tgrace_period 1s\n\tlog {\n\t\tlevel ERROR\n\t}\n%s}\n' "$1" "${2:-}"
}
{
	global 2190
	cat <<EOF
http://:18190 {
	header Content-Type "text/html; charset=utf-8"
	handle /esi2.html {
		header Surrogate-Control \`content="ESI/1.0"\`
		header Cache-Tag "page"
		respond \`$A<esi:include src="/frag/a"/>$B<esi:include src="/frag/b"/>\`
	}
	handle /plain.html {
		header Cache-Tag "page"
		respond \`$A$F1K$B$F1K\`
	}
	handle /private.html {
		header Surrogate-Control \`content="ESI/1.0"\`
		header Cache-Tag "page"
		respond \`$A<esi:include src="/frag/csrf"/>$B\`
	}
	handle /frag/a {
		header Cache-Tag "frag-a"
		respond \`$F1K\`
	}
	handle /frag/b {
		header Cache-Tag "frag-b"
		respond \`$F1K\`
	}
	handle /frag/csrf {
		header Cache-Control "private, no-store"
		respond \`$TOKEN\`
	}
	respond 404
}
EOF
} >"$W/origin.Caddyfile"
{
	global 2191 "	craftedge {
		storage $W/esi.db
		memory 64MiB
	}
"
	cat <<EOF
http://127.0.0.1:18191 {
	craftedge {
		upstream origin
		ttl 1h
		esi {
			private_path /frag/csrf
		}
	}
	reverse_proxy 127.0.0.1:18190
}
EOF
} >"$W/gateway.Caddyfile"

start origin "$CLIENT_CPU" "$CE" run --config "$W/origin.Caddyfile" --adapter caddyfile
start gateway "$SERVER_CPU" "$CE" run --config "$W/gateway.Caddyfile" --adapter caddyfile
wait_up origin http://127.0.0.1:18190/plain.html
wait_up gateway http://127.0.0.1:18191/plain.html

# Warm and check: the ESI page assembles to the plain page's bytes, hits
# are hits, the private page carries the fragment and is never stored.
for p in esi2 plain private; do
	for _ in 1 2 3; do curl -s -o /dev/null --max-time 5 "http://127.0.0.1:18191/$p.html"; done
done
cs() { curl -s --max-time 5 -D - -o "$W/body" ${2:+-H "$2"} "http://127.0.0.1:18191/$1" | tr -d '\r' | awk -F': ' 'tolower($1) == "cache-status" { print $2 }'; }
[ "$(cs plain.html)" = "craftedge; hit" ] || die "plain.html is not a hit: $(cs plain.html)"
case $(cs esi2.html) in "craftedge; hit, craftedge-esi; hit; key=\"/frag/a\", craftedge-esi; hit; key=\"/frag/b\"") ;; *) die "esi2.html is not a hit with two cached fragments: $(cs esi2.html)" ;; esac
cmp -s "$W/body" <(curl -s "http://127.0.0.1:18191/plain.html") || die "esi2.html does not assemble to plain.html"
case $(cs esi2.html "$BROWSER") in "craftedge; hit, "*) ;; *) die "esi2.html (browser) is not a hit" ;; esac
case $(cs private.html) in "craftedge; hit, craftedge-esi; fwd=miss; key=\"/frag/csrf\"; detail=private") ;; *) die "private.html: $(cs private.html)" ;; esac
grep -q 'CRAFT_CSRF_TOKEN' "$W/body" || die "private.html lacks its fragment"

# Rows: id port path client conns.
ROWS=(
	"plain-identity 18191 plain.html identity $CONNS"
	"esi2-identity 18191 esi2.html identity $CONNS"
	"plain-browser 18191 plain.html browser $CONNS"
	"esi2-browser 18191 esi2.html browser $CONNS"
	"frag-origin-c1 18190 frag/csrf identity 1"
	"private-c1 18191 private.html identity 1"
	"frag-origin-c$CONNS_LAT 18190 frag/csrf identity $CONNS_LAT"
	"private-c$CONNS_LAT 18191 private.html identity $CONNS_LAT"
)
n=${#ROWS[@]}
: >"$W/results.tsv"
log "measuring: $ROUNDS round(s) x $n rows x ${SECS}s"
for r in $(seq "$ROUNDS"); do
	for i in $(seq 0 $((n - 1))); do
		read -r id port path client conns <<<"${ROWS[$(((i + r - 1) % n))]}"
		args=(-t"$([ "$conns" -lt "$THREADS" ] && echo "$conns" || echo "$THREADS")" -c"$conns" -d"${SECS}s" --latency --timeout 5s)
		[ "$client" = browser ] && args+=(-H "$BROWSER")
		out=$W/wrk-$id-$r.out
		timeout $((SECS + 30)) taskset -c "$CLIENT_CPU" wrk "${args[@]}" "http://127.0.0.1:$port/$path" >"$out" 2>&1 || true
		python3 -B "$PERF/report.py" parse-wrk "$id" "$path" "$r" "$out" >>"$W/results.tsv"
	done
	log "round $r done"
done

mkdir -p "$PERF/results"
python3 -B - "$W/results.tsv" "$CONNS" "$CONNS_LAT" "$ROUNDS" "$SECS" "$LOAD_START -> $(cut -d' ' -f1-3 /proc/loadavg)" \
	"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')" <<'PY' | tee "$PERF/results/esi.md"
import statistics, sys, time
path, conns, conns_lat, rounds, secs, load, commit = sys.argv[1:8]
rows = {}
bad = 0
for line in open(path):
    ident, page, rnd, rps, p50, p99, mx, b = line.split()[:8]  # then cpu_ms, requests
    rows.setdefault(ident, []).append((float(rps), float(p50), float(p99)))
    bad += int(b)
def med(ident, i):
    return statistics.median(v[i] for v in rows[ident])
print("# ESI rows (bench/perf/esi.sh)\n")
print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, load {load}; "
      f"median of {rounds} round(s) x {secs}s per row; gateway on one CPU, wrk and origin on the other.\n")
print(f"(a) Hits, wrk -c{conns}: a 10 KiB page with two cached 1 KiB fragments against a plain hit on the same assembled bytes (target >= 0.8x).\n")
print("| client | plain hit req/s | ESI hit req/s | ratio | plain p99 ms | ESI p99 ms |")
print("| --- | --- | --- | --- | --- | --- |")
for c in ("identity", "browser"):
    p, e = med(f"plain-{c}", 0), med(f"esi2-{c}", 0)
    print(f"| {c} | {p:,.0f} | {e:,.0f} | {e / p:.2f}x | {med(f'plain-{c}', 2):.2f} | {med(f'esi2-{c}', 2):.2f} |")
print(f"\n(b) A page with one private fragment (fetched from the origin per request) against the fragment fetched from the origin directly (target: page p99 <= fragment p99 + 1 ms).\n")
print("| connections | fragment p50 / p99 ms | page p50 / p99 ms | p99 added ms | page req/s |")
print("| --- | --- | --- | --- | --- |")
for c in ("1", conns_lat):
    f50, f99 = med(f"frag-origin-c{c}", 1), med(f"frag-origin-c{c}", 2)
    p50, p99 = med(f"private-c{c}", 1), med(f"private-c{c}", 2)
    print(f"| {c} | {f50:.3f} / {f99:.3f} | {p50:.3f} / {p99:.3f} | {p99 - f99:+.3f} | {med(f'private-c{c}', 0):,.0f} |")
if bad:
    print(f"\n{bad} bad responses (non-2xx or socket errors): the figures above are not valid.")
PY
log "written to bench/perf/results/esi.md"
