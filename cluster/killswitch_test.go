package cluster

import (
	"context"
	"maps"
	"testing"
)

func TestKillSwitchSharedAndSurvivesRestarts(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	ra, rb := &recorder{}, &recorder{}
	cfg := func(name string) Config { return Config{NodeName: name, URLs: []string{s.url()}} }
	a := startNode(t, cfg("a"), ra)
	b := startNode(t, cfg("b"), rb)
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	waitFor(t, "initial empty set", func() bool { return ra.killSet() != nil && len(ra.killSet()) == 0 })

	ctx := context.Background()
	up := "craft main/with spaces:and.dots" // not a valid key as is
	if err := b.SetSnapshotOnly(ctx, up, true); err != nil {
		t.Fatal(err)
	}
	if err := b.SetSnapshotOnly(ctx, "", true); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{up: true, "": true}
	waitFor(t, "a sees b's overrides", func() bool { return maps.Equal(ra.killSet(), want) })
	if !maps.Equal(a.SnapshotOnlyOverrides(), want) {
		t.Fatalf("a.SnapshotOnlyOverrides = %v", a.SnapshotOnlyOverrides())
	}
	if err := a.SetSnapshotOnly(ctx, "", false); err != nil {
		t.Fatal(err)
	}
	want = map[string]bool{up: true}
	waitFor(t, "b sees a's change", func() bool { return maps.Equal(rb.killSet(), want) })

	// Every node restarts (and the server too): a new node gets the
	// current set at start.
	a.Close()
	b.Close()
	s.stop()
	s.start(nil)
	rc := &recorder{}
	startNode(t, cfg("c"), rc)
	waitFor(t, "c gets the set at start", func() bool { return maps.Equal(rc.killSet(), want) })
}
