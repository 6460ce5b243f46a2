package cachehandler

import (
	"net/http"
	"strings"
	"testing"

	"github.com/craftedge/craftedge/pagecache"
)

// A hit reads the page's entry, then assembles it. A purge of the page
// that runs between the two (the purge is whole before the assembly reads
// anything more) must not leave a memo of the purged page: the memo is
// made under the purge epoch read before the page's entry was read, so it
// is checked, not served, after the purge. The interleaving is made
// deterministic by running the hit's two steps by hand.
func TestESIMemoOfAPagePurgedBeforeItsAssembly(t *testing.T) {
	h, next := newESIBenchHandler(t)
	r := benchRequest("")
	r.URL.Path = "/blog/esi"
	w := &benchWriter{h: make(http.Header)}
	if err := h.ServeHTTP(w, r, next); err != nil || w.status != 200 {
		t.Fatalf("first request: status %d err %v", w.status, err)
	}

	// The hit's lookup, then the purge of the page (not its fragments),
	// then the hit's assembly.
	mem := h.app.MemoryTier()
	key, _, _ := h.requestKey(r, r)
	epoch := mem.Epoch()
	var e pagecache.Entry
	_, _, found := h.lookup(r, key, &e)
	if !found || e.ESI == nil {
		t.Fatal("the page is not stored with its template")
	}
	if n := mem.PurgeTags([]string{"entry:1"}); n != 1 {
		t.Fatalf("purge removed %d entries, want the page", n)
	}
	w.reset()
	h.writeAssembled(w, r, next, &e, nowFunc(), statusHit, key, epoch)

	w.reset()
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	if cs := w.h.Get("Cache-Status"); strings.HasPrefix(cs, statusHit) {
		t.Fatalf("the purged page was served from a memo made after its lookup: %q", cs)
	}
}
