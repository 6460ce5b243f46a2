package cachehandler

import (
	"encoding/json"
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// Repeated query parameters, keyed as PHP reads them (real PHP behind
// php_fastcgi): PHP's $_GET keeps the last plain value of a name ("a=1&a=2"
// is a=2), a later "a=" replaces an array and a later "a[]" replaces a
// plain value, and "a.b", "a b" and "a_b" are one variable. Every URL gets
// the page PHP renders for that URL itself, whoever asked first (a key
// shared by URLs PHP reads differently would hand one of them the other's
// page), and URLs PHP reads alike share one copy.
func TestRepeatedQueryParamsKeyedAsPHPReadsThem(t *testing.T) {
	g := startPHPGateway(t)
	for _, c := range []struct {
		query, wantGet, wantStatus string
	}{
		{"a=1&a=2", `{"a":"2"}`, "craftedge; fwd=miss; stored"},
		{"a=2", `{"a":"2"}`, "craftedge; hit"},
		{"a[]=1&a=2", `{"a":"2"}`, "craftedge; hit"},
		{"a=2&a[]=1", `{"a":["1"]}`, "craftedge; fwd=miss; stored"},
		{"a[]=1", `{"a":["1"]}`, "craftedge; hit"},
		{"a[]=1&a[]=2", `{"a":["1","2"]}`, "craftedge; fwd=miss; stored"},
		{"a[]=2&a[]=1", `{"a":["2","1"]}`, "craftedge; fwd=miss; stored"},
		{"a.b=1&a_b=2", `{"a_b":"2"}`, "craftedge; fwd=miss; stored"},
		{"a_b=2&a.b=1", `{"a_b":"1"}`, "craftedge; fwd=miss; stored"},
		{"a_b=2", `{"a_b":"2"}`, "craftedge; hit"},
		{"a%20b=1", `{"a_b":"1"}`, "craftedge; fwd=miss; stored"},
		{"x=1&a=1&x=2&a=2", `{"x":"2","a":"2"}`, "craftedge; fwd=miss; stored"},
		{"a=2&x=2", `{"a":"2","x":"2"}`, "craftedge; hit"},
	} {
		r := g.Get("/page?" + c.query)
		e2e.WantStatus(t, r, 200)
		v := parsePHPView(t, r.Body)
		got, err := json.Marshal(v.Get)
		if err != nil {
			t.Fatal(err)
		}
		var want map[string]any
		if err := json.Unmarshal([]byte(c.wantGet), &want); err != nil {
			t.Fatal(err)
		}
		wantJSON, _ := json.Marshal(want)
		if string(got) != string(wantJSON) {
			t.Errorf("?%s: served the page PHP renders for $_GET %s, want %s (Cache-Status %q)",
				c.query, got, wantJSON, r.Header.Get("Cache-Status"))
		}
		if cs := r.Header.Get("Cache-Status"); cs != c.wantStatus {
			t.Errorf("?%s: Cache-Status %q, want %q", c.query, cs, c.wantStatus)
		}
	}
}
