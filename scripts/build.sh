#!/usr/bin/env bash
# Builds a Caddy binary with craftedge's modules, from xcaddy.json.
#
#   scripts/build.sh            go build ./cmd/craftedge (Caddy's standard modules + ours)
#   scripts/build.sh --xcaddy   xcaddy build <caddy_version> --with <module>=<replace>
#
# Output: ./craftedge (override with OUT=path).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./craftedge}
manifest=xcaddy.json
field() { python3 -c 'import json,sys; print(eval("json.load(open(sys.argv[1]))"+sys.argv[2]))' "$manifest" "$1"; }
caddy_version=$(field '["caddy_version"]')
pinned=$(go list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)
if [ "$caddy_version" != "$pinned" ]; then
	echo "xcaddy.json wants caddy $caddy_version but go.mod pins $pinned: update one of them" >&2
	exit 1
fi
case "${1:-}" in
--xcaddy)
	xcaddy_version=$(field '["xcaddy_version"]')
	with=()
	n=$(python3 -c 'import json; print(len(json.load(open("xcaddy.json"))["plugins"]))')
	for i in $(seq 0 $((n - 1))); do
		mod=$(field "[\"plugins\"][$i][\"module\"]")
		rep=$(field "[\"plugins\"][$i].get(\"replace\", \"\")")
		if [ -n "$rep" ]; then
			with+=(--with "$mod@v0.0.0=$(cd "$rep" && pwd)") # a version lets go get resolve the local replacement without the proxy
		else
			with+=(--with "$mod")
		fi
	done
	out_abs=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")
	go run "github.com/caddyserver/xcaddy/cmd/xcaddy@$xcaddy_version" build "$caddy_version" "${with[@]}" --output "$out_abs"
	;;
"")
	go build -trimpath -o "$OUT" ./cmd/craftedge
	;;
*)
	echo "usage: scripts/build.sh [--xcaddy]" >&2
	exit 2
	;;
esac
"$OUT" list-modules | grep -q '^http.handlers.craftedge$' || { echo "built binary lacks http.handlers.craftedge" >&2; exit 1; }
echo "built $OUT ($("$OUT" version | head -1))"
