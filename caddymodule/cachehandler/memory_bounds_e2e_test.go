package cachehandler

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/e2e"
)

// With max_entry_size 1GiB and memory 16MiB (the tier stores entries up to
// 1 MiB) a large response streams through: the client gets its first
// megabytes while the origin is still sending, instead of the handler
// buffering up to 1 GiB of a response it could never store.
func TestMaxEntrySizeClampedToMemoryTier(t *testing.T) {
	o := e2e.NewOrigin(t)
	clientGotStart := make(chan struct{})
	var bufferedWhole atomic.Bool
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	o.Handle("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for range 3 {
			_, _ = w.Write(chunk)
		}
		w.(http.Flusher).Flush()
		// Readiness, not timing: the rest is sent once the client has the
		// first part (or after a generous deadline, which fails the test
		// below rather than hanging it).
		select {
		case <-clientGotStart:
		case <-time.After(8 * time.Second):
			bufferedWhole.Store(true)
		case <-r.Context().Done():
			return
		}
		for range 2 {
			_, _ = w.Write(chunk)
		}
	})
	g := e2e.StartGateway(t, o, e2e.Options{HandlerExtra: "max_entry_size 1GiB"})
	resp, err := g.Client.Get(e2e.SiteAddr + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 2<<20)); err != nil {
		t.Fatalf("reading the first 2 MiB: %v", err)
	}
	if bufferedWhole.Load() {
		t.Fatal("the first 2 MiB reached the client only after the origin gave up waiting: the response was buffered whole")
	}
	close(clientGotStart)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if n := 2<<20 + len(rest); n != 5<<20 {
		t.Fatalf("got %d bytes, want %d", n, 5<<20)
	}
	if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "too-large") {
		t.Fatalf("Cache-Status = %q, want the too-large reason", cs)
	}
}
