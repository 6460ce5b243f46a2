package main

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/craftedge/craftedge/vendorsim"
)

// The demo's steps of media files and the search index push (issue 17),
// listed at the end of demoSteps.

// demoImage is the edge URL of the image the media step gives product 7:
// its content's SHA-256.
var demoImage = func() string {
	sum := sha256.Sum256(vendorsim.MediaPNG("mug.png"))
	return "/vendors/v1/media/" + hex.EncodeToString(sum[:])
}()

var mediaStep = demoStep{
	Title: "Media: the shop names an image; craftedge downloads it and serves it from the edge",
	Text:  []string{"A background job downloads it after the webhook; visitors never wait (docs/guides/media.md)."},
	Cmds: []demoCmd{
		{Curl: `curl -s -X PUT {shop}/v2/products/7 -H 'Authorization: Bearer sim-commerce-token' -H 'Content-Type: application/json' \
  -d '{"sku":"SKU-7","title":{"en":"Mug"},"price":{"amount":990,"currency":"EUR"},"stock":2,"image":"{shop}/media/mug.png"}'`,
			Out: []string{`{"id":"7",…"image":"{shop}/media/mug.png"…}`}},
		{Curl: "curl -s {site}/vendors/v1/shop/product/7 | grep -o '\"url\":\"[^\"]*\"'", Out: []string{`"url":"` + demoImage + `"`}, Later: true},
		{Curl: "curl -si {site}" + demoImage + " | grep -i -e '^HTTP' -e '^content-type' -e '^cache-control'", Out: []string{
			"HTTP/1.1 200 OK",
			"Cache-Control: public, max-age=31536000, immutable",
			"Content-Type: image/png",
		}},
	},
}

var searchStep = demoStep{
	Title: "Search: every product change is pushed to the search index",
	Text: []string{
		"The product renamed in the webhooks step is in the (simulated) index; a lost index is rebuilt",
		"from the records without calling the shop: `craftedge reindex` (docs/guides/search-push.md).",
	},
	Cmds: []demoCmd{
		{Curl: `curl -s '{shop}/indexes/products/search?q=renamed' -H 'Authorization: Bearer sim-index-token'`,
			Out: []string{`{"hits":[{…"id":"4"…"title":"Renamed"}],"query":"renamed"}`}, Later: true},
		{Curl: `curl -s -X POST {admin}/craftedge/reindex -H 'Content-Type: application/json' -d '{"vendor":"shop","resource":"product","target":"search"}'`, Out: []string{
			"{", `  "vendor": "shop",`, `  "resource": "product",`, `  "target": "search",`, `  "job_id": "<id>",`, "…", "}",
		}},
	},
}
