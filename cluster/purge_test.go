package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPurgeReachesOtherNodesNotItsPublisher(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	recs := []*recorder{{}, {}, {}}
	var nodes []*Node
	for i, r := range recs {
		nodes = append(nodes, startNode(t, Config{NodeName: fmt.Sprintf("n%d", i), URLs: []string{s.url()}}, r))
	}
	for _, n := range nodes {
		waitState(t, n, StateReady)
	}
	nodes[0].Publish(Purge{Tags: []string{"entry:1"}, Source: "admin_api"})
	nodes[0].Publish(Purge{Tags: []string{"entry:2"}})
	for _, r := range recs[1:] {
		waitFor(t, "entry:2 applied", func() bool { return r.hasPurge("entry:2") })
	}
	waitFor(t, "published", func() bool { return nodes[0].Stats().Published == 2 })
	// The publisher's own messages are skipped: its cursor passes them.
	waitFor(t, "n0 cursor", func() bool { return nodes[0].Stats().Cursor == 2 })
	if got := recs[0].eventList(); slices.Contains(got, "purge:entry:1") {
		t.Fatalf("publisher applied its own purge: %v", got)
	}
	r := recs[1]
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.purges) != 2 || r.purges[0].Tags[0] != "entry:1" || r.purges[0].Node != "n0" || r.purges[0].Source != "admin_api" || r.purges[0].At.IsZero() || r.purges[0].Seq != 1 {
		t.Fatalf("n1 got %+v", r.purges)
	}
}

func TestSplitKeepsEveryEntryUnderTheLimit(t *testing.T) {
	p := Purge{Source: "sync"}
	for i := range 500 {
		p.Tags = append(p.Tags, fmt.Sprintf("vendor:shop:product:%06d", i))
	}
	p.Hosts = []string{"example.com"}
	parts, err := split(p, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 2 {
		t.Fatalf("expected several parts, got %d", len(parts))
	}
	var tags, hosts []string
	for _, d := range parts {
		if len(d) > 2048 {
			t.Fatalf("part of %d bytes", len(d))
		}
		var q Purge
		if err := jsonUnmarshal(d, &q); err != nil {
			t.Fatal(err)
		}
		tags = append(tags, q.Tags...)
		hosts = append(hosts, q.Hosts...)
	}
	if !slices.Equal(tags, p.Tags) || !slices.Equal(hosts, p.Hosts) {
		t.Fatalf("entries lost: %d tags, hosts %v", len(tags), hosts)
	}
	if _, err := split(Purge{Tags: []string{string(make([]byte, 4096))}}, 2048); err == nil {
		t.Fatal("an entry over the limit must be refused")
	}
}

func jsonUnmarshal(d []byte, v any) error { return json.Unmarshal(d, v) }

// memCursors is a caller's CursorStore (craftedge would keep it in its
// bbolt file).
type memCursors struct {
	mu     sync.Mutex
	c      Cursor
	ok     bool
	stores int
}

func (m *memCursors) LoadCursor(context.Context) (Cursor, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.c, m.ok, nil
}

func (m *memCursors) StoreCursor(_ context.Context, c Cursor) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.c, m.ok = c, true
	m.stores++
	return nil
}

// TestRestartReplaysFromTheCallersCursor: b keeps its cursor in the
// caller's store; after a restart it replays what it missed, no gap.
func TestRestartReplaysFromTheCallersCursor(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	ra, rb := &recorder{}, &recorder{}
	store := &memCursors{}
	a := startNode(t, Config{NodeName: "a", URLs: []string{s.url()}}, ra)
	bcfg := Config{NodeName: "b", URLs: []string{s.url()}, ReconnectWait: 50 * time.Millisecond}
	b, err := Start(bcfg, rb.handlers(), Options{Cursors: store})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	a.Publish(Purge{Tags: []string{"one"}})
	waitFor(t, "b applies one", func() bool { return rb.hasPurge("one") })
	b.Close()
	if c, ok, _ := store.LoadCursor(context.Background()); !ok || c.Seq != 1 {
		t.Fatalf("stored cursor %+v %v", c, ok)
	}
	a.Publish(Purge{Tags: []string{"two"}})
	a.Publish(Purge{Tags: []string{"three"}})
	waitFor(t, "a published", func() bool { return a.Stats().Published == 3 })

	rb.reset()
	b, err = Start(bcfg, rb.handlers(), Options{Cursors: store})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitState(t, b, StateReady)
	if got := rb.eventList(); !slices.Equal(got, []string{"state:catching_up", "purge:two", "purge:three", "state:ready"}) {
		t.Fatalf("b after a restart: %v", got)
	}

	// A reload hands the node to new handlers.
	var got atomic.Value
	b.SetHandlers(Handlers{Purge: func(p Purge) error { got.Store(p.Tags[0]); return nil }})
	a.Publish(Purge{Tags: []string{"four"}})
	waitFor(t, "new handler gets four", func() bool { return got.Load() == "four" })
}
