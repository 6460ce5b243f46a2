package vendorsim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestIndexAPI(t *testing.T) {
	sim := New(Options{})
	t.Cleanup(func() { _ = sim.Close() })
	srv, err := sim.Start("")
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, key, token, body string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL()+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if key != "" {
			req.Header.Set(HeaderIdempotencyKey, key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	tok := DefaultIndexToken
	if st, _, _ := do("GET", "/indexes/p/documents", "", "wrong", ""); st != 401 {
		t.Errorf("wrong token: %d", st)
	}
	if st, _, _ := do("POST", "/indexes/p/documents", "k1", tok, `[{"id":"1","title":"Blue mug"},{"id":2,"title":"Red cup"}]`); st != 202 {
		t.Fatalf("POST: %d", st)
	}
	st, _, h := do("POST", "/indexes/p/documents", "k1", tok, `[{"id":"1","title":"Blue mug"},{"id":2,"title":"Red cup"}]`)
	if st != 202 || h.Get(HeaderIdempotentReplayed) != "true" {
		t.Errorf("repeat: %d, replayed %q", st, h.Get(HeaderIdempotentReplayed))
	}
	if st, _, _ := do("POST", "/indexes/p/documents", "k1", tok, `[{"id":"3"}]`); st != 422 {
		t.Errorf("key reused for another request: %d", st)
	}
	if st, _, _ := do("PUT", "/indexes/p/documents/3", "", tok, `{"id":"4"}`); st != 400 {
		t.Errorf("PUT with another id: %d", st)
	}
	if st, _, _ := do("POST", "/indexes/p/documents", "", tok, `[{"title":"no id"}]`); st != 400 {
		t.Errorf("document without id: %d", st)
	}
	if st, _, _ := do("PUT", "/indexes/p/documents/3", "", tok, `{"title":"Green mug"}`); st != 200 {
		t.Errorf("PUT: %d", st)
	}
	_, body, _ := do("GET", "/indexes/p/search?q=MUG", "", tok, "")
	var res struct{ Hits []map[string]any }
	_ = json.Unmarshal([]byte(body), &res)
	if len(res.Hits) != 2 || res.Hits[0]["id"] != "1" || res.Hits[1]["id"] != "3" {
		t.Errorf("search: %s", body)
	}
	if st, _, _ := do("DELETE", "/indexes/p/documents/2", "", tok, ""); st != 200 {
		t.Errorf("DELETE: %d", st)
	}
	if st, _, _ := do("DELETE", "/indexes/p/documents/2", "", tok, ""); st != 404 {
		t.Errorf("DELETE of an absent document: %d", st)
	}
	if n := sim.IndexDocuments("p"); n != 2 {
		t.Errorf("%d documents, want 2", n)
	}
	var ops []string
	for _, w := range sim.IndexWrites() {
		ops = append(ops, w.Op+":"+w.ID)
	}
	if got := strings.Join(ops, ","); got != "upsert:1,upsert:2,upsert:3,delete:2" {
		t.Errorf("effects %s", got)
	}
	// Chaos applies: an outage answers nothing and changes nothing.
	sim.Chaos().Update(func(c *ChaosConfig) { c.ErrorRate = 1 })
	if st, _, _ := do("PUT", "/indexes/p/documents/9", "", tok, `{}`); st < 500 {
		t.Errorf("PUT during errors: %d", st)
	}
	if _, ok := sim.IndexDocument("p", "9"); ok {
		t.Error("a failed write had an effect")
	}
}
