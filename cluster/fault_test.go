package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/craftedge/craftedge/internal/natstest"
)

func TestNATSUnreachableAtStartThenAppears(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	ra, rb := &recorder{}, &recorder{}
	a := startNode(t, Config{NodeName: "a", URLs: []string{url}}, ra)
	if a.State() != StateConnecting {
		t.Fatalf("state %s before NATS exists", a.State())
	}
	// Works locally: publishing queues, the kill switch and leases answer
	// at once with a not-connected error.
	a.Publish(Purge{Tags: []string{"while-down"}})
	if q := a.Stats().Queued; q != 1 {
		t.Fatalf("queued %d", q)
	}
	if err := a.SetSnapshotOnly(context.Background(), "", true); !ErrNotConnected(err) {
		t.Fatalf("SetSnapshotOnly without NATS: %v", err)
	}
	if _, err := a.AcquireLease(context.Background(), "sync:shop"); !ErrNotConnected(err) {
		t.Fatalf("AcquireLease without NATS: %v", err)
	}

	s := &testServer{t: t, name: "late", dir: t.TempDir(), port: port}
	s.start(nil)
	t.Cleanup(s.stop)
	waitState(t, a, StateReady)
	waitFor(t, "queue drained", func() bool { return a.Stats().Queued == 0 })

	// A node joining now replays nothing it did not need (it has no
	// cursor: a gap, then ready), and sees later purges.
	b := startNode(t, Config{NodeName: "b", URLs: []string{url}}, rb)
	waitState(t, b, StateReady)
	if got := rb.eventList(); !slices.Equal(got[:3], []string{"state:catching_up", "gap:no_cursor", "state:ready"}) {
		t.Fatalf("b's first events: %v", got)
	}
	a.Publish(Purge{Tags: []string{"after"}})
	waitFor(t, "b applies a's purge", func() bool { return rb.hasPurge("after") })
	if rb.hasPurge("while-down") {
		t.Fatal("b applied a purge from before it joined (it reported a gap for that)")
	}
}

// TestDisconnectedNodeReplaysBeforeReady: b's only server goes away while
// a publishes; when it returns, b applies every missed purge, in order,
// before it reports ready, and reports no gap.
func TestDisconnectedNodeReplaysBeforeReady(t *testing.T) {
	servers := startCluster(t)
	ra, rb, rc := &recorder{}, &recorder{}, &recorder{}
	cfg := func(name string, s *testServer) Config {
		return Config{NodeName: name, URLs: []string{s.url()}, Replicas: 3}
	}
	a := startNode(t, cfg("a", servers[0]), ra)
	b := startNode(t, cfg("b", servers[1]), rb)
	c := startNode(t, cfg("c", servers[2]), rc)
	for _, n := range []*Node{a, b, c} {
		waitState(t, n, StateReady)
	}
	a.Publish(Purge{Tags: []string{"before"}})
	waitFor(t, "b applies before", func() bool { return rb.hasPurge("before") })

	servers[1].stop()
	waitState(t, b, StateDisconnected)
	rb.reset()
	var missed []string
	for i := range 5 {
		tag := fmt.Sprintf("missed-%d", i)
		missed = append(missed, "purge:"+tag)
		a.Publish(Purge{Tags: []string{tag}})
	}
	waitFor(t, "c applies the purges b misses", func() bool { return rc.hasPurge("missed-4") })
	if rb.hasPurge("missed-0") {
		t.Fatal("b applied a purge while disconnected")
	}

	servers[1].restartIn(servers)
	waitState(t, b, StateReady)
	want := append(append([]string{"state:catching_up"}, missed...), "state:ready")
	got := rb.eventList()
	// Reconnection may take more than one session (JetStream elects
	// leaders after a server returns): keep the last catch-up.
	if i := lastIndex(got, "state:catching_up"); i > 0 {
		got = got[i:]
	}
	if !slices.Equal(got, want) {
		t.Fatalf("b after reconnecting:\n got %v\nwant %v", got, want)
	}
}

func lastIndex(s []string, v string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == v {
			return i
		}
	}
	return -1
}

// TestGapWhenRetentionDroppedMissedPurges: b is away while the stream's
// size limit drops purges it had not applied; on return it reports a
// retention gap before ready, and applies what is left.
func TestGapWhenRetentionDroppedMissedPurges(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	ra, rb := &recorder{}, &recorder{}
	cfg := func(name string) Config {
		return Config{NodeName: name, URLs: []string{s.url()}, PurgeMaxBytes: minPurgeMaxBytes}
	}
	a := startNode(t, cfg("a"), ra)
	b, err := Start(cfg("b"), rb.handlers(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	a.Publish(Purge{Tags: []string{"seen"}})
	waitFor(t, "b applies seen", func() bool { return rb.hasPurge("seen") && b.Stats().Cursor == 1 })
	b.Close()

	pad := strings.Repeat("x", 200)
	for i := range 60 { // ~15 KiB into a 4 KiB stream
		a.Publish(Purge{Tags: []string{fmt.Sprintf("t%02d-%s", i, pad)}})
	}
	waitFor(t, "a published", func() bool { return a.Stats().Queued == 0 })

	rb.reset()
	b = startNode(t, cfg("b"), rb)
	waitState(t, b, StateReady)
	// The purges still held are covered by the gap (the caller drops its
	// memory tier and marks every snapshot stale): b resumes after them.
	if got := rb.eventList(); !slices.Equal(got, []string{"state:catching_up", "gap:retention", "state:ready"}) {
		t.Fatalf("b after the stream dropped its purges: %v", got)
	}
	a.Publish(Purge{Tags: []string{"next"}})
	waitFor(t, "b applies next", func() bool { return rb.hasPurge("next") })
}

// TestGapWhenStreamRecreated and no gap after a plain restart.
func TestGapWhenStreamRecreatedNotAfterRestart(t *testing.T) {
	s, a, b, _, rb := startReadyPair(t)
	a.Publish(Purge{Tags: []string{"one"}})
	waitFor(t, "b applies one", func() bool { return rb.hasPurge("one") && b.Stats().Cursor == 1 })

	// The server restarts with its storage: same stream, no gap.
	rb.reset()
	s.stop()
	waitState(t, b, StateDisconnected)
	s.start(nil)
	waitState(t, b, StateReady)
	if got := rb.eventList(); slices.Contains(got, "gap:stream_recreated") || slices.Contains(got, "gap:retention") {
		t.Fatalf("gap after a plain restart: %v", got)
	}

	// Someone deletes the stream; it is created again.
	rb.reset()
	js := natstest.JetStream(t, s.url())
	if err := js.DeleteStream(context.Background(), "craftedge_purges"); err != nil {
		t.Fatal(err)
	}
	// b's consumer went with the stream: it resyncs and finds a stream
	// its cursor does not refer to.
	waitFor(t, "b reports the recreated stream", func() bool {
		return slices.Contains(rb.eventList(), "gap:stream_recreated")
	})
	waitState(t, b, StateReady)
	a.Publish(Purge{Tags: []string{"two"}})
	waitFor(t, "b applies two", func() bool { return rb.hasPurge("two") })
}

func TestQueueCollapsesIntoPurgeAllWhenFull(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	a := startNode(t, Config{NodeName: "a", URLs: []string{url}, MaxQueued: 3}, &recorder{})
	for i := range 5 {
		a.Publish(Purge{Tags: []string{fmt.Sprint(i)}})
	}
	// 3 queued, the 4th collapses them into a purge-all, the 5th follows.
	st := a.Stats()
	if st.Queued != 2 || st.Overflows != 1 {
		t.Fatalf("stats %+v", st)
	}
	s := &testServer{t: t, name: "late", dir: t.TempDir(), port: port}
	s.start(nil)
	t.Cleanup(s.stop)
	waitFor(t, "a drains", func() bool { return a.Stats().Queued == 0 })
	js := natstest.JetStream(t, url)
	stream, err := js.Stream(context.Background(), "craftedge_purges")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := stream.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(m.Data))
	}
	if !strings.Contains(got[0], `"all":true`) || !strings.Contains(got[0], `"source":"cluster_overflow"`) || !strings.Contains(got[1], `"tags":["4"]`) {
		t.Fatalf("stream holds %q", got)
	}
}

func TestFlushWaitsForTheQueue(t *testing.T) {
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	a := startNode(t, Config{NodeName: "a", URLs: []string{url}}, &recorder{})
	a.Publish(Purge{Tags: []string{"x"}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Flush(ctx); err != context.Canceled {
		t.Fatalf("Flush without NATS, ctx done: %v", err)
	}
	s := &testServer{t: t, name: "late", dir: t.TempDir(), port: port}
	s.start(nil)
	t.Cleanup(s.stop)
	if err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Queued != 0 || st.Published != 1 {
		t.Fatalf("after Flush: %+v", st)
	}
}
