package caddymodule

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// memoryHealth reads the memory part of /craftedge/health.
func memoryHealth(t *testing.T, g *e2e.Gateway) (bytes, allocated, maxBytes, entries int64) {
	t.Helper()
	r := g.Admin(http.MethodGet, "/craftedge/health", "")
	e2e.WantStatus(t, r, 200)
	var h struct {
		Memory struct {
			Entries        int64 `json:"entries"`
			Bytes          int64 `json:"bytes"`
			AllocatedBytes int64 `json:"allocated_bytes"`
			MaxBytes       int64 `json:"max_bytes"`
		} `json:"memory"`
	}
	if err := json.Unmarshal([]byte(r.Body), &h); err != nil {
		t.Fatalf("health is not JSON: %v: %s", err, r.Body)
	}
	return h.Memory.Bytes, h.Memory.AllocatedBytes, h.Memory.MaxBytes, h.Memory.Entries
}

// The memory tier reports the bytes its entries hold (as its store weighs
// them, plus the tag index's share) in /craftedge/health and in
// craftedge_memory_bytes, and what its store holds as allocated_bytes; a
// purge takes the purged entries out at once.
func TestMemoryBytesAreBytesInUse(t *testing.T) {
	o := e2e.NewOrigin(t)
	o.Handle("/small", e2e.PageHandler("small", "entry:1"))
	o.Handle("/other", e2e.PageHandler("other", "entry:2"))
	g := e2e.StartGateway(t, o, e2e.Options{})

	bytes, allocated, maxBytes, entries := memoryHealth(t, g)
	if bytes != 0 || entries != 0 {
		t.Fatalf("empty tier: bytes %d, entries %d; want 0, 0", bytes, entries)
	}
	if maxBytes != 16<<20 || allocated != 0 {
		t.Fatalf("allocated_bytes %d, max_bytes %d: want 0 and 16MiB", allocated, maxBytes)
	}

	e2e.WantCacheStatus(t, g.Get("/small"), "craftedge; fwd=miss; stored")
	one, allocated1, _, entries := memoryHealth(t, g)
	page := int64(len(e2e.HTMLPage("small")))
	if entries != 1 || one < page || one > page+2048 {
		t.Fatalf("one entry of a %d-byte page: bytes %d, entries %d; want the page plus its key and headers", page, one, entries)
	}
	if allocated1 < page || allocated1 >= one {
		t.Fatalf("allocated_bytes %d for one entry of a %d-byte page: want at least the page, less than bytes %d (which add the tag index)", allocated1, page, one)
	}
	if m := scrape(g, "craftedge_memory_bytes"); m != float64(one) {
		t.Fatalf("craftedge_memory_bytes = %v, health says %d", m, one)
	}
	if m := scrape(g, "craftedge_memory_allocated_bytes"); m != float64(allocated1) {
		t.Fatalf("craftedge_memory_allocated_bytes = %v, health says %d", m, allocated1)
	}

	// Storing the same key again replaces its bytes; another key adds.
	g.Admin(http.MethodPost, "/craftedge/purge", `{"urls":["`+e2e.SiteAddr+`/small"],"mode":"hard"}`)
	if b, _, _, n := memoryHealth(t, g); b != 0 || n != 0 {
		t.Fatalf("after purging the only entry: bytes %d, entries %d; want 0, 0", b, n)
	}
	g.Get("/small")
	g.Get("/other")
	two, _, _, n := memoryHealth(t, g)
	if n != 2 || two <= one || two > 2*one+64 {
		t.Fatalf("two entries: bytes %d, entries %d (one entry was %d bytes)", two, n, one)
	}
	// A soft purge (the default) keeps the entry, stale, with its bytes:
	// the stored bytes and entries do not change.
	g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:2"]}`)
	if b, _, _, n := memoryHealth(t, g); b != two || n != 2 {
		t.Fatalf("after purging entry:2 softly: bytes %d, entries %d; want %d, 2", b, n, two)
	}
	g.Admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:2"],"mode":"hard"}`)
	if b, _, _, n := memoryHealth(t, g); b != one || n != 1 {
		t.Fatalf("after purging entry:2: bytes %d, entries %d; want %d, 1", b, n, one)
	}
	g.Admin(http.MethodPost, "/craftedge/purge", `{"all":true}`)
	if b, _, _, n := memoryHealth(t, g); b != 0 || n != 0 {
		t.Fatalf("after purging all: bytes %d, entries %d; want 0, 0", b, n)
	}
}
