package cachehandler

import (
	"net/http"
	"net/url"
	"strings"
)

// invalidatingMethod reports whether a response to method invalidates
// stored responses (RFC 9111 §4.4): every unsafe method, which includes
// methods the cache does not know (RFC 9110 §9.2.1 lists the safe ones).
func invalidatingMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// invalidateAfterUnsafe applies RFC 9111 §4.4 when a non-error response
// (2xx or 3xx) to an unsafe request passes through the handler: the stored
// responses for the target URI (every Vary variant) are removed from the
// memory tier, and so are those of the URIs in the response's Location and
// Content-Location when they have the same origin (scheme and host) as the
// request; other origins are left alone (§4.4: a cache must not invalidate
// them, as that would let one site purge another). Snapshots of those
// paths are marked stale, as a purge does: they are kept, and serve only
// when the live path fails. It runs before the response's headers go to
// the client, so the client's next request does not see the old copy.
// The downstream CDN is not told: it saw the same request.
func (h *Handler) invalidateAfterUnsafe(r *http.Request, code int, hdr http.Header) {
	if code < 200 || code >= 400 || !invalidatingMethod(r.Method) {
		return
	}
	lr := lookupRequest(r)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	target := &url.URL{Scheme: scheme, Host: r.Host, Path: lr.URL.Path, RawPath: lr.URL.RawPath, RawQuery: lr.URL.RawQuery}
	urls := []*url.URL{target}
	for _, name := range []string{"Location", "Content-Location"} {
		v := hdr.Get(name)
		if v == "" {
			continue
		}
		ref, err := url.Parse(v)
		if err != nil {
			continue
		}
		u := target.ResolveReference(ref)
		if strings.EqualFold(u.Scheme, target.Scheme) && strings.EqualFold(u.Host, target.Host) {
			urls = append(urls, u)
		}
	}
	keys := make([]string, 0, len(urls))
	for _, u := range urls {
		keys = append(keys, h.keys.Key(u.Scheme, u.Host, u.EscapedPath(), u.RawQuery))
	}
	h.app.Invalidate(keys)
}
