package cachehandler

import (
	"fmt"
	"math/rand"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// variedPage is an HTML page of about size bytes whose text varies like a
// real page (it compresses about 4x): large enough that the memory tier
// stores its bodies in separate records.
func variedPage(seed int64, size int) string {
	words := strings.Fields("craft entry section field matrix asset category global user element " +
		"template twig query cache tag purge edge page blog product price cart order")
	rnd := rand.New(rand.NewSource(seed))
	var b strings.Builder
	b.WriteString("<!doctype html><html><body>")
	for b.Len() < size {
		fmt.Fprintf(&b, "<p id=%d>", rnd.Intn(1e6))
		for j := 0; j < 12; j++ {
			b.WriteString(words[rnd.Intn(len(words))])
			b.WriteByte(' ')
		}
		b.WriteString("</p>\n")
	}
	b.WriteString("</body></html>")
	return b.String()
}

// A page stored in parts (one record per body) is served to every client
// from the record of its encoding, with the entry's metadata: the right
// body, Content-Encoding, Vary, ETag per variant, 304s, ranges. Its stale
// copy (whole entry) serves when the origin fails; a purge removes every
// part; a new version is never mixed with the old one.
func TestHitsFromPartsRecords(t *testing.T) {
	o := e2e.NewOrigin(t)
	var version atomic.Int64
	var failing atomic.Bool
	o.Handle("/big", func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Tag", "big")
		w.Header().Set("X-Version", fmt.Sprint(version.Load()))
		_, _ = w.Write([]byte(variedPage(version.Load(), 40<<10)))
	})
	// stale_after off: the soft-purged copy never answers before the
	// origin (which one answers first would be timing).
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "stale_after off"})

	check := func(what, status string, v int64) {
		t.Helper()
		want := variedPage(v, 40<<10)
		etags := map[string]bool{}
		for _, tc := range []struct{ accept, coding string }{
			{"", ""},
			{"gzip", "gzip"},
			{"gzip, deflate, br, zstd", "zstd"},
			{"zstd;q=0, gzip", "gzip"},
			{"zstd, gzip;q=0.5", "zstd"},
			{"br", ""},
			{"gzip;q=0.5, identity", ""},
		} {
			r := g.Get("/big", "Accept-Encoding", tc.accept)
			e2e.WantCacheStatus(t, r, status)
			if got := r.Header.Get("Content-Encoding"); got != tc.coding {
				t.Fatalf("%s, Accept-Encoding %q: Content-Encoding %q, want %q", what, tc.accept, got, tc.coding)
			}
			if !strings.Contains(r.Header.Get("Vary"), "Accept-Encoding") || r.Header.Get("X-Version") != fmt.Sprint(v) {
				t.Fatalf("%s, Accept-Encoding %q: headers %v", what, tc.accept, r.Header)
			}
			if r.Header.Get("Content-Length") != fmt.Sprint(len(r.Body)) {
				t.Fatalf("%s: Content-Length %s for %d bytes", what, r.Header.Get("Content-Length"), len(r.Body))
			}
			body := r.Body
			switch tc.coding {
			case "gzip":
				body = e2e.Gunzip(t, body)
			case "zstd":
				body = e2e.Unzstd(t, body)
			}
			if body != want {
				t.Fatalf("%s, Accept-Encoding %q: body is not version %d's", what, tc.accept, v)
			}
			etags[tc.coding+" "+r.Header.Get("Etag")] = true
			// The variant's own ETag gets a 304 from its record.
			nm := g.Get("/big", "Accept-Encoding", tc.accept, "If-None-Match", r.Header.Get("Etag"))
			e2e.WantStatus(t, nm, http.StatusNotModified)
		}
		if len(etags) != 3 {
			t.Fatalf("%s: want one ETag per encoding, got %v", what, etags)
		}
		r := g.Get("/big", "Accept-Encoding", "gzip", "Range", "bytes=0-9")
		e2e.WantStatus(t, r, http.StatusPartialContent)
		if len(r.Body) != 10 || r.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s: range of the gzip variant: %d bytes, %v", what, len(r.Body), r.Header)
		}
	}

	e2e.WantCacheStatus(t, g.Get("/big"), "craftedge; fwd=miss; stored")
	check("hit", "craftedge; hit", 0)

	// A new version replaces every record: a soft purge (the default)
	// marks every record stale, the next request revalidates.
	version.Store(1)
	e2e.Purge(g, `{"tags":["big"]}`)
	e2e.WantCacheStatus(t, g.Get("/big", "Accept-Encoding", "zstd"), "craftedge; fwd=stale; stored")
	check("after purge", "craftedge; hit", 1)

	// Past freshness with the origin failing, the stale copy is read
	// whole and served in every encoding.
	e2e.Advance(2 * time.Minute)
	failing.Store(true)
	for _, accept := range []string{"", "gzip", "zstd"} {
		r := g.Get("/big", "Accept-Encoding", accept)
		e2e.WantCacheStatusPrefix(t, r, "craftedge; fwd=stale")
		if r.Header.Get("Content-Encoding") != accept || r.Header.Get("X-Version") != "1" {
			t.Fatalf("stale copy for %q: %v", accept, r.Header)
		}
	}

	// Under the kill switch the copy is served from the record of the
	// client's encoding, without reading the entry whole.
	g.Reload(e2e.Options{HandlerExtra: "snapshot_only"})
	want := variedPage(1, 40<<10)
	for _, accept := range []string{"", "gzip", "zstd"} {
		r := g.Get("/big", "Accept-Encoding", accept)
		e2e.WantCacheStatus(t, r, "craftedge; hit; detail=stale")
		body := r.Body
		switch accept {
		case "gzip":
			body = e2e.Gunzip(t, body)
		case "zstd":
			body = e2e.Unzstd(t, body)
		}
		if r.Header.Get("Content-Encoding") != accept || body != want {
			t.Fatalf("kill switch, Accept-Encoding %q: %v", accept, r.Header)
		}
	}
}
