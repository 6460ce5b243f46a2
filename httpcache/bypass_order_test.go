package httpcache

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestBypassCheckPrecedence pins the rule docs/guides/caching.md states:
// when several bypass reasons apply, the first in the table wins (method,
// cp, action, a GraphQL mutation in the query, token, preview, session,
// identity, authorization, then the bypass_* extras path, cookie, query,
// header).
func TestBypassCheckPrecedence(t *testing.T) {
	rules := BypassRules{Paths: []string{"/account*"}, Cookies: []string{"cart"}, Query: []string{"nocache"}, Headers: []string{"X-No-Cache"}}
	if err := rules.Compile(); err != nil {
		t.Fatal(err)
	}
	req := func(method, target string, hdr ...string) *http.Request {
		r := httptest.NewRequest(method, target, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		return r
	}
	all := []string{"Cookie", "CraftSessionId=x; 1a_identity=y; cart=1", "Authorization", "Bearer t", "X-Craft-Preview", "1", "X-No-Cache", "1"}
	for _, c := range []struct {
		name string
		r    *http.Request
		want string
	}{
		{"the demo's control-panel save", req(http.MethodPost, "/admin/entries/1"), ReasonMethod},
		{"everything on a POST", req(http.MethodPost, "/admin/x?token=1&nocache=1", all...), ReasonMethod},
		{"cp before action, token and cookies", req(http.MethodGet, "/admin/actions/x?token=1", all...), ReasonCP},
		{"action before a GraphQL mutation in the query", req(http.MethodGet, "/actions/x?query=mutation+x", all...), ReasonAction},
		{"a GraphQL mutation in the query before token", req(http.MethodGet, "/p?query=mutation+x&token=1", all...), ReasonGraphQLMutation},
		{"action before token", req(http.MethodGet, "/actions/x?token=1", all...), ReasonAction},
		{"token before preview", req(http.MethodGet, "/p?token=1", all...), ReasonToken},
		{"preview before session", req(http.MethodGet, "/account/p?nocache=1", all...), ReasonPreview},
		{"session before identity", req(http.MethodGet, "/account/p", "Cookie", "CraftSessionId=x; 1a_identity=y", "Authorization", "x"), ReasonSession},
		{"identity before authorization", req(http.MethodGet, "/account/p", "Cookie", "1a_identity=y", "Authorization", "x"), ReasonIdentity},
		{"authorization before the extras", req(http.MethodGet, "/account/p?nocache=1", "Cookie", "cart=1", "Authorization", "x", "X-No-Cache", "1"), ReasonAuthorization},
		{"path before cookie", req(http.MethodGet, "/account/p?nocache=1", "Cookie", "cart=1", "X-No-Cache", "1"), ReasonPath},
		{"cookie before query", req(http.MethodGet, "/p?nocache=1", "Cookie", "cart=1", "X-No-Cache", "1"), ReasonCookie},
		{"query before header", req(http.MethodGet, "/p?nocache=1", "X-No-Cache", "1"), ReasonQuery},
		{"header last", req(http.MethodGet, "/p", "X-No-Cache", "1"), ReasonHeader},
	} {
		if got := rules.Check(c.r); got != c.want {
			t.Errorf("%s: Check = %q, want %q", c.name, got, c.want)
		}
	}
}
