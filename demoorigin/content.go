package demoorigin

import (
	"html/template"
	"strconv"
	"time"
)

// sampleEntries is the blog. Entry ids are stable: the demo's instructions
// refer to entry 1 ("hello-world").
func sampleEntries() []*entry {
	day := func(m time.Month, d int) time.Time { return time.Date(2025, m, d, 9, 0, 0, 0, time.UTC) }
	return []*entry{
		{
			id: 1, slug: "hello-world", title: "Hello, world", author: "Ada Editor", published: day(time.January, 14), revision: 1,
			summary: "Welcome to the Craftedge Journal, a small Craft site that lives behind an edge cache.",
			body: []string{
				"Welcome to the Craftedge Journal. This site is rendered by a tiny stand-in for Craft CMS, and every page you read went through the craftedge gateway first. The first time a page is requested the gateway asks the origin for it, stores the response in memory and on disk, and hands it to you. Every later request is answered from the cache, in microseconds, without waking PHP.",
				"Look at the line at the bottom of this page. It says when the origin rendered it and which revision of the entry it shows. Reload: if the time does not change, you are looking at a cached copy. The gateway's cache status response header (RFC 9211) says the same thing in a machine-readable way: a hit, a miss that was stored, a stale copy, a snapshot or a bypass.",
				"Editors do not have to think about any of this. When an entry is saved in the control panel, Craft tells the gateway which cache tags to purge, and the next visitor gets a fresh render. Visitors who are logged in, and every request to the control panel or to an action endpoint, go straight to Craft.",
				"The rest of the journal explains how the pieces fit together: caching by tag, snapshots that survive restarts, and the circuit breaker that keeps the site up when the origin falls over.",
			},
		},
		{
			id: 2, slug: "caching", title: "Caching pages by tag", author: "Ben Builder", published: day(time.February, 3), revision: 1,
			summary: "Why a page cache for Craft should purge by element, not by URL.",
			body: []string{
				"A Craft page is made of elements: the entry itself, the entries it lists, the assets it shows, the globals in its footer. When one of them changes, every page that used it is out of date, and no URL pattern can tell you which pages those are. Cache tags can.",
				"Each response from the origin carries a Cache-Tag header listing what the page was built from, the way the craftedge plugin tags Craft's pages: el:2 (this entry), el:entry:section:1 (the blog's entries it lists). The gateway remembers, for every tag, which cached pages carry it. Saving this entry purges el:2 and el:entry:section:1: exactly the pages that showed it, including the home page and the blog index that list the section.",
				"Purges come from two places. Craft can send them itself: when an editor saves an entry, the control panel's response carries a Cache-Purge-Tag header, which the gateway applies and strips before the response reaches the browser. Or a deploy script, a webhook or an operator can call the admin API with a list of tags, URLs or prefixes.",
				"A purge never deletes the last good copy from disk. It only marks it stale, so if the origin fails right after a purge the gateway still has something better than an error page to show.",
			},
		},
		{
			id: 3, slug: "snapshots", title: "Snapshots: the last good copy", author: "Ada Editor", published: day(time.March, 21), revision: 1,
			summary: "Every cacheable page is written to disk, so the site survives restarts and outages.",
			body: []string{
				"Memory is fast but forgetful. Every response the gateway caches is also written, in the background, to a snapshot file on disk. Snapshots are the gateway's memory of what the site looked like when it last worked.",
				"When the origin fails, times out or answers with a server error, the gateway first looks for a stale copy in memory, then for the snapshot, and only then falls back to a static 'back soon' page. Snapshots survive restarts and deploys, so even a freshly started gateway in front of a dead origin can serve the pages people read most.",
				"Operators can also flip the kill switch: in snapshot-only mode the gateway stops calling the origin for public pages altogether. That is the tool for a risky migration, a database restore or a traffic spike the origin cannot take.",
			},
		},
		{
			id: 4, slug: "circuit-breakers", title: "Circuit breakers for Craft", author: "Cy Operator", published: day(time.April, 8), revision: 1,
			summary: "When the origin is down, stop knocking: serve copies and check back later.",
			body: []string{
				"A failing origin is usually a slow origin first: PHP-FPM workers pile up, requests queue, timeouts multiply. Sending it more traffic only makes recovery slower. The gateway counts failures per upstream, and after a few in a row it opens the circuit breaker.",
				"While the breaker is open, cacheable requests do not reach the origin at all; they are answered from stale copies and snapshots at once, without waiting for a timeout. After the cooldown the breaker lets a few requests through, and closes again when they succeed.",
				"The health endpoint of the admin API shows each upstream's breaker, how many pages were served stale or from snapshots, and whether the kill switch is on.",
			},
		},
		{
			id: 5, slug: "editors-first", title: "Editors first", author: "Ben Builder", published: day(time.May, 30), revision: 1,
			summary: "The control panel, previews and logged-in visitors always see live Craft.",
			body: []string{
				"A cache that shows editors stale content is a cache editors will ask you to turn off. The gateway never caches the control panel, action requests, preview and token requests, requests with an Authorization header, or anyone who carries a Craft session cookie.",
				"Those requests pass through untouched, and the responses are only labelled with a cache status header that says why they bypassed the cache. Try it: log in on this site and every page you load is rendered live.",
			},
		},
	}
}

// sampleProducts is the shop.
func sampleProducts() []*product {
	return []*product{
		{id: 1, name: "Field Notes Journal", priceCents: 1450, stock: 42, description: "A pocket notebook with 48 dot-grid pages, for sketching content models on the train."},
		{id: 2, name: "Matrix Field Mug", priceCents: 1800, stock: 17, description: "A stoneware mug that holds exactly one nested block of coffee."},
		{id: 3, name: "Edge Cache Hoodie", priceCents: 5900, stock: 8, description: "Organic cotton, warm enough for a cold cache and soft enough for a warm one."},
		{id: 4, name: "Twig Sticker Pack", priceCents: 600, stock: 120, description: "Twelve vinyl stickers with filters, functions and one very proud block tag."},
		{id: 5, name: "Project Config Poster", priceCents: 2400, stock: 5, description: "A2 print of a project.yaml, suitable for framing and version control."},
		{id: 6, name: "Plugin Developer Socks", priceCents: 1200, stock: 33, description: "Two pairs, one for each side of a breaking change."},
		{id: 7, name: "Queue Runner Water Bottle", priceCents: 2200, stock: 14, description: "Insulated steel bottle that keeps working after everyone has gone home."},
		{id: 8, name: "Asset Volume Tote", priceCents: 1600, stock: 27, description: "A canvas tote with room for every image transform you forgot to pre-generate."},
		{id: 9, name: "Stale-While-Revalidate Cap", priceCents: 2000, stock: 0, description: "A cap you can keep wearing while the new one is on its way."},
	}
}

// catalogProduct is generated product id of NewCatalog: deterministic,
// priced and stocked from its id.
func catalogProduct(id int) *product {
	return &product{
		id:          id,
		name:        "Catalogue item " + strconv.Itoa(id),
		priceCents:  500 + (id*137)%9500,
		stock:       (id * 31) % 90,
		description: "One of the shop's long tail: a product few visitors look at, cached like the rest.",
	}
}

// templates are the site's page templates, each a clone of the layout
// with its own "content".
var templates = func() map[string]*template.Template {
	base := template.Must(template.New("layout").Parse(layoutHTML))
	contents := map[string]string{
		"home":    homeHTML,
		"blog":    blogHTML,
		"entry":   entryHTML,
		"product": productHTML,
		"cp":      cpHTML,
		"message": messageHTML,
		"contact": contactHTML,
	}
	m := make(map[string]*template.Template, len(contents))
	for name, content := range contents {
		m[name] = template.Must(template.Must(base.Clone()).Parse(content))
	}
	return m
}()

const layoutHTML = `<!DOCTYPE html>
<html lang="en-US">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} | The Craftedge Journal</title>
{{- with .Description}}
<meta name="description" content="{{.}}">
<meta property="og:description" content="{{.}}">
{{- end}}
<meta property="og:title" content="{{.Title}}">
<meta property="og:site_name" content="The Craftedge Journal">
<meta name="generator" content="Craft CMS">
<link rel="icon" href="data:,">
<style>
:root{--ink:#1f2933;--muted:#616e7c;--accent:#e5422b;--paper:#fdfcfb;--line:#e4e7eb}
*{box-sizing:border-box}body{margin:0;font:17px/1.6 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--paper)}
a{color:var(--accent)}header.site{border-bottom:1px solid var(--line);background:#fff}
.wrap{max-width:60rem;margin:0 auto;padding:0 1.25rem}
header.site .wrap{display:flex;align-items:center;justify-content:space-between;min-height:4rem}
.brand{font-weight:700;text-decoration:none;color:var(--ink)}nav a{margin-left:1.25rem;text-decoration:none;color:var(--muted)}
nav a.active{color:var(--accent);font-weight:600}main{padding:2rem 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:1.25rem;padding:0;list-style:none}
.card{border:1px solid var(--line);border-radius:.5rem;padding:1rem;background:#fff}
.meta{color:var(--muted);font-size:.875rem}.price{font-size:1.5rem;font-weight:700}
.render{margin-top:2rem;padding:.75rem 1rem;border-left:4px solid var(--accent);background:#fff4f2;font:14px/1.5 ui-monospace,monospace}
footer.site{border-top:1px solid var(--line);color:var(--muted);font-size:.875rem;padding:2rem 0}
footer.site .cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(10rem,1fr));gap:1rem}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid var(--line);padding:.5rem;text-align:left}
</style>
</head>
<body class="{{with .Section}}section-{{.}}{{else}}section-none{{end}}">
<a class="skip" href="#main" hidden>Skip to content</a>
<header class="site">
<div class="wrap">
<a class="brand" href="/">The Craftedge Journal</a>
<nav aria-label="Main">
<a href="/"{{if eq .Section "home"}} class="active"{{end}}>Home</a>
<a href="/blog"{{if eq .Section "blog"}} class="active"{{end}}>Blog</a>
<a href="/products/1"{{if eq .Section "products"}} class="active"{{end}}>Shop</a>
<a href="/contact"{{if eq .Section "contact"}} class="active"{{end}}>Contact</a>
<a href="/login">Log in</a>
<a href="/admin"{{if eq .Section "admin"}} class="active"{{end}}>Control Panel</a>
</nav>
</div>
</header>
<main id="main">
<div class="wrap">
{{template "content" .}}
<p class="render" id="render-info">rendered at {{.RenderedAt}}, revision {{.Revision}} (render #{{.Render}}){{with .Tags}}<br>Cache-Tag: {{.}}{{end}}</p>
</div>
</main>
<footer class="site">
<div class="wrap cols">
<div>
<h4>The Craftedge Journal</h4>
<p>A demo site for the craftedge gateway. Its pages are rendered by a stand-in for Craft CMS and cached at the edge.</p>
</div>
<div>
<h4>Sections</h4>
<ul>
<li><a href="/blog">Blog</a></li>
<li><a href="/products/1">Shop</a></li>
<li><a href="/admin">Control Panel</a></li>
</ul>
</div>
<div>
<h4>Try</h4>
<ul>
<li><a href="/login">Log in (sets a session cookie)</a></li>
<li><a href="/logout">Log out</a></li>
<li><a href="/actions/users/session-info">An action endpoint</a></li>
</ul>
</div>
<div>
<h4>Legal</h4>
<p>&copy; 2025 Craftedge Journal. Sample content; no products will be shipped.</p>
</div>
</div>
</footer>
</body>
</html>
`

const homeHTML = `{{define "content"}}
<section class="hero">
<h1>The Craftedge Journal</h1>
<p class="lead">Notes on running Craft CMS behind an edge cache that keeps pages fast and correct when things go wrong.</p>
</section>
<section aria-labelledby="latest">
<h2 id="latest">Latest entries</h2>
<ul class="cards">
{{- range .Entries}}
<li class="card">
<article>
<h3><a href="/blog/{{.Slug}}">{{.Title}}</a></h3>
<p class="meta">By {{.Author}} on <time>{{.Published}}</time> &middot; revision {{.Revision}}</p>
<p>{{.Summary}}</p>
<p><a href="/blog/{{.Slug}}" aria-label="Read {{.Title}}">Read more &rarr;</a></p>
</article>
</li>
{{- end}}
</ul>
</section>
<section aria-labelledby="featured">
<h2 id="featured">From the shop</h2>
<ul class="cards">
{{- range .Products}}
<li class="card">
<h3><a href="/products/{{.ID}}">{{.Name}}</a></h3>
<p>{{.Description}}</p>
<p class="price">{{.Price}}</p>
</li>
{{- end}}
</ul>
</section>
{{end}}`

const blogHTML = `{{define "content"}}
<nav class="breadcrumbs" aria-label="Breadcrumb"><a href="/">Home</a> / Blog</nav>
<h1>Blog</h1>
<p class="lead">Everything we have written about caching Craft at the edge.</p>
{{- range .Entries}}
<article class="card">
<h2><a href="/blog/{{.Slug}}">{{.Title}}</a></h2>
<p class="meta">By {{.Author}} on <time>{{.Published}}</time> &middot; revision {{.Revision}}</p>
<p>{{.Summary}}</p>
{{- with index .Body 0}}
<p>{{.}}</p>
{{- end}}
<p><a href="/blog/{{.Slug}}">Continue reading &rarr;</a></p>
</article>
{{- end}}
{{end}}`

const entryHTML = `{{define "content"}}
{{- with .Entry}}
<nav class="breadcrumbs" aria-label="Breadcrumb"><a href="/">Home</a> / <a href="/blog">Blog</a> / {{.Title}}</nav>
<article class="entry" id="entry-{{.ID}}" data-entry-id="{{.ID}}">
<header>
<h1>{{.Title}}</h1>
<p class="meta">By {{.Author}} on <time>{{.Published}}</time> &middot; revision {{.Revision}}</p>
<p class="lead"><strong>{{.Summary}}</strong></p>
</header>
{{- range .Body}}
<p>{{.}}</p>
{{- end}}
<footer>
<p class="meta">Filed under <a href="/blog">Blog</a>. Editors: <a href="/admin/entries/{{.ID}}">edit this entry</a>.</p>
</footer>
</article>
{{- end}}
<aside aria-labelledby="more">
<h2 id="more">More from the journal</h2>
<ul>
{{- range .Entries}}
<li><a href="/blog/{{.Slug}}">{{.Title}}</a> <span class="meta">&middot; {{.Published}}</span></li>
{{- end}}
</ul>
</aside>
<section class="newsletter card">
<h2>Get the next entry by email</h2>
<form method="post" action="/actions/newsletter/subscribe">
<label for="email">Email address</label>
<input type="email" id="email" name="email" required placeholder="you@example.com">
<input type="hidden" name="CRAFT_CSRF_TOKEN" value="">
<button type="submit">Subscribe</button>
</form>
<p class="meta">One email per entry, no tracking pixels. The form posts to an action endpoint, which the gateway never caches.</p>
</section>
{{end}}`

const productHTML = `{{define "content"}}
{{- with .Product}}
<nav class="breadcrumbs" aria-label="Breadcrumb"><a href="/">Home</a> / Shop / {{.Name}}</nav>
<article class="product" id="product-{{.ID}}" data-product-id="{{.ID}}">
<h1>{{.Name}}</h1>
<p class="lead">{{.Description}}</p>
<p class="price">{{.Price}}</p>
<p class="meta">{{if .Stock}}{{.Stock}} in stock{{else}}Out of stock{{end}} &middot; SKU CE-{{.ID}}00</p>
<form method="post" action="/actions/commerce/cart/update-cart">
<input type="hidden" name="purchasableId" value="{{.ID}}">
<input type="hidden" name="CRAFT_CSRF_TOKEN" value="">
<label for="qty">Quantity</label>
<input type="number" id="qty" name="qty" value="1" min="1">
<button type="submit"{{if not .Stock}} disabled{{end}}>Add to cart</button>
</form>
<h2>Details</h2>
<table>
<tr><th scope="row">Shipping</th><td>Ships within 2 business days from our warehouse. Free shipping over €50.</td></tr>
<tr><th scope="row">Returns</th><td>30 days, no questions asked, as long as it still fits in the box.</td></tr>
<tr><th scope="row">Caching</th><td>This page sends <code>Cache-Control: public, s-maxage=60, stale-if-error=86400</code>: the gateway keeps it fresh for a minute, then asks the origin again; <code>s-maxage</code> alone would forbid serving it stale (RFC 9111), so <code>stale-if-error</code> lets the gateway serve its copy or snapshot for a day when the origin fails.</td></tr>
</table>
<h2>Reviews</h2>
<blockquote><p>Exactly as described, and the page loaded instantly.</p><footer class="meta">Verified buyer</footer></blockquote>
<blockquote><p>Ordered during an outage; the shop page was still up. Impressive.</p><footer class="meta">Verified buyer</footer></blockquote>
</article>
{{- end}}
<section aria-labelledby="related">
<h2 id="related">You might also like</h2>
<ul class="cards">
{{- range .Products}}
<li class="card">
<h3><a href="/products/{{.ID}}">{{.Name}}</a></h3>
<p>{{.Description}}</p>
<p class="price">{{.Price}}</p>
</li>
{{- end}}
</ul>
</section>
<p><a href="/products/1">&larr; first product</a> &middot; <a href="/products/9">last product &rarr;</a></p>
{{end}}`

const cpHTML = `{{define "content"}}
<h1>Control Panel</h1>
<p class="lead">Craft's control panel is never cached: every request here reaches the origin.</p>
<table>
<thead><tr><th>ID</th><th>Title</th><th>Revision</th><th>URL</th><th></th></tr></thead>
<tbody>
{{- range .Entries}}
<tr>
<td>{{.ID}}</td>
<td><a href="/admin/entries/{{.ID}}">{{.Title}}</a></td>
<td>{{.Revision}}</td>
<td><a href="/blog/{{.Slug}}">/blog/{{.Slug}}</a></td>
<td><form method="post" action="/admin/entries/{{.ID}}"><button type="submit">Save</button></form></td>
</tr>
{{- end}}
</tbody>
</table>
<p class="meta">Saving an entry bumps its revision and answers with <code>Cache-Purge-Tag: el:entry:*,el:&lt;id&gt;,el:entry:section:1,…</code>.</p>
{{end}}`

const messageHTML = `{{define "content"}}
<h1>{{.Message}}</h1>
<p>{{.Detail}}</p>
{{- with .Session}}
<p class="meta">Session: <code>{{.}}</code></p>
{{- end}}
<p><a href="/">Back to the home page</a></p>
{{end}}`
