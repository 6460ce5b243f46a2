package cachehandler

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/craftedge/craftedge/httpcache"
	"github.com/craftedge/craftedge/pagecache"
)

// This file builds the request a cacheable request sends upstream. Its rule
// is the first of DESIGN.md's two: nothing unkeyed reaches Craft. The
// upstream request is built from the cache key's parts alone (keyed method,
// host, path and normalized query, keyed headers and cookies, a body only
// where keyed), never copied from the visitor's request and then filtered,
// so a header or parameter nobody thought of cannot slip through.

// upstreamSpec is everything a cacheable request may send upstream. Every
// field is part of the cache key (or derived from parts of it): two
// requests with the same key have equal specs.
type upstreamSpec struct {
	// scheme is the key's scheme ("http" or "https"); forwarded as
	// X-Forwarded-Proto only when it came from a trusted proxy.
	scheme string
	// trustedScheme: scheme came from a trusted proxy's X-Forwarded-Proto.
	trustedScheme bool
	// host is the key's host (lower-cased, default port dropped).
	host string
	// query is the key's normalized query (tracking parameters dropped).
	query string
	// sendQuery is the query sent upstream: query, or the normalized
	// query a rewrite before the handler produced (keyed too).
	sendQuery string
	// header holds the keyed request headers to forward, in canonical form.
	header http.Header
	// body is a keyed body (a GraphQL POST), nil otherwise.
	body []byte
}

// specCtxKey carries a miss's upstreamSpec from ServeHTTP to the upstream
// call (set only on the miss path, never on a hit).
type specCtxKey struct{}

// withSpec returns r carrying spec for the upstream call.
func withSpec(r *http.Request, spec *upstreamSpec) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), specCtxKey{}, spec))
}

// specOf returns the upstreamSpec attached to r.
func specOf(r *http.Request) *upstreamSpec {
	spec, _ := r.Context().Value(specCtxKey{}).(*upstreamSpec)
	return spec
}

// requestKey computes the cache key of a cacheable request and the spec
// of what it may send upstream. reason is a bypass reason when the request
// carries something that cannot be keyed safely.
func (h *Handler) requestKey(r, lr *http.Request) (key string, spec upstreamSpec, reason string) {
	spec = upstreamSpec{scheme: "http"}
	if r.TLS != nil {
		spec.scheme = "https"
	}
	var extra []string
	if trustedProxy(r) {
		// Behind a CDN or load balancer Caddy trusts, the public scheme
		// and host are the proxy's X-Forwarded-* values: they become part
		// of the key and are forwarded as keyed, never as the visitor sent
		// them to an untrusted hop.
		if v := r.Header.Values("X-Forwarded-Proto"); len(v) > 0 {
			proto := strings.ToLower(strings.TrimSpace(v[len(v)-1]))
			if proto != "http" && proto != "https" {
				return "", upstreamSpec{}, "forwarded-proto"
			}
			spec.scheme, spec.trustedScheme = proto, true
			if (r.TLS != nil) != (proto == "https") {
				// php_fastcgi tells PHP the connection's own TLS state
				// (HTTPS=on), which Yii reads before X-Forwarded-Proto:
				// key it when it disagrees with the proxy's scheme.
				extra = append(extra, "conn-tls="+strconv.FormatBool(r.TLS != nil))
			}
		}
		if v := r.Header.Values("X-Forwarded-Host"); len(v) > 0 {
			xfh := strings.ToLower(strings.TrimSpace(v[0]))
			if !validHost(xfh) {
				return "", upstreamSpec{}, "forwarded-host"
			}
			spec.setHeader("X-Forwarded-Host", xfh)
			extra = append(extra, "xfh="+xfh)
		}
	}
	key = h.keys.Key(spec.scheme, r.Host, lr.URL.EscapedPath(), lr.URL.RawQuery)
	spec.host = keyHost(key)
	if i := strings.IndexByte(key, '?'); i >= 0 {
		spec.query = key[i+1:]
	}
	spec.sendQuery = spec.query
	if lr != r && (r.URL.EscapedPath() != lr.URL.EscapedPath() || r.URL.RawQuery != lr.URL.RawQuery) {
		// A rewrite before this handler decides the path and query sent
		// upstream; it may depend on more than the URL (a header
		// matcher), so what it produced is keyed too.
		if r.URL.RawQuery != lr.URL.RawQuery {
			spec.sendQuery = h.keys.Query(r.URL.RawQuery)
		}
		extra = append(extra, "rw="+r.URL.EscapedPath()+"?"+spec.sendQuery)
	}
	// Yii's Request::getIsAjax(): templates commonly render a partial for
	// XMLHttpRequest ("load more"), so it is keyed, as Yii reads it.
	if r.Header.Get("X-Requested-With") == "XMLHttpRequest" {
		spec.setHeader("X-Requested-With", "XMLHttpRequest")
		extra = append(extra, "ajax")
	}
	for _, name := range h.KeyHeaders {
		v := normalizeHeaderValue(name, r.Header.Values(name))
		if v != "" {
			spec.setHeader(name, v)
		}
		extra = append(extra, "h:"+name+"="+v)
	}
	if len(h.KeyCookies) > 0 {
		cookie := h.keyedCookies(r)
		if cookie != "" {
			spec.setHeader("Cookie", cookie)
		}
		extra = append(extra, "c:"+cookie)
	}
	if len(extra) > 0 {
		key += "\x00" + strings.Join(extra, "\x00")
	}
	return key, spec, ""
}

// setHeader sets a keyed header to forward.
func (s *upstreamSpec) setHeader(name, value string) {
	if s.header == nil {
		s.header = make(http.Header, 2)
	}
	s.header[name] = []string{value}
}

// trustedProxy reports whether Caddy's server trusts the request's peer as
// a proxy (trusted_proxies), so its X-Forwarded-* headers are meaningful.
func trustedProxy(r *http.Request) bool {
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted
}

// validHost reports whether h is a plain host[:port] (letters, digits,
// "-", ".", ":" and IPv6 brackets), safe to key and forward.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// keyHost returns the host of a cache key ("scheme://host/path...").
func keyHost(key string) string {
	_, rest, _ := strings.Cut(key, "://")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[:i]
	}
	return rest
}

// keyedCookies returns the Cookie header to forward: the operator's keyed
// cookies (KeyCookies) as PHP would read them (first of duplicates wins,
// names normalized), in configuration order.
func (h *Handler) keyedCookies(r *http.Request) string {
	var b strings.Builder
	for _, want := range h.KeyCookies {
		for _, line := range r.Header["Cookie"] {
			found := false
			for line != "" {
				var piece string
				piece, line, _ = strings.Cut(line, ";")
				name, value, _ := strings.Cut(piece, "=")
				if httpcache.PHPCookieName(name) != want {
					continue
				}
				if b.Len() > 0 {
					b.WriteString("; ")
				}
				b.WriteString(want)
				b.WriteByte('=')
				b.WriteString(strings.TrimSpace(value))
				found = true
				break
			}
			if found {
				break
			}
		}
	}
	return b.String()
}

// caseInsensitiveFields are request fields whose tokens compare without
// case, so Vary matching may lower-case them (RFC 9110 §12.5).
var caseInsensitiveFields = map[string]bool{
	"Accept":          true,
	"Accept-Charset":  true,
	"Accept-Language": true,
	"Accept-Encoding": true,
}

// normalizeHeaderValue joins a request field's lines into one canonical
// value: list items trimmed of white space (also around ";" and "="), empty
// items dropped, order kept (it carries preference), tokens lower-cased for
// fields whose values are case-insensitive (RFC 9111 §4.1 allows
// normalizing before Vary matching). Equivalent requests share a variant,
// and the upstream receives the normalized value it was keyed by.
func normalizeHeaderValue(name string, values []string) string {
	if len(values) == 0 {
		return ""
	}
	fold := caseInsensitiveFields[name]
	if len(values) == 1 && alreadyNormal(values[0], fold) {
		// The common case on a Vary'd hit ("de", "en-us"): no allocation.
		return values[0]
	}
	var b strings.Builder
	for _, line := range values {
		for _, item := range strings.Split(line, ",") {
			item = strings.Trim(item, " \t")
			if item == "" {
				continue
			}
			if strings.ContainsAny(item, ";=") {
				parts := strings.Split(item, ";")
				for i, p := range parts {
					k, v, hasEq := strings.Cut(strings.Trim(p, " \t"), "=")
					p = strings.Trim(k, " \t")
					if hasEq {
						p += "=" + strings.Trim(v, " \t")
					}
					parts[i] = p
				}
				item = strings.Join(parts, ";")
			}
			if fold {
				item = strings.ToLower(item)
			}
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(item)
		}
	}
	return b.String()
}

// alreadyNormal reports whether a single field line is its own normal
// form: no list separators, parameters or white space to trim, and no
// upper case in a case-insensitive field.
func alreadyNormal(v string, fold bool) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == ',' || c == ';' || c == '=' || c == ' ' || c == '\t':
			return false
		case fold && 'A' <= c && c <= 'Z':
			return false
		}
	}
	return true
}

// varyValue is the value of request field name that selects a stored
// variant: the value the upstream is sent for it. Cookie is the keyed
// cookies only (visitors' other cookies never reach the upstream), and
// Authorization only on the GraphQL path (elsewhere it bypasses).
func (h *Handler) varyValue(r *http.Request, name string) string {
	switch name {
	case "Cookie":
		if len(h.KeyCookies) == 0 {
			return ""
		}
		return h.keyedCookies(r)
	case "Authorization":
		if h.GraphQL == "" || lookupRequest(r).URL.Path != h.GraphQL {
			return ""
		}
	}
	return normalizeHeaderValue(name, r.Header.Values(name))
}

// upstreamRequest builds the request sent upstream for a cacheable request
// from spec alone (plus the headers the stored Vary marker names, which
// select the variant key): GET (or a keyed GraphQL POST), the key's host,
// the path the route rewrote to and the key's normalized query, the keyed
// headers, and no body, cookie, credential or forwarding header of the
// visitor. Caddy's own request state (TLS, the client address, the route's
// variables) is kept; the original request Caddy hands to php_fastcgi
// (REQUEST_URI, HTTP_* variables) is replaced by the same keyed view.
func (h *Handler) upstreamRequest(ctx context.Context, r *http.Request, spec *upstreamSpec, vary []string) *http.Request {
	hdr := make(http.Header, len(spec.header)+len(vary)+2)
	for name, v := range spec.header {
		hdr[name] = v
	}
	for _, name := range vary {
		if _, keyed := hdr[name]; keyed {
			continue
		}
		if v := h.varyValue(r, name); v != "" {
			hdr[name] = []string{v}
		}
	}
	if spec.trustedScheme {
		hdr["X-Forwarded-Proto"] = []string{spec.scheme}
	}
	if h.esiOn && spec.body == nil {
		// A constant (not the visitor's): craftedge assembles ESI.
		hdr["Surrogate-Capability"] = []string{surrogateCapability}
	}

	lr := lookupRequest(r)
	u := &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: spec.sendQuery}
	orig := &url.URL{Path: lr.URL.Path, RawPath: lr.URL.RawPath, RawQuery: spec.query}

	method := http.MethodGet
	if spec.body != nil {
		method = http.MethodPost
	}
	build := func(ctx context.Context, u *url.URL, hdr http.Header) *http.Request {
		up := r.WithContext(ctx) // shallow: every field below is replaced
		up.Method = method
		up.URL = u
		up.Host = spec.host
		up.Proto, up.ProtoMajor, up.ProtoMinor = "HTTP/1.1", 1, 1
		up.Header = hdr
		up.Trailer = nil
		up.TransferEncoding = nil
		up.Close = false
		up.Form, up.PostForm, up.MultipartForm = nil, nil, nil
		up.RequestURI = ""
		up.Pattern = ""
		if spec.body != nil {
			body := spec.body
			up.ContentLength = int64(len(body))
			up.Body = io.NopCloser(bytes.NewReader(body))
			up.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		} else {
			up.Body = http.NoBody
			up.ContentLength = 0
			up.GetBody = nil
		}
		return up
	}
	origReq := build(ctx, orig, hdr.Clone())
	ctx = context.WithValue(ctx, caddyhttp.OriginalRequestCtxKey, *origReq)
	return build(ctx, u, hdr)
}

// compileKeyedFields validates and canonicalizes KeyHeaders and KeyCookies.
func (h *Handler) compileKeyedFields() error {
	for i, name := range h.KeyHeaders {
		if err := keyHeaderError(name); err != nil {
			return fmt.Errorf("craftedge: %w", err)
		}
		h.KeyHeaders[i] = http.CanonicalHeaderKey(name)
	}
	for _, name := range h.KeyCookies {
		if err := keyCookieError(name); err != nil {
			return fmt.Errorf("craftedge: %w", err)
		}
	}
	return nil
}

// keyHeaderError says why a key_header name cannot be keyed, or nil.
func keyHeaderError(name string) error {
	if !validToken(name) {
		return fmt.Errorf("key_header %q is not a valid header name", name)
	}
	switch name = http.CanonicalHeaderKey(name); name {
	case "Cookie":
		return fmt.Errorf("key_header Cookie: key on named cookies with key_cookie instead (whole Cookie headers are per visitor)")
	case "Authorization", "Host", "Content-Length", "Content-Type", "Transfer-Encoding", "Connection":
		return fmt.Errorf("key_header %s cannot be keyed", name)
	}
	return nil
}

// keyCookieError says why a key_cookie name cannot be keyed, or nil.
func keyCookieError(name string) error {
	if !validToken(name) || httpcache.PHPCookieName(name) != name {
		return fmt.Errorf("key_cookie %q is not a cookie name PHP reads as such (letters, digits, \"-_\")", name)
	}
	return nil
}

// validToken reports whether s is a non-empty RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// specFor returns the upstreamSpec of a miss (attached by ServeHTTP). A
// request without one (a caller outside ServeHTTP) gets the spec of its
// key recomputed, so nothing unkeyed is ever sent for lack of it.
func (h *Handler) specFor(r *http.Request, key string) *upstreamSpec {
	if spec := specOf(r); spec != nil {
		return spec
	}
	_, spec, reason := h.requestKey(r, lookupRequest(r))
	if reason != "" {
		spec = upstreamSpec{scheme: "http", host: keyHost(key)}
	}
	return &spec
}

// storedVary returns the request fields the stored Vary marker of key
// names (nil when there is none): the upstream is sent the request's
// values of those, which select the variant the response is stored as.
func (h *Handler) storedVary(key string) []string {
	raw, ok := h.app.MemoryTier().Get(key)
	if !ok {
		return nil
	}
	var marker pagecache.Entry
	if marker.Decode(raw) != nil || marker.Flags&pagecache.FlagVaryMarker == 0 {
		return nil
	}
	return marker.Vary
}
