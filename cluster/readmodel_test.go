package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// recordStore stands in for a node's vendors.Records: it keeps the
// latest version per record with the same rule (RecordVersion.supersedes
// mirrors Records.Put).
type recordStore struct {
	mu   sync.Mutex
	recs map[string]RecordVersion
}

func (s *recordStore) put(v RecordVersion) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs == nil {
		s.recs = map[string]RecordVersion{}
	}
	if old, ok := s.recs[v.key()]; ok && !v.supersedes(old) {
		return false
	}
	s.recs[v.key()] = v
	return true
}

func (s *recordStore) version(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recs[RecordVersion{Vendor: "shop", Resource: "product", ID: id}.key()].Version
}

// replica is one node's store and read model: local writes go to the
// store, then to the cluster (as the OnChange hook of Records will).
type replica struct {
	store recordStore
	rm    *ReadModel
}

func (r *replica) write(id, version string, updated time.Time) {
	v := RecordVersion{Vendor: "shop", Resource: "product", ID: id, Version: version, UpdatedAt: updated,
		Data: []byte(`{"id":"` + id + `","version":"` + version + `"}`)}
	if r.store.put(v) {
		r.rm.Publish(v)
	}
}

func startReplica(t *testing.T, n *Node) *replica {
	t.Helper()
	r := &replica{}
	rm, err := NewReadModel(n, func(v RecordVersion) error { r.store.put(v); return nil }, ReadModelConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rm.Close)
	r.rm = rm
	waitFor(t, n.Name()+" read model ready", rm.Ready)
	return r
}

// TestReadModelSameVersionsOnEveryNode: a change stored on a is served
// by b and c with the same version; concurrent writes of one record on
// two nodes converge on the newer everywhere, whatever order they are
// published in; a node joining later gets every record.
func TestReadModelSameVersionsOnEveryNode(t *testing.T) {
	nodes := startEmbeddedNodes(t, []Handlers{{}, {}, {}})
	rs := []*replica{startReplica(t, nodes[0]), startReplica(t, nodes[1]), startReplica(t, nodes[2])}
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

	rs[0].write("1", "v1", t0)
	for _, r := range rs[1:] {
		waitFor(t, "v1 replicated", func() bool { return r.store.version("1") == "v1" })
	}
	rs[0].write("1", "v2", t0.Add(time.Minute))
	for _, r := range rs[1:] {
		waitFor(t, "v2 replicated", func() bool { return r.store.version("1") == "v2" })
	}

	// b stores v4 and c the older v3 of record 2 at about the same time;
	// c publishes last. Everyone ends on v4 (the bucket never moves back).
	rs[1].write("2", "v4", t0.Add(4*time.Minute))
	if err := rs[1].rm.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// c stored v3 before v4 reached it (its store may have v4 by now: it
	// then refuses v3 itself), and publishes it after b's v4.
	rs[2].rm.Publish(RecordVersion{Vendor: "shop", Resource: "product", ID: "2", Version: "v3", UpdatedAt: t0.Add(3 * time.Minute)})
	if err := rs[2].rm.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		waitFor(t, fmt.Sprintf("node %d converges on v4", i), func() bool { return r.store.version("2") == "v4" })
	}
	if st := rs[2].rm.Stats(); st.Superseded != 1 {
		t.Fatalf("c's stale version: stats %+v", st)
	}

	// A deletion marker replicates too, and a later resurrection wins it.
	del := RecordVersion{Vendor: "shop", Resource: "product", ID: "1", Version: "v2", Deleted: true, UpdatedAt: t0.Add(5 * time.Minute)}
	rs[2].store.put(del)
	rs[2].rm.Publish(del)
	waitFor(t, "deletion on a", func() bool {
		rs[0].store.mu.Lock()
		defer rs[0].store.mu.Unlock()
		return rs[0].store.recs[del.key()].Deleted
	})
}

// TestReadModelCatchesUpAfterNATSReturns: versions stored while NATS is
// unreachable wait in memory, then reach the other node; a node that
// starts later applies the whole bucket before it is ready.
func TestReadModelCatchesUpAfterNATSReturns(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	a := startNode(t, Config{NodeName: "a", URLs: []string{url}}, &recorder{})
	ra := &replica{}
	rm, err := NewReadModel(a, func(v RecordVersion) error { ra.store.put(v); return nil }, ReadModelConfig{MaxPending: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rm.Close)
	ra.rm = rm
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	ra.write("1", "v1", t0)
	ra.write("1", "v2", t0.Add(time.Second)) // replaces the pending v1
	ra.write("2", "v1", t0)
	ra.write("3", "v1", t0) // over MaxPending: the oldest pending (1) is dropped
	if st := rm.Stats(); st.Pending != 2 || st.Dropped != 1 || st.Ready {
		t.Fatalf("while NATS is away: %+v", st)
	}
	s := &testServer{t: t, name: "late", dir: t.TempDir(), port: port}
	s.start(nil)
	t.Cleanup(s.stop)
	waitFor(t, "a ready", rm.Ready)
	if err := rm.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, Config{NodeName: "b", URLs: []string{url}}, &recorder{})
	rb := startReplica(t, b)
	if rb.store.version("2") != "v1" || rb.store.version("3") != "v1" || rb.store.version("1") != "" {
		t.Fatalf("b after its initial load: %v", rb.store.recs)
	}
	if st := rb.rm.Stats(); st.Applied != 2 {
		t.Fatalf("b stats %+v", st)
	}
	rb.write("1", "v3", t0.Add(time.Hour))
	waitFor(t, "a applies b's write", func() bool { return ra.store.version("1") == "v3" })
}

// TestReadModelResumesAfterDisconnection: b's server goes away while a
// stores versions; when it returns, b applies what it missed, from where
// it stopped (not the whole bucket again).
func TestReadModelResumesAfterDisconnection(t *testing.T) {
	servers := startCluster(t)
	cfg := func(name string, s *testServer) Config {
		return Config{NodeName: name, URLs: []string{s.url()}, Replicas: 3}
	}
	a := startNode(t, cfg("a", servers[0]), &recorder{})
	b := startNode(t, cfg("b", servers[1]), &recorder{})
	ra, rb := startReplica(t, a), startReplica(t, b)
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for i := range 5 {
		ra.write(fmt.Sprint(i), "v1", t0)
	}
	waitFor(t, "b has the first versions", func() bool { return rb.store.version("4") == "v1" })
	before := rb.rm.Stats().Applied

	servers[1].stop()
	waitState(t, b, StateDisconnected)
	ra.write("1", "v2", t0.Add(time.Minute))
	ra.write("5", "v1", t0)
	if err := ra.rm.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rb.store.version("1") != "v1" {
		t.Fatal("b applied a version while disconnected")
	}
	servers[1].restartIn(servers)
	waitFor(t, "b catches up", func() bool { return rb.store.version("1") == "v2" && rb.store.version("5") == "v1" })
	if got := rb.rm.Stats().Applied - before; got != 2 {
		t.Fatalf("b applied %d versions after reconnecting, want the 2 it missed", got)
	}
}
