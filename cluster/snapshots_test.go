package cluster

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/craftedge/craftedge/snapshot"
	"github.com/nats-io/nats.go/jetstream"
)

func startShared(t *testing.T, n *Node, cfg SharedSnapshotsConfig) *SharedSnapshots {
	t.Helper()
	s, err := NewSharedSnapshots(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	waitFor(t, n.Name()+" shared snapshots ready", s.Ready)
	return s
}

func sharedKeys(t *testing.T, s *SharedSnapshots) []string {
	t.Helper()
	var keys []string
	if err := s.Each(context.Background(), func(sn SharedSnapshot) bool { keys = append(keys, sn.Key); return true }); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestSharedSnapshotsImportKeepsPurgeMarks: node b starts (empty local
// store) while Craft is down and imports what a shared. Its own purge
// marks still apply: a page purged after a stored it is stale on b, a
// page stored after the purge is not, and a node that cannot know which
// purges it missed (a gap: a purge-all mark at that time) treats every
// imported copy as stale — served when Craft fails, never as fresh.
func TestSharedSnapshotsImportKeepsPurgeMarks(t *testing.T) {
	srv := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{srv.url()}}, &recorder{})
	sa := startShared(t, a, SharedSnapshotsConfig{})
	t1 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	for _, p := range []SharedSnapshot{
		{Key: "GET https://shop.example/p/1", StoredAt: t1, Tags: []string{"product:1", "host:shop.example"}, Value: []byte("page one")},
		{Key: "GET https://shop.example/p/2", StoredAt: t1.Add(2 * time.Hour), Tags: []string{"product:1"}, Value: []byte("page two")},
		{Key: "GET https://shop.example/p/3", StoredAt: t1, Tags: []string{"product:3"}, Value: []byte("page three")},
	} {
		if !sa.Put(p) {
			t.Fatalf("put %s refused", p.Key)
		}
	}
	if err := sa.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	b := startNode(t, Config{NodeName: "b", URLs: []string{srv.url()}}, &recorder{})
	sb := startShared(t, b, SharedSnapshotsConfig{})
	local, err := snapshot.Open(snapshot.Options{Path: filepath.Join(t.TempDir(), "b.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	// b applied a purge of product:1 at t1+1h (replayed from the purge
	// stream) before importing.
	if err := local.MarkPurged([]string{"product:1"}, t1.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	n := 0
	err = sb.Each(context.Background(), func(s SharedSnapshot) bool {
		n++
		if s.Node != "a" {
			t.Errorf("copy of %s from %q", s.Key, s.Node)
		}
		return local.Put(snapshot.Record{Key: s.Key, StoredAt: s.StoredAt, Tags: s.Tags, Value: s.Value})
	})
	if err != nil || n != 3 {
		t.Fatalf("import: %d copies, %v", n, err)
	}
	if err := local.Flush(); err != nil {
		t.Fatal(err)
	}
	stale := func(key string) bool {
		rec, found, err := local.Get(key)
		if err != nil || !found {
			t.Fatalf("%s not imported: %v", key, err)
		}
		return local.Stale(rec)
	}
	if !stale("GET https://shop.example/p/1") || stale("GET https://shop.example/p/2") || stale("GET https://shop.example/p/3") {
		t.Fatal("imported copies do not follow b's purge marks")
	}
	if err := local.MarkPurgedAll(t1.Add(3 * time.Hour)); err != nil { // a gap
		t.Fatal(err)
	}
	if !stale("GET https://shop.example/p/2") || !stale("GET https://shop.example/p/3") {
		t.Fatal("after a gap an imported copy is not stale")
	}

	// One page read on a local miss.
	got, found, err := sb.Get(context.Background(), "GET https://shop.example/p/3")
	if err != nil || !found || string(got.Value) != "page three" || !got.StoredAt.Equal(t1) || !slices.Equal(got.Tags, []string{"product:3"}) {
		t.Fatalf("Get = %+v %v %v", got, found, err)
	}
	if _, found, err := sb.Get(context.Background(), "GET https://shop.example/none"); found || err != nil {
		t.Fatalf("Get of a missing page: %v %v", found, err)
	}
}

// TestSharedSnapshotsBounded: by count and by bytes the oldest copies go
// first; storing a page again keeps one copy, now the newest.
func TestSharedSnapshotsBounded(t *testing.T) {
	srv := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{srv.url()}}, &recorder{})
	s := startShared(t, a, SharedSnapshotsConfig{MaxCount: 3})
	put := func(s *SharedSnapshots, key string, size int) {
		t.Helper()
		if !s.Put(SharedSnapshot{Key: key, Tags: []string{"t"}, Value: bytes.Repeat([]byte("x"), size)}) {
			t.Fatalf("put %s refused", key)
		}
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		put(s, fmt.Sprintf("k%d", i), 10)
	}
	if got := sharedKeys(t, s); !slices.Equal(got, []string{"k2", "k3", "k4"}) {
		t.Fatalf("by count: %v", got)
	}
	put(s, "k2", 10) // again: one copy, the newest
	if got := sharedKeys(t, s); !slices.Equal(got, []string{"k3", "k4", "k2"}) {
		t.Fatalf("after storing k2 again: %v", got)
	}

	b := startNode(t, Config{NodeName: "b", URLs: []string{srv.url()}, Namespace: "bytes"}, &recorder{})
	sb := startShared(t, b, SharedSnapshotsConfig{MaxBytes: minSharedSnapshotsMaxBytes})
	for i := range 6 {
		put(sb, fmt.Sprintf("b%d", i), 1000) // ~1 KiB each into 4 KiB
	}
	got := sharedKeys(t, sb)
	if len(got) < 2 || len(got) > 4 || got[len(got)-1] != "b5" || slices.Contains(got, "b0") {
		t.Fatalf("by bytes: %v", got)
	}

	// Larger than one NATS message: refused and counted, never split.
	if sb.Put(SharedSnapshot{Key: "huge", Value: make([]byte, 2<<20)}) {
		t.Fatal("a copy over the payload limit was queued")
	}
	if st := sb.Stats(); st.TooLarge != 1 || st.Published != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSharedSnapshotsQueueBoundWithoutNATS(t *testing.T) {
	port := freePort(t)
	a := startNode(t, Config{NodeName: "a", URLs: []string{fmt.Sprintf("nats://127.0.0.1:%d", port)}}, &recorder{})
	s, err := NewSharedSnapshots(a, SharedSnapshotsConfig{QueueSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		s.Put(SharedSnapshot{Key: fmt.Sprint(i), Value: []byte("v")})
	}
	s.Put(SharedSnapshot{Key: "0", Value: []byte("newer")}) // replaces its queued copy
	if st := s.Stats(); st.Queued != 2 || st.Dropped != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, _, err := s.Get(context.Background(), "0"); !ErrNotConnected(err) {
		t.Fatalf("Get without NATS: %v", err)
	}
	if _, err := NewSharedSnapshots(a, SharedSnapshotsConfig{MaxBytes: 10}); err == nil {
		t.Fatal("max_bytes 10 accepted")
	}
}

func TestSharedSnapshotEncoding(t *testing.T) {
	in := SharedSnapshot{Key: "k\x00ey", StoredAt: time.Unix(0, 1733300000123456789), Tags: []string{"a", "", "c"}, Value: []byte{0, 1, 2}}
	out, err := decodeShared(encodeShared(in))
	if err != nil || out.Key != in.Key || !out.StoredAt.Equal(in.StoredAt) || !slices.Equal(out.Tags, in.Tags) || !bytes.Equal(out.Value, in.Value) {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
	for _, bad := range [][]byte{nil, {2}, {1, 200}, {1, 1, 'k', 0, 0}} {
		if _, err := decodeShared(bad); err == nil {
			t.Errorf("%v decoded", bad)
		}
	}
}

// TestEnsureStreamLeavesAMatchingStreamAlone: the limits the server
// stores compare equal to the ones asked for, so a node connecting again
// does not update the stream; other limits do update it.
func TestEnsureStreamLeavesAMatchingStreamAlone(t *testing.T) {
	srv := startServer(t, "solo", "", nil)
	n := startNode(t, Config{NodeName: "a", URLs: []string{srv.url()}}, &recorder{})
	waitState(t, n, StateReady)
	s := startShared(t, n, SharedSnapshotsConfig{})
	o := startOutbox(t, n, OutboxConfig{})
	ctx := context.Background()
	for _, want := range []jetstream.StreamConfig{s.streamConfig(), o.streamConfig(), o.deadStreamConfig()} {
		st, err := n.js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !sameStreamLimits(st.CachedInfo().Config, want) {
			t.Errorf("%s: stored %+v does not match %+v", want.Name, st.CachedInfo().Config, want)
		}
	}
	want := s.streamConfig()
	want.MaxMsgs = 7
	if _, err := n.ensureStreamConfig(ctx, want); err != nil {
		t.Fatal(err)
	}
	st, err := n.js.Stream(ctx, want.Name)
	if err != nil || st.CachedInfo().Config.MaxMsgs != 7 {
		t.Fatalf("changed limit not applied: %v", err)
	}
}
