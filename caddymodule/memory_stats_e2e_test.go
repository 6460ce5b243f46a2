package caddymodule

import (
	"encoding/json"
	"net/http"
	"testing"
)

// memoryHealth reads the memory part of /craftedge/health.
func (g *gateway) memoryHealth() (bytes, allocated, maxBytes, entries int64) {
	g.t.Helper()
	r := g.admin(http.MethodGet, "/craftedge/health", "")
	wantStatus(g.t, r, 200)
	var h struct {
		Memory struct {
			Entries        int64 `json:"entries"`
			Bytes          int64 `json:"bytes"`
			AllocatedBytes int64 `json:"allocated_bytes"`
			MaxBytes       int64 `json:"max_bytes"`
		} `json:"memory"`
	}
	if err := json.Unmarshal([]byte(r.body), &h); err != nil {
		g.t.Fatalf("health is not JSON: %v: %s", err, r.body)
	}
	return h.Memory.Bytes, h.Memory.AllocatedBytes, h.Memory.MaxBytes, h.Memory.Entries
}

// The memory tier reports the bytes its entries hold, not the capacity
// bigcache allocates up front (reported apart as allocated_bytes), in
// /craftedge/health and in craftedge_memory_bytes; a purge takes the
// purged entries out at once.
func TestMemoryBytesAreBytesInUse(t *testing.T) {
	o := newTestOrigin(t)
	o.handle("/small", pageHandler("small", "entry:1"))
	o.handle("/other", pageHandler("other", "entry:2"))
	g := startGateway(t, o, gatewayOptions{})

	bytes, allocated, maxBytes, entries := g.memoryHealth()
	if bytes != 0 || entries != 0 {
		t.Fatalf("empty tier: bytes %d, entries %d; want 0, 0", bytes, entries)
	}
	if maxBytes != 16<<20 || allocated <= 0 || allocated > maxBytes {
		t.Fatalf("allocated_bytes %d, max_bytes %d: want 0 < allocated <= max = 16MiB", allocated, maxBytes)
	}

	wantCacheStatus(t, g.get("/small"), "craftedge; fwd=miss; stored")
	one, allocated1, _, entries := g.memoryHealth()
	page := int64(len(htmlPage("small")))
	if entries != 1 || one < page || one > page+2048 {
		t.Fatalf("one entry of a %d-byte page: bytes %d, entries %d; want the page plus its key and headers", page, one, entries)
	}
	if allocated1 != allocated {
		t.Fatalf("allocated_bytes moved from %d to %d on one store", allocated, allocated1)
	}
	if m := g.scrape("craftedge_memory_bytes"); m != float64(one) {
		t.Fatalf("craftedge_memory_bytes = %v, health says %d", m, one)
	}
	if m := g.scrape("craftedge_memory_allocated_bytes"); m != float64(allocated) {
		t.Fatalf("craftedge_memory_allocated_bytes = %v, health says %d", m, allocated)
	}

	// Storing the same key again replaces its bytes; another key adds.
	g.admin(http.MethodPost, "/craftedge/purge", `{"urls":["`+siteAddr+`/small"]}`)
	if b, _, _, n := g.memoryHealth(); b != 0 || n != 0 {
		t.Fatalf("after purging the only entry: bytes %d, entries %d; want 0, 0", b, n)
	}
	g.get("/small")
	g.get("/other")
	two, _, _, n := g.memoryHealth()
	if n != 2 || two <= one || two > 2*one+64 {
		t.Fatalf("two entries: bytes %d, entries %d (one entry was %d bytes)", two, n, one)
	}
	g.admin(http.MethodPost, "/craftedge/purge", `{"tags":["entry:2"]}`)
	if b, _, _, n := g.memoryHealth(); b != one || n != 1 {
		t.Fatalf("after purging entry:2: bytes %d, entries %d; want %d, 1", b, n, one)
	}
	g.admin(http.MethodPost, "/craftedge/purge", `{"all":true}`)
	if b, _, _, n := g.memoryHealth(); b != 0 || n != 0 {
		t.Fatalf("after purging all: bytes %d, entries %d; want 0, 0", b, n)
	}
}
