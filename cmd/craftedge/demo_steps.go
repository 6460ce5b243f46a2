package main

import (
	"fmt"
	"io"
	"strings"
)

// The demo's steps are one script: demoSteps is printed by the demo (with
// its actual addresses) and, with the default addresses, is the step block
// of docs/guides/demo.md, whose titles README.md lists (TestDemoStepsInDocs
// keeps them equal); TestDemoSteps
// runs every command against a real demo and checks its output against
// Out.
//
// Commands and outputs may use these placeholders, replaced by the running
// demo's values: {site} (the gateway), {admin} (Caddy's admin endpoint),
// {origin} (the demo origin), {shop} (the vendor simulator) and {token}
// (the records API's write token). Commands are the subset of shell that
// TestDemoSteps runs: curl with -s, -i, -X, -H, -d and -b, piped into grep
// with -i, -o and -e; NAME=$(such a pipeline), which prints nothing, and
// $NAME outside single quotes. In Out, a line "…" stands for any number of lines,
// "…" inside a line for any text, and <n>, <id> and <time> for a number, an
// id and a timestamp.

// demoStep is one numbered step of the demo.
type demoStep struct {
	// Title is the step's first line; Text explains it.
	Title string
	Text  []string
	Cmds  []demoCmd
}

// demoCmd is one command of a step and the output it prints.
type demoCmd struct {
	// Note, if set, is printed as a comment line before the command.
	Note string
	// Curl is the command, as a shell user types it.
	Curl string
	// Out is the expected output, line by line (see the placeholders above).
	Out []string
	// Later marks output that appears once background work is done (a job,
	// a webhook's refetch): rerun the command after a few seconds.
	Later bool
}

// demoSteps are the demo's steps, in order; each leaves the demo as it
// found it (chaos and origin modes reset, the kill switch off).
var demoSteps = []demoStep{
	{
		Title: "A miss, then a hit",
		Cmds: []demoCmd{
			{Curl: "curl -si {site}/blog/hello-world | grep -i cache-status", Out: []string{"Cache-Status: craftedge; fwd=miss; stored"}},
			{Curl: "curl -si {site}/blog/hello-world | grep -i cache-status", Out: []string{"Cache-Status: craftedge; hit"}},
		},
	},
	{
		Title: "Purge by tag through Caddy's admin API",
		Text: []string{
			"It answers how many memory entries it purged; the page is rendered again. Purges are soft",
			"by default (purge_mode): the copy is kept, stale, never fresh again (fwd=stale); had the",
			"origin been slower than stale_after (300ms), the visitor would have got it meanwhile.",
		},
		Cmds: []demoCmd{
			{Curl: `curl -s -X POST {admin}/craftedge/purge -H 'Content-Type: application/json' -d '{"tags":["el:1"]}'`, Out: purgedOut},
			{Curl: "curl -si {site}/blog/hello-world | grep -i -e cache-status -e 'rendered at'", Out: []string{
				"Cache-Status: craftedge; fwd=stale; stored",
				`<p class="render" id="render-info">rendered at <time>, revision 1 (render #2)<br>Cache-Tag: …</p>`,
			}},
		},
	},
	{
		Title: "Save the entry in the control panel: Craft's Cache-Purge-Tag purges it",
		Text: []string{
			"A POST bypasses the cache as \"method\" (the first rule that applies wins, see",
			"docs/guides/caching.md#bypassed-requests); its Cache-Purge-Tag (el:1, el:entry:section:1...,",
			"what the Craft plugin sends, craft/README.md) purges the page and the pages listing the blog.",
		},
		Cmds: []demoCmd{
			{Curl: "curl -si -X POST {site}/admin/entries/1 | grep -i -e '^HTTP' -e cache-status", Out: []string{
				"HTTP/1.1 200 OK",
				"Cache-Status: craftedge; fwd=bypass; detail=method",
			}},
			{Curl: "curl -si {site}/blog/hello-world | grep -i -e cache-status -e 'rendered at'", Out: []string{
				"Cache-Status: craftedge; fwd=stale; stored",
				`<p class="render" id="render-info">rendered at <time>, revision 2 (render #3)<br>Cache-Tag: …</p>`,
			}},
		},
	},
	{
		Title: "Take the origin down: cached pages come from snapshots, the rest get the fallback page",
		Text: []string{
			"The origin closes connections; the purge (hard: the memory copy goes, so the snapshot",
			"answers) makes the gateway ask it. 3 failed connections",
			"open the breaker for 15s (set=error and set=slow open it only once 3 failures in a row",
			"span 3 pages: one broken page never takes the site down).",
		},
		Cmds: []demoCmd{
			{Curl: "curl -s -X POST '{origin}/__origin/mode?set=down'", Out: []string{`{"mode":"down"}`}},
			{Curl: `curl -s -X POST {admin}/craftedge/purge -H 'Content-Type: application/json' -d '{"tags":["el:1"],"mode":"hard"}'`, Out: purgedOut},
			{Curl: "curl -si {site}/blog/hello-world | grep -i cache-status", Out: []string{"Cache-Status: craftedge; fwd=miss; fwd-status=502; detail=snapshot"}},
			{Curl: "curl -si {site}/products/9 | grep -i -e '^HTTP' -e cache-status -e '<h1>'", Out: []string{
				"HTTP/1.1 503 Service Unavailable",
				"Cache-Status: craftedge; fwd=miss; fwd-status=502; detail=fallback",
				"<h1>Back soon</h1>",
			}},
			{Note: "bring it back", Curl: "curl -s -X POST '{origin}/__origin/mode?set=ok'", Out: []string{`{"mode":"ok"}`}},
		},
	},
	{
		Title: "Kill switch: memory and snapshots only, never the origin",
		Cmds: []demoCmd{
			{Curl: `curl -s -X PUT {admin}/craftedge/snapshot-only -d '{"enabled":true}'`, Out: []string{"{", `  "configured": false,`, `  "overrides": {`, `    "": true`, "  }", "}"}},
			{Curl: `curl -s -X POST {admin}/craftedge/purge -H 'Content-Type: application/json' -d '{"tags":["el:1"],"mode":"hard"}'`, Out: purgedOut},
			{Curl: "curl -si {site}/blog/hello-world | grep -i cache-status", Out: []string{"Cache-Status: craftedge; hit; detail=snapshot"}},
			{Note: "switch it off again", Curl: `curl -s -X PUT {admin}/craftedge/snapshot-only -d '{"enabled":false}'`, Out: []string{"{", `  "configured": false,`, `  "overrides": {}`, "}"}},
		},
	},
	{
		Title: "Health: memory tier, snapshots, breakers, kill switch, what was served how",
		Cmds: []demoCmd{
			{Curl: "curl -s {admin}/craftedge/health", Out: []string{
				"{", `  "memory": {`, `    "entries": <n>,`, "…",
				`  "upstreams": [`, "    {", `      "name": "craft",`, `      "breaker": "closed",`, "…",
				`  "time": "<time>"`, "}",
			}},
		},
	},
	{
		Title: "Logged-in visitors (a Craft session cookie) bypass the cache",
		Cmds: []demoCmd{
			{Curl: "curl -si -b CraftSessionId=x {site}/blog/hello-world | grep -i cache-status", Out: []string{"Cache-Status: craftedge; fwd=bypass; detail=session"}},
		},
	},
	{
		Title: "A form on a cached page: every visitor's own CSRF token (edge-side includes)",
		Text: []string{
			"/contact is cached once; its form's CSRF token and its hello line are private fragments,",
			"fetched per visitor with their cookies and never stored (docs/guides/esi.md).",
		},
		Cmds: []demoCmd{
			{Note: "visitors A and B, new: each gets a CSRF cookie of their own (kept in $A and $B)",
				Curl: "A=$(curl -si {site}/contact | grep -o 'CRAFT_CSRF_TOKEN=[^;]*')"},
			{Curl: "B=$(curl -si {site}/contact | grep -o 'CRAFT_CSRF_TOKEN=[^;]*')"},
			{Note: "the same cached page for both, each with their own hello line and token",
				Curl: "curl -si -b $A {site}/contact | grep -i -e cache-status -e 'class=.hello'", Out: []string{
					`Cache-Status: craftedge; hit, craftedge-esi; fwd=miss; key="/_fragments/hello"; detail=private, craftedge-esi; fwd=miss; key="/_fragments/csrf"; detail=private, craftedge-esi; hit; key="/_fragments/latest"`,
					`<p class="hello">Hello, visitor <id>! This line is yours alone (rendered for you at <time>).</p>`,
				}},
			{Curl: "curl -s -b $B {site}/contact | grep 'class=.hello'", Out: []string{
				`<p class="hello">Hello, visitor <id>! This line is yours alone (rendered for you at <time>).</p>`,
			}},
			{Curl: "TA=$(curl -s -b $A {site}/contact | grep -o 'CRAFT_CSRF_TOKEN\" value=\"[^\"]*' | grep -o '[^\"]*$')"},
			{Curl: "TB=$(curl -s -b $B {site}/contact | grep -o 'CRAFT_CSRF_TOKEN\" value=\"[^\"]*' | grep -o '[^\"]*$')"},
			{Note: "both posts are accepted; A's token with B's cookie is refused, as Craft would",
				Curl: "curl -s -b $A -d CRAFT_CSRF_TOKEN=$TA -d message=hi {site}/contact", Out: []string{"Thanks, your message was received."}},
			{Curl: "curl -s -b $B -d CRAFT_CSRF_TOKEN=$TB -d message=hi {site}/contact", Out: []string{"Thanks, your message was received."}},
			{Curl: "curl -s -b $B -d CRAFT_CSRF_TOKEN=$TA -d message=hi {site}/contact", Out: []string{"Unable to verify your data submission."}},
		},
	},
	{
		Title: "Vendors: a simulated shop API synced into records every minute",
		Text: []string{
			"Served from the records (never calling the shop) or live through the cache. With the",
			"shop down both keep answering (the live read from its snapshot once purged hard).",
		},
		Cmds: []demoCmd{
			{Curl: "curl -s {site}/vendors/v1/shop/product/3", Out: []string{`{"vendor":"shop","resource":"product","id":"3",…}`}},
			{Curl: "curl -si {site}/shop-api/products/3 | grep -i cache-status", Out: []string{"Cache-Status: craftedge; fwd=miss; stored"}},
			{Curl: `curl -s -X POST {shop}/__sim/chaos -d '{"outage":"close"}'`, Out: []string{`{…"outage":"close"…}`}},
			{Curl: `curl -s -X POST {admin}/craftedge/purge -H 'Content-Type: application/json' -d '{"tags":["vendor:shop"],"mode":"hard"}'`, Out: purgedOut},
			{Curl: "curl -s {site}/vendors/v1/shop/product/3", Out: []string{`{"vendor":"shop","resource":"product","id":"3",…}`}},
			{Curl: "curl -si {site}/shop-api/products/3 | grep -i cache-status", Out: []string{"Cache-Status: craftedge; fwd=miss; fwd-status=502; detail=snapshot"}},
			{Note: "bring the shop back", Curl: "curl -s -X DELETE {shop}/__sim/chaos", Out: []string{`{…}`}},
		},
	},
	{
		Title: "Webhooks: change a product at the shop, as its admin would",
		Text: []string{
			"Its signed webhook makes craftedge refetch the product. Then the shop drops webhooks:",
			"the record keeps its old title until a sync heals it (every minute; a backfill: now).",
		},
		Cmds: []demoCmd{
			{Curl: `curl -s -X PUT {shop}/v2/products/4 -H 'Authorization: Bearer sim-commerce-token' -H 'Content-Type: application/json' \
  -d '{"sku":"SKU-4","title":{"en":"Renamed"},"price":{"amount":990,"currency":"EUR"},"stock":2}'`, Out: []string{`{"id":"4",…"title":{"en":"Renamed"}…}`}},
			{Curl: "curl -s {site}/vendors/v1/shop/product/4", Out: []string{`{…"title":"Renamed"…}`}, Later: true},
			{Curl: `curl -s -X POST {shop}/__sim/chaos -d '{"webhook_drop_rate":1}'`, Out: []string{`{…"webhook_drop_rate":1…}`}},
			{Curl: `curl -s -X PUT {shop}/v2/products/5 -H 'Authorization: Bearer sim-commerce-token' -H 'Content-Type: application/json' \
  -d '{"sku":"SKU-5","title":{"en":"Healed"},"price":{"amount":990,"currency":"EUR"},"stock":2}'`, Out: []string{`{"id":"5",…"title":{"en":"Healed"}…}`}},
			{Note: "the webhook was dropped: still the old title", Curl: "curl -s {site}/vendors/v1/shop/product/5", Out: []string{`{…"title":"Organic Backpack"…}`}},
			{Curl: `curl -s -X POST {admin}/craftedge/backfill -H 'Content-Type: application/json' -d '{"vendor":"shop","resource":"product"}'`, Out: []string{
				"{", `  "vendor": "shop",`, `  "resource": "product",`, `  "job_id": "<id>",`, "…", "}",
			}},
			{Curl: "curl -s {site}/vendors/v1/shop/product/5", Out: []string{`{…"title":"Healed"…}`}, Later: true},
			{Note: "let the shop send webhooks again", Curl: "curl -s -X DELETE {shop}/__sim/chaos", Out: []string{`{…"webhook_drop_rate":0…}`}},
		},
	},
	{
		Title: "Write through the outbox",
		Text: []string{
			"Writes need the write token ($CRAFTEDGE_DEMO_RECORDS_TOKEN, default",
			"craftedge-demo-records-token); the record changes once the outbox job is done.",
		},
		Cmds: []demoCmd{
			{Curl: `curl -si -X PUT {site}/vendors/v1/shop/product/6 -H 'Content-Type: application/json' \
  -d '{"sku":"SKU-6","title":{"en":"Written"},"price":{"amount":1200,"currency":"EUR"},"stock":1}' | grep '^HTTP'`, Out: []string{"HTTP/1.1 401 Unauthorized"}},
			{Curl: `curl -si -X PUT {site}/vendors/v1/shop/product/6 -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \
  -d '{"sku":"SKU-6","title":{"en":"Written"},"price":{"amount":1200,"currency":"EUR"},"stock":1}' | grep -i -e '^HTTP' -e '^location'`, Out: []string{
				"HTTP/1.1 202 Accepted",
				"Location: /vendors/v1/outbox/<id>",
			}},
			{Curl: "curl -s {site}/vendors/v1/shop/product/6", Out: []string{`{…"title":"Written"…}`}, Later: true},
		},
	},
	mediaStep, searchStep, // demo_steps_push.go
}

// purgedOut is what a purge answers.
var purgedOut = []string{"{", `  "purged": <n>`, "}"}

// demoAddrs are the values of the placeholders of demoSteps.
type demoAddrs struct {
	Site, Admin, Origin, Shop, Token string
}

// defaultDemoAddrs are the addresses of a demo started with no flags and
// the default write token: docs/guides/demo.md shows the steps with them.
func defaultDemoAddrs() demoAddrs {
	return demoAddrs{
		Site:   "http://" + defaultDemoListen,
		Admin:  "http://" + defaultDemoAdmin,
		Origin: "http://" + defaultDemoOrigin,
		Shop:   "http://" + defaultDemoVendor,
		Token:  demoRecordsToken,
	}
}

// fill replaces the placeholders of s.
func (a demoAddrs) fill(s string) string {
	return strings.NewReplacer(
		"{site}", a.Site, "{admin}", a.Admin, "{origin}", a.Origin,
		"{shop}", a.Shop, "{token}", a.Token,
	).Replace(s)
}

// writeDemoSteps writes the steps as a shell script: a comment with the
// step's number and title, its explanation, and each command followed by
// its expected output as "# → " comments, so a step can be pasted whole.
func writeDemoSteps(w io.Writer, a demoAddrs) {
	fmt.Fprintln(w, "# Paste the commands into a shell. The lines after a command marked → are what")
	fmt.Fprintln(w, "# it prints: \"…\" is text left out; <n>, <id> and <time> vary.")
	for i, s := range demoSteps {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "# %d. %s\n", i+1, s.Title)
		for _, l := range s.Text {
			fmt.Fprintf(w, "#    %s\n", l)
		}
		for _, c := range s.Cmds {
			if c.Note != "" {
				fmt.Fprintf(w, "# %s\n", c.Note)
			}
			if c.Later {
				fmt.Fprintln(w, "# (a background job does this: if it still shows the old value, run it again)")
			}
			fmt.Fprintln(w, a.fill(c.Curl))
			for _, o := range c.Out {
				fmt.Fprintln(w, "# → "+a.fill(o))
			}
		}
	}
}
