// Package demoorigin is a small Craft-CMS-like website for demos and tests
// of the craftedge gateway. It needs nothing but net/http.
//
// The site has a home page, a blog (/blog and /blog/{slug}) and products
// (/products/{id}). Every page is a few KiB of realistic HTML, names its
// cache tags in a Cache-Tag header the way Craft with the craftedge plugin
// does (craft, el:entry:section:1, el:1..., see tags.go), and shows a
// visible "rendered at <time>, revision N" line so a visitor can tell a
// cached copy from a fresh render. Like Craft, it sends no Cache-Control
// header, except on product pages ("public, s-maxage=60, stale-if-error=86400").
//
// Around the pages:
//
//	/contact                  a cached page with a working form: its CSRF
//	                          token and a "hello, visitor" line are private
//	                          edge-side includes (contact.go)
//	/login                    sets a CraftSessionId cookie ("logged in")
//	/logout                   clears it
//	/admin, /admin/*          a tiny control panel
//	POST /admin/entries/{id}  "saves" an entry: bumps its revision and answers
//	                          with the Cache-Purge-Tag the craftedge plugin sends
//	                          (el:{id}, el:entry:section:1...)
//	/actions/*                JSON, like Craft's controller actions
//	/__origin/mode            the control endpoint: GET shows the mode,
//	                          ?set=ok|down|error|slow changes it; it answers
//	                          in every mode
//
// The mode makes the origin misbehave on purpose: ModeDown closes
// connections without a response, ModeError answers 500 with an error
// page, ModeSlow answers after SlowDelay.
package demoorigin

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how the origin answers page requests.
type Mode int32

// The origin's modes.
const (
	// ModeOK serves the site normally.
	ModeOK Mode = iota
	// ModeDown hijacks and closes every connection without answering, so a
	// proxy in front sees a transport error (as with a crashed PHP-FPM or a
	// dead container).
	ModeDown
	// ModeError answers every request with a 500 and Craft's error page.
	ModeError
	// ModeSlow waits SlowDelay (or until the client gives up) before
	// answering normally.
	ModeSlow
)

var modeNames = [...]string{ModeOK: "ok", ModeDown: "down", ModeError: "error", ModeSlow: "slow"}

// String returns the mode's name: ok, down, error or slow.
func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode parses a mode name: ok, down, error or slow (case-insensitive).
func ParseMode(s string) (Mode, error) {
	for i, name := range modeNames {
		if strings.EqualFold(s, name) {
			return Mode(i), nil
		}
	}
	return ModeOK, fmt.Errorf("unknown mode %q: want ok, down, error or slow", s)
}

// ControlPath is the path of the control endpoint.
const ControlPath = "/__origin/mode"

// DefaultSlowDelay is the delay of ModeSlow unless SlowDelay says otherwise.
const DefaultSlowDelay = 5 * time.Second

// SessionCookie is the name of the session cookie /login sets (Craft's).
const SessionCookie = "CraftSessionId"

// Origin is the demo site. It is an http.Handler; create it with New.
type Origin struct {
	// SlowDelay is how long ModeSlow waits before answering. New sets it
	// to DefaultSlowDelay; change it before serving requests.
	SlowDelay time.Duration

	mode     atomic.Int32
	requests atomic.Int64
	renders  atomic.Int64

	mu       sync.Mutex
	entries  []*entry
	products []*product
	siteRev  int // bumped by every save; the home and blog index show it
}

// New returns the demo site in ModeOK with its sample content, every entry
// at revision 1.
func New() *Origin {
	o := &Origin{SlowDelay: DefaultSlowDelay, siteRev: 1}
	o.entries = sampleEntries()
	o.products = sampleProducts()
	return o
}

// NewCatalog is New with a larger shop: products 1..products exist (the
// sample products first, then generated ones, "Catalogue item N"), so a
// load test can spread visitors over a few thousand distinct pages. A
// products count below the sample's size keeps the sample.
func NewCatalog(products int) *Origin {
	o := New()
	for id := len(o.products) + 1; id <= products; id++ {
		o.products = append(o.products, catalogProduct(id))
	}
	return o
}

// SetMode changes how the origin answers from now on.
func (o *Origin) SetMode(m Mode) { o.mode.Store(int32(m)) }

// Mode returns the current mode.
func (o *Origin) Mode() Mode { return Mode(o.mode.Load()) }

// Requests returns how many site requests reached the origin, in any mode
// (pages, control panel, actions, 404s...), not counting requests to the
// control endpoint.
func (o *Origin) Requests() int64 { return o.requests.Load() }

// Revision returns the revision of the entry with the given id, or 0 when
// there is no such entry.
func (o *Origin) Revision(id int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e := o.entryByID(id); e != nil {
		return e.revision
	}
	return 0
}

// ServeHTTP implements http.Handler.
func (o *Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == ControlPath {
		o.serveControl(w, r)
		return
	}
	o.requests.Add(1)
	switch o.Mode() {
	case ModeDown:
		abortConnection(w)
		return
	case ModeError:
		o.serveError(w)
		return
	case ModeSlow:
		t := time.NewTimer(o.SlowDelay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	o.route(w, r)
}

// abortConnection closes the client's connection without writing a
// response.
func abortConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): abort the stream instead.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// serveControl serves the control endpoint, in every mode.
func (o *Origin) serveControl(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD, POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET or POST"})
		return
	}
	if set := r.URL.Query().Get("set"); set != "" {
		m, err := ParseMode(set)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		o.SetMode(m)
	}
	writeJSON(w, http.StatusOK, map[string]string{"mode": o.Mode().String()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// route dispatches a site request.
func (o *Origin) route(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Powered-By", "Craft CMS")
	path := r.URL.Path
	switch {
	case path == "/actions" || strings.HasPrefix(path, "/actions/"):
		o.serveAction(w, r)
		return
	case path == "/admin" || strings.HasPrefix(path, "/admin/"):
		o.serveCP(w, r)
		return
	case path == ContactPath:
		o.serveContact(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		o.renderStatus(w, http.StatusMethodNotAllowed, "Method Not Allowed",
			"This page only answers GET and HEAD requests.")
		return
	}
	switch {
	case path == "/" || path == "/index.php":
		o.serveHome(w)
	case path == "/blog" || path == "/blog/":
		o.serveBlogIndex(w)
	case strings.HasPrefix(path, "/blog/"):
		o.serveEntry(w, strings.TrimPrefix(path, "/blog/"))
	case strings.HasPrefix(path, "/products/"):
		o.serveProduct(w, strings.TrimPrefix(path, "/products/"))
	case strings.HasPrefix(path, "/_fragments/"):
		o.serveFragment(w, r)
	case path == "/login":
		o.serveLogin(w)
	case path == "/logout":
		o.serveLogout(w)
	default:
		o.serveNotFound(w)
	}
}

// pageData is what the page layout renders.
type pageData struct {
	Title       string
	Description string
	Section     string // nav item to highlight
	Tags        string // the Cache-Tag value, shown in the footer
	RenderedAt  string
	Revision    int
	Render      int64
	Entries     []entryView
	Products    []productView
	Entry       *entryView
	Product     *productView
	Message     string
	Detail      string
	Session     string
	Contact     *contactView
}

type entryView struct {
	ID        int
	Slug      string
	Title     string
	Summary   string
	Author    string
	Published string
	Body      []string
	Revision  int
}

type productView struct {
	ID          int
	Name        string
	Description string
	Price       string
	Stock       int
}

// newPage fills the fields every page shows.
func (o *Origin) newPage(title, section string, tags []string, revision int) *pageData {
	return &pageData{
		Title:      title,
		Section:    section,
		Tags:       strings.Join(tags, ","),
		RenderedAt: time.Now().UTC().Format("2006-01-02 15:04:05.000 MST"),
		Revision:   revision,
		Render:     o.renders.Add(1),
	}
}

// render writes a page with its cache tags.
func (o *Origin) render(w http.ResponseWriter, status int, name string, p *pageData) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=UTF-8")
	if p.Tags != "" {
		hdr.Set("Cache-Tag", p.Tags)
	}
	var b strings.Builder
	if err := templates[name].ExecuteTemplate(&b, "layout", p); err != nil {
		http.Error(w, "template error: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// renderStatus writes a message page without cache tags.
func (o *Origin) renderStatus(w http.ResponseWriter, status int, title, detail string) {
	p := o.newPage(title, "", nil, 0)
	p.Message = title
	p.Detail = detail
	o.render(w, status, "message", p)
}

func (o *Origin) serveHome(w http.ResponseWriter) {
	o.mu.Lock()
	entries := o.entryViews()
	products := o.productViews(o.products[:3])
	rev := o.siteRev
	o.mu.Unlock()
	// The template queries the blog's entries and some products.
	tags := []string{tagSite, tagElement, tagEntries, tagBlogSection, tagProducts, tagProductType}
	p := o.newPage("Home", "home", tags, rev)
	p.Description = "The Craftedge Journal: notes on running Craft CMS behind an edge cache."
	p.Entries = entries
	p.Products = products
	o.render(w, http.StatusOK, "home", p)
}

func (o *Origin) serveBlogIndex(w http.ResponseWriter) {
	o.mu.Lock()
	entries := o.entryViews()
	rev := o.siteRev
	o.mu.Unlock()
	tags := []string{tagSite, tagElement, tagEntries, tagBlogSection}
	p := o.newPage("Blog", "blog", tags, rev)
	p.Description = "Every entry of the Craftedge Journal."
	p.Entries = entries
	o.render(w, http.StatusOK, "blog", p)
}

func (o *Origin) serveEntry(w http.ResponseWriter, slug string) {
	o.mu.Lock()
	var view *entryView
	for _, e := range o.entries {
		if strings.EqualFold(e.slug, strings.TrimSuffix(slug, "/")) {
			v := e.view()
			view = &v
			break
		}
	}
	others := o.entryViews()
	o.mu.Unlock()
	if view == nil {
		o.serveNotFound(w)
		return
	}
	// The entry matched by the URL, and the section's other entries.
	p := o.newPage(view.Title, "blog", []string{tagSite, tagElement, tagEntries, entryTag(view.ID), tagBlogSection}, view.Revision)
	p.Description = view.Summary
	p.Entry = view
	p.Entries = others
	o.render(w, http.StatusOK, "entry", p)
}

func (o *Origin) serveProduct(w http.ResponseWriter, idText string) {
	id, err := strconv.Atoi(strings.TrimSuffix(idText, "/"))
	o.mu.Lock()
	var view *productView
	var related []productView
	if err == nil {
		for _, pr := range o.products {
			if pr.id == id {
				v := pr.view()
				view = &v
			} else if len(related) < 3 {
				related = append(related, pr.view())
			}
		}
	}
	o.mu.Unlock()
	if view == nil {
		o.serveNotFound(w)
		return
	}
	w.Header().Set("Cache-Control", "public, s-maxage=60, stale-if-error=86400")
	p := o.newPage(view.Name, "products", []string{tagSite, tagElement, tagProducts, productTag(view.ID), tagProductType}, 1)
	p.Description = view.Description
	p.Product = view
	p.Products = related
	o.render(w, http.StatusOK, "product", p)
}

func (o *Origin) serveLogin(w http.ResponseWriter) {
	id := rand.Text()
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	p := o.newPage("Logged in", "", nil, 0)
	p.Message = "You are logged in."
	p.Detail = "Your browser now sends a " + SessionCookie + " cookie: the gateway passes your requests to Craft untouched, so you always see live pages."
	p.Session = id
	o.render(w, http.StatusOK, "message", p)
}

func (o *Origin) serveLogout(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true})
	p := o.newPage("Logged out", "", nil, 0)
	p.Message = "You are logged out."
	p.Detail = "Pages come from the cache again."
	o.render(w, http.StatusOK, "message", p)
}

func (o *Origin) serveNotFound(w http.ResponseWriter) {
	o.renderStatus(w, http.StatusNotFound, "Page not found",
		"The page you were looking for could not be found. It may have been moved or deleted.")
}

// serveError answers like Craft in production when a template or plugin
// throws.
func (o *Origin) serveError(w http.ResponseWriter) {
	w.Header().Set("X-Powered-By", "Craft CMS")
	o.renderStatus(w, http.StatusInternalServerError, "Internal Server Error",
		"An internal server error occurred. (The demo origin is in error mode: "+
			"POST "+ControlPath+"?set=ok to heal it.)")
}

// serveAction answers like Craft's controller actions: JSON, no tags.
func (o *Origin) serveAction(w http.ResponseWriter, r *http.Request) {
	action := strings.Trim(strings.TrimPrefix(r.URL.Path, "/actions"), "/")
	_, loggedIn := cookieValue(r, SessionCookie)
	writeJSON(w, http.StatusOK, map[string]any{
		"success":        true,
		"action":         action,
		"isGuest":        !loggedIn,
		"csrfTokenName":  "CRAFT_CSRF_TOKEN",
		"csrfTokenValue": rand.Text(),
		"timestamp":      time.Now().UTC().Format(time.RFC3339Nano),
	})
}

func cookieValue(r *http.Request, name string) (string, bool) {
	c, err := r.Cookie(name)
	if err != nil || c.Value == "" {
		return "", false
	}
	return c.Value, true
}

// serveCP serves the control panel: a dashboard listing entries with save
// buttons, an entry edit page, and the save endpoint.
func (o *Origin) serveCP(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/admin"), "/")
	if idText, ok := strings.CutPrefix(rest, "entries/"); ok {
		id, err := strconv.Atoi(idText)
		if err != nil || o.Revision(id) == 0 {
			o.renderStatus(w, http.StatusNotFound, "Entry not found", "There is no entry with id "+strconv.Quote(idText)+".")
			return
		}
		switch r.Method {
		case http.MethodPost:
			o.saveEntry(w, r, id)
			return
		case http.MethodGet, http.MethodHead:
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			o.renderStatus(w, http.StatusMethodNotAllowed, "Method Not Allowed", "Use POST to save an entry.")
			return
		}
	} else if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		o.renderStatus(w, http.StatusMethodNotAllowed, "Method Not Allowed", "Use GET.")
		return
	}
	o.mu.Lock()
	entries := o.entryViews()
	rev := o.siteRev
	o.mu.Unlock()
	p := o.newPage("Control Panel", "admin", nil, rev)
	p.Entries = entries
	o.render(w, http.StatusOK, "cp", p)
}

// saveEntry bumps an entry's revision and tells the gateway to purge it.
func (o *Origin) saveEntry(w http.ResponseWriter, r *http.Request, id int) {
	o.mu.Lock()
	e := o.entryByID(id)
	e.revision++
	o.siteRev++
	v := e.view()
	o.mu.Unlock()

	tags := savedEntryTags(id)
	tag := strings.Join(tags, ",")
	w.Header().Set("Cache-Purge-Tag", tag)
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		writeJSON(w, http.StatusOK, map[string]any{
			"success":  true,
			"message":  "Entry saved.",
			"id":       v.ID,
			"title":    v.Title,
			"revision": v.Revision,
			"url":      "/blog/" + v.Slug,
			"purged":   tags,
		})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_ = savedHTML.Execute(w, map[string]any{"Entry": v, "Tag": tag})
}

// savedHTML is the short answer to a save from a form or curl.
var savedHTML = template.Must(template.New("saved").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Entry saved | Control Panel</title></head>
<body>
<p>Entry saved: &ldquo;{{.Entry.Title}}&rdquo; is now at revision {{.Entry.Revision}}.</p>
<p>This response carried Cache-Purge-Tag: {{.Tag}}, so the gateway purged <a href="/blog/{{.Entry.Slug}}">/blog/{{.Entry.Slug}}</a> and every page listing it.</p>
<p><a href="/admin">Back to the control panel</a></p>
</body></html>
`))

// entryByID returns the entry or nil; o.mu must be held.
func (o *Origin) entryByID(id int) *entry {
	for _, e := range o.entries {
		if e.id == id {
			return e
		}
	}
	return nil
}

// entryViews copies the entries for rendering; o.mu must be held.
func (o *Origin) entryViews() []entryView {
	views := make([]entryView, len(o.entries))
	for i, e := range o.entries {
		views[i] = e.view()
	}
	return views
}

func (o *Origin) productViews(ps []*product) []productView {
	views := make([]productView, len(ps))
	for i, p := range ps {
		views[i] = p.view()
	}
	return views
}

type entry struct {
	id        int
	slug      string
	title     string
	summary   string
	author    string
	published time.Time
	body      []string
	revision  int
}

func (e *entry) view() entryView {
	return entryView{
		ID: e.id, Slug: e.slug, Title: e.title, Summary: e.summary, Author: e.author,
		Published: e.published.Format("January 2, 2006"), Body: e.body, Revision: e.revision,
	}
}

type product struct {
	id          int
	name        string
	description string
	priceCents  int
	stock       int
}

func (p *product) view() productView {
	return productView{
		ID: p.id, Name: p.name, Description: p.description,
		Price: fmt.Sprintf("€%d.%02d", p.priceCents/100, p.priceCents%100), Stock: p.stock,
	}
}
