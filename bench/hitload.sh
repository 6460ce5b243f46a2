#!/usr/bin/env bash
# Cache-hit throughput: craftedge hits versus Caddy's static `respond` of the
# same 10 KiB page, in one run, alternating, on loopback. Caddy runs on CPU 0,
# wrk on CPU 1. Prints a markdown table with medians and the ratio.
#
#   bench/hitload.sh [rounds] [seconds]      (defaults: 3 rounds of 10 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
CONNS=${CONNS:-64}
WORK=$(mktemp -d)
trap 'rc=$?; kill $CADDY_PID 2>/dev/null || true; wait 2>/dev/null; [ $rc -ne 0 ] && tail -20 "$WORK/caddy.log" >&2; rm -rf "$WORK"' EXIT

if ! command -v wrk >/dev/null; then
	echo "installing wrk (apt)..." >&2
	(apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi

go build -o "$WORK/craftedge" ./cmd/craftedge
python3 - "$WORK/page.html" <<'PY'
import sys
body = "<!doctype html><html><head><title>Bench</title></head><body>\n"
i = 0
while len(body) < 10 * 1024 - 40:
    body += "<p>Entry %d: Craft renders this paragraph of the page body text.</p>\n" % i
    i += 1
body += "</body></html>\n"
open(sys.argv[1], "w").write(body[: 10 * 1024])
PY

cat > "$WORK/Caddyfile" <<CADDY
{
	admin localhost:2099
	http_port 18080
	auto_https off
	log {
		level ERROR
	}
	craftedge {
		storage $WORK/craftedge.db
		memory 64MiB
	}
}
# The origin: a static page (what Craft would render).
http://127.0.0.1:18083 {
	header Content-Type "text/html; charset=utf-8"
	header Cache-Tag "page entry:1"
	respond \`$(cat "$WORK/page.html")\`
}
# Caddy's ceiling: the same body from static_response.
http://127.0.0.1:18082 {
	header Content-Type "text/html; charset=utf-8"
	respond \`$(cat "$WORK/page.html")\`
}
# craftedge in front of the origin.
http://127.0.0.1:18081 {
	craftedge {
		upstream origin
		ttl 1h
	}
	reverse_proxy 127.0.0.1:18083
}
CADDY
taskset -c 0 "$WORK/craftedge" run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
CADDY_PID=$!
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:18082/ && break; sleep 0.1; done
# Warm the cache and check it serves hits.
curl -fs -o /dev/null http://127.0.0.1:18081/
curl -fs -o /dev/null -H 'Accept-Encoding: gzip, deflate, br, zstd' http://127.0.0.1:18081/
status=$(curl -fsi http://127.0.0.1:18081/ | tr -d '\r' | grep -i '^cache-status:' || true)
echo "craftedge check: $status" >&2
case "$status" in *"; hit"*) ;; *) echo "craftedge is not serving hits" >&2; exit 1 ;; esac

run() { # name url [header]
	local args=(-t1 -c"$CONNS" -d"${SECS}s" --latency)
	[ -n "${3:-}" ] && args+=(-H "$3")
	taskset -c 1 wrk "${args[@]}" "$2" >"$WORK/out" 2>&1
	local rps p50 p99
	rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/out")
	p50=$(awk '$1=="50%" {print $2}' "$WORK/out")
	p99=$(awk '$1=="99%" {print $2}' "$WORK/out")
	echo "$1 $rps $p50 $p99" >>"$WORK/results"
}
for r in $(seq "$ROUNDS"); do
	run respond http://127.0.0.1:18082/
	run hit-identity http://127.0.0.1:18081/
	run hit-browser http://127.0.0.1:18081/ 'Accept-Encoding: gzip, deflate, br, zstd'
done

python3 - "$WORK/results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99 = line.split()
    rows.setdefault(name, []).append((float(rps), p50, p99))
ceiling = statistics.median(r[0] for r in rows["respond"])
print("| target (10 KiB page, wrk -t1 -c%s) | req/s (median) | p50 | p99 | ratio to respond |" % __import__("os").environ.get("CONNS", "64"))
print("|---|---|---|---|---|")
for name in ["respond", "hit-identity", "hit-browser"]:
    rs = rows[name]
    med = statistics.median(r[0] for r in rs)
    mid = sorted(rs, key=lambda r: r[0])[len(rs) // 2]
    print("| %s | %.0f | %s | %s | %.2f |" % (name, med, mid[1], mid[2], med / ceiling))
PY
