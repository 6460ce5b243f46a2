package demoorigin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// The contact page is a cached page with a working form (issue 19): the
// page is public and the same for every visitor; the visitor's own CSRF
// token and a "hello, visitor" line are private fragments, edge-side
// includes the gateway fetches per visitor with their cookies, as the Craft
// plugin's craftedge.csrfInput() and craftedge.dynamic() render them. A
// "latest entries" box is a cached fragment with tags of its own.
//
//	GET  /contact             the page; with an ESI-capable edge in front
//	                          (Surrogate-Capability: …="ESI/1.0") it answers
//	                          Surrogate-Control: content="ESI/1.0" and three
//	                          <esi:include>s; without one, the form with the
//	                          token inline, Cache-Control: private, no-store
//	POST /contact             validates the CSRF token as Yii does: 400
//	                          "Unable to verify your data submission." or 200
//	/_fragments/csrf          private: the visitor's masked token in a hidden
//	                          input, and the CRAFT_CSRF_TOKEN cookie for a
//	                          visitor without one
//	/_fragments/hello         private: "Hello, visitor <id>!", the id a hash of
//	                          the visitor's CSRF cookie (never the token)
//	/_fragments/latest        public: the blog's latest entries, tagged like a
//	                          page listing the blog section
//
// CSRF as Yii 2 and Craft 5 do it (yiisoft/yii2 web/Request.php and
// base/Security.php, craftcms/cms web/Request.php): the cookie holds the
// visitor's token (40 characters of [A-Za-z0-9_-] for a guest); a page
// carries it masked, base64url(mask ‖ mask⊕token) with a fresh random mask
// per render (so no two renders are alike); a POST's token (the
// CRAFT_CSRF_TOKEN field, or the X-CSRF-Token header) is unmasked and
// compared in constant time with the cookie's. Simplification: Craft signs
// its cookies (Yii cookie validation); here the cookie holds the raw token,
// which changes nothing the edge sees.

// CSRFParam names Craft's CSRF cookie and form field.
const CSRFParam = "CRAFT_CSRF_TOKEN"

// Paths of the contact page and its fragments.
const (
	ContactPath  = "/contact"
	CSRFFragment = "/_fragments/csrf"
	HelloPath    = "/_fragments/hello"
	LatestPath   = "/_fragments/latest"
)

// csrfRefused is Yii's BadRequestHttpException message.
const csrfRefused = "Unable to verify your data submission."

var wellFormedToken = regexp.MustCompile(`^[A-Za-z0-9_-]{40}$`)

// edgeAssemblesESI reports whether the request came through an edge that
// processes ESI (the plugin's `esi auto` test).
func edgeAssemblesESI(r *http.Request) bool {
	for _, v := range r.Header.Values("Surrogate-Capability") {
		if strings.Contains(v, "ESI/1.0") {
			return true
		}
	}
	return false
}

// csrfToken returns the visitor's token from their cookie, or a new one
// with the cookie set on w (Yii's getCsrfToken: loadCsrfToken, else
// generateCsrfToken).
func csrfToken(w http.ResponseWriter, r *http.Request) string {
	if v, ok := cookieValue(r, CSRFParam); ok && wellFormedToken.MatchString(v) {
		return v
	}
	token := base64.URLEncoding.EncodeToString(randomBytes(30)) // 40 characters
	http.SetCookie(w, &http.Cookie{Name: CSRFParam, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return token
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// maskToken is Yii's Security::maskToken.
func maskToken(token string) string {
	mask := randomBytes(len(token))
	out := make([]byte, 2*len(token))
	copy(out, mask)
	for i := range len(token) {
		out[len(token)+i] = mask[i] ^ token[i]
	}
	return base64.URLEncoding.EncodeToString(out)
}

// unmaskToken is Yii's Security::unmaskToken: "" for what is not a masked
// token.
func unmaskToken(masked string) string {
	b, err := base64.URLEncoding.DecodeString(masked)
	if err != nil || len(b) == 0 || len(b)%2 != 0 {
		return ""
	}
	n := len(b) / 2
	out := make([]byte, n)
	for i := range out {
		out[i] = b[i] ^ b[n+i]
	}
	return string(out)
}

// csrfValid is Yii's validateCsrfToken for a POST.
func csrfValid(r *http.Request) bool {
	cookie, ok := cookieValue(r, CSRFParam)
	if !ok {
		return false
	}
	posted := r.PostFormValue(CSRFParam)
	if posted == "" {
		posted = r.Header.Get("X-CSRF-Token")
	}
	return subtle.ConstantTimeCompare([]byte(unmaskToken(posted)), []byte(cookie)) == 1
}

// visitorID is a short, stable name for the visitor holding a CSRF cookie:
// a hash of it, so the page never shows the token.
func visitorID(r *http.Request) string {
	v, ok := cookieValue(r, CSRFParam)
	if !ok || !wellFormedToken.MatchString(v) {
		return ""
	}
	sum := sha256.Sum256([]byte("demo-visitor\x00" + v))
	return hex.EncodeToString(sum[:3])
}

// contactView is what the contact page renders.
type contactView struct {
	ESI    bool
	CSRF   template.HTML // the form's token input (inline pages)
	Hello  template.HTML // the hello line (inline pages)
	Latest template.HTML // the latest entries (inline pages)
}

// serveContact serves the contact page and its form's posts.
func (o *Origin) serveContact(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		o.postContact(w, r)
		return
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		o.renderStatus(w, http.StatusMethodNotAllowed, "Method Not Allowed", "Use GET, or POST the form.")
		return
	}
	p := o.newPage("Contact", "contact", []string{tagSite}, 1)
	p.Description = "Write to the Craftedge Journal: a cached page whose form works for every visitor."
	v := &contactView{ESI: edgeAssemblesESI(r)}
	if v.ESI {
		// The page is the same for everybody: the edge fills the islands.
		w.Header().Set("Surrogate-Control", `content="ESI/1.0"`)
	} else {
		// Without an ESI processor, the page carries this visitor's
		// token: it must never be shared.
		w.Header().Set("Cache-Control", "private, no-store")
		v.CSRF = csrfInput(w, r)
		v.Hello = helloLine(r)
		v.Latest = o.latestBox()
	}
	p.Contact = v
	o.render(w, http.StatusOK, "contact", p)
}

// postContact answers the form: accepted only with the visitor's own
// token, as Craft (Yii) does.
func (o *Origin) postContact(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	if !csrfValid(r) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(csrfRefused + "\n"))
		return
	}
	_, _ = w.Write([]byte("Thanks, your message was received.\n"))
}

// serveFragment serves the contact page's fragments.
func (o *Origin) serveFragment(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=UTF-8")
	var body template.HTML
	switch r.URL.Path {
	case CSRFFragment:
		hdr.Set("Cache-Control", "private, no-store")
		body = csrfInput(w, r)
	case HelloPath:
		hdr.Set("Cache-Control", "private, no-store")
		body = helloLine(r)
	case LatestPath:
		hdr.Set("Cache-Tag", strings.Join([]string{tagSite, tagElement, tagEntries, tagBlogSection}, ","))
		body = o.latestBox()
	default:
		o.serveNotFound(w)
		return
	}
	_, _ = w.Write([]byte(body))
}

// csrfInput is craftedge.csrfInput()'s fragment: the hidden input with
// the visitor's masked token (issuing the cookie to a new visitor).
func csrfInput(w http.ResponseWriter, r *http.Request) template.HTML {
	masked := maskToken(csrfToken(w, r))
	return template.HTML(`<input type="hidden" name="` + CSRFParam + `" value="` + template.HTMLEscapeString(masked) + `">`)
}

// helloLine is the "hello, visitor" island.
func helloLine(r *http.Request) template.HTML {
	at := time.Now().UTC().Format("15:04:05.000")
	if id := visitorID(r); id != "" {
		return template.HTML(`<p class="hello">Hello, visitor ` + id + `! This line is yours alone (rendered for you at ` + at + `).</p>`)
	}
	return template.HTML(`<p class="hello">Hello, new visitor! This line is yours alone (rendered for you at ` + at + `).</p>`)
}

// latestBox is the cached fragment: the blog's entries, rendered once and
// shared, refreshed when the blog section's tag is purged.
func (o *Origin) latestBox() template.HTML {
	o.mu.Lock()
	entries := o.entryViews()
	o.mu.Unlock()
	var b strings.Builder
	b.WriteString(`<aside class="latest card"><h2>Latest entries</h2><ul>`)
	for _, e := range entries {
		b.WriteString(`<li><a href="/blog/` + template.HTMLEscapeString(e.Slug) + `">` + template.HTMLEscapeString(e.Title) + `</a></li>`)
	}
	b.WriteString(`</ul><p class="meta">A cached fragment, rendered at ` + time.Now().UTC().Format("15:04:05.000") + `.</p></aside>`)
	return template.HTML(b.String())
}

const contactHTML = `{{define "content"}}
{{- with .Contact}}
<h1>Contact</h1>
{{if .ESI}}<esi:include src="` + HelloPath + `"/>{{else}}{{.Hello}}{{end}}
<p class="lead">This page is cached once and served to everyone; the line above and the form's
CSRF token are private fragments, filled in per visitor by the gateway.</p>
<form method="post" action="` + ContactPath + `">
{{if .ESI}}<esi:include src="` + CSRFFragment + `"/>{{else}}{{.CSRF}}{{end}}
<label for="message">Message</label>
<textarea id="message" name="message" rows="4" required></textarea>
<button type="submit">Send</button>
</form>
{{if .ESI}}<esi:include src="` + LatestPath + `" onerror="continue"/>{{else}}{{.Latest}}{{end}}
{{- end}}
{{end}}`
