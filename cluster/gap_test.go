package cluster

import (
	"context"
	"slices"
	"testing"

	"github.com/craftedge/craftedge/internal/natstest"
)

// A gap the caller cannot record (Handlers.Gap fails: a full disk) is not
// passed: the node stays catching up, applies no purge behind it, keeps
// its cursor, says so in Stats and reports the same gap again (its first
// time, counted once) until the handler records it.
func TestGapNotRecordedIsReportedAgain(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	ra, rb := &recorder{}, &recorder{}
	a := startNode(t, Config{NodeName: "a", URLs: []string{s.url()}}, ra)
	waitState(t, a, StateReady)
	a.Publish(Purge{Tags: []string{"before"}})
	waitFor(t, "a's purge stored", func() bool { return a.Stats().Published == 1 })

	rb.failGap.Store(true)
	b := startNode(t, Config{NodeName: "b", URLs: []string{s.url()}}, rb)
	waitFor(t, "b's first gap reported again", func() bool { return len(rb.gapList()) >= 3 })
	st := b.Stats()
	if st.State != StateCatchingUp || st.PendingGap != GapNoCursor || st.GapFailures < 3 || st.Gaps != 1 {
		t.Fatalf("b while its gap is not recorded: %+v", st)
	}
	gaps := rb.gapList()
	for i, g := range gaps {
		if g.Reason != GapNoCursor || g.Retry != (i > 0) {
			t.Fatalf("gap %d %+v: want the same gap, reported again", i, g)
		}
	}
	a.Publish(Purge{Tags: []string{"while-pending"}})
	waitFor(t, "a's second purge stored", func() bool { return a.Stats().Published == 2 })

	rb.failGap.Store(false)
	waitState(t, b, StateReady)
	if st := b.Stats(); st.PendingGap != "" || st.Gaps != 1 || st.Cursor != 2 {
		t.Fatalf("b once its gap is recorded: %+v", st)
	}
	// The gap covered what the stream held; what comes after is applied.
	a.Publish(Purge{Tags: []string{"after"}})
	waitFor(t, "b applies after", func() bool { return rb.hasPurge("after") })
	if rb.hasPurge("before") || rb.hasPurge("while-pending") {
		t.Fatalf("b applied purges its gap covered: %v", rb.eventList())
	}
}

// A gap found while following (a delivered sequence skips purges the
// stream no longer holds) that the caller cannot record: the purge after
// the hole is not applied nor acknowledged, the node catches up and finds
// the same hole again, until the gap is recorded; then it applies the
// purge.
func TestGapWhileFollowingNotRecordedIsNotPassed(t *testing.T) {
	s, a, b, _, rb := startReadyPair(t)
	gaps := b.Stats().Gaps // its first start's

	// b cannot record "hold": it stays before it while a publishes two
	// more purges, and the first of them is deleted from the stream.
	rb.setFailPurge(func(tag string) bool { return tag == "hold" })
	a.Publish(Purge{Tags: []string{"hold"}})
	a.Publish(Purge{Tags: []string{"lost"}})
	a.Publish(Purge{Tags: []string{"after"}})
	waitFor(t, "a's purges stored", func() bool { return a.Stats().Published == 3 })
	waitFor(t, "b failing on hold", func() bool { return b.Stats().ApplyFailures > 0 })
	js := natstest.JetStream(t, s.url())
	stream, err := js.Stream(context.Background(), "craftedge_purges")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(context.Background(), 2); err != nil {
		t.Fatal(err)
	}

	rb.failGap.Store(true)
	rb.setFailPurge(nil)
	waitFor(t, "the hole found and not recorded, twice", func() bool {
		return b.Stats().GapFailures >= 2 && rb.hasPurge("hold")
	})
	st := b.Stats()
	if st.PendingGap != GapRetention || st.State != StateCatchingUp || st.Cursor != 1 || st.Gaps != gaps+1 {
		t.Fatalf("b while the gap is not recorded: %+v", st)
	}
	if rb.hasPurge("after") {
		t.Fatalf("b applied the purge after a gap it did not record: %v", rb.eventList())
	}

	rb.failGap.Store(false)
	waitFor(t, "b applies after", func() bool { return rb.hasPurge("after") })
	waitState(t, b, StateReady)
	if st := b.Stats(); st.PendingGap != "" || st.Cursor != 3 || st.Gaps != gaps+1 {
		t.Fatalf("b once the gap is recorded: %+v", st)
	}
	if ev := rb.eventList(); !slices.Contains(ev, "gap:retention") || rb.hasPurge("lost") {
		t.Fatalf("events %v", ev)
	}
}
