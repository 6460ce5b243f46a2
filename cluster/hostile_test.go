package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// What a node does with what it cannot apply now (its disk is full) and
// with what another writer of the cluster's streams and buckets put there
// (a bug, an attacker holding a node's credentials): nothing is lost that
// can be applied later, nothing hostile pins a value forever.

// A purge the app cannot record now (a full disk) is not acknowledged:
// the node catches up again (its memory tier stops serving) and applies
// it, then the purges behind it, in order.
func TestPurgeNotRecordedIsRedelivered(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{s.url()}}, &recorder{})
	var mu sync.Mutex
	var applied, states []string
	failures := 2
	h := Handlers{
		Purge: func(p Purge) error {
			mu.Lock()
			defer mu.Unlock()
			if p.Tags[0] == "t1" && failures > 0 {
				failures--
				return &syscallError{syscall.ENOSPC}
			}
			applied = append(applied, p.Tags[0])
			return nil
		},
		State: func(st State) {
			mu.Lock()
			defer mu.Unlock()
			states = append(states, st.String())
		},
	}
	b, err := Start(Config{NodeName: "b", URLs: []string{s.url()}, ReconnectWait: 20 * time.Millisecond}, h, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	waitState(t, a, StateReady)
	waitState(t, b, StateReady)
	mu.Lock()
	states = nil
	mu.Unlock()

	a.Publish(Purge{Tags: []string{"t1"}})
	a.Publish(Purge{Tags: []string{"t2"}})
	waitFor(t, "t1 and t2 applied on b", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(applied) == 2
	})
	waitState(t, b, StateReady) // reported once the handler returned
	mu.Lock()
	defer mu.Unlock()
	if applied[0] != "t1" || applied[1] != "t2" {
		t.Fatalf("applied %v, want t1 then t2", applied)
	}
	if failures != 0 {
		t.Fatalf("t1 applied without its failures (%d left)", failures)
	}
	// The failure made b catch up again (its memory tier not serving).
	catching := 0
	for _, st := range states {
		if st == StateCatchingUp.String() {
			catching++
		}
	}
	if catching < 1 || states[len(states)-1] != StateReady.String() {
		t.Fatalf("states after the failures %v: want catching_up, then ready", states)
	}
	st := b.Stats()
	if st.ApplyFailures != 2 || st.Cursor != 2 {
		t.Fatalf("b stats %+v: want 2 apply failures and cursor 2", st)
	}
}

type syscallError struct{ errno syscall.Errno }

func (e *syscallError) Error() string { return "write craftedge.db: " + e.errno.Error() }
func (e *syscallError) Unwrap() error { return e.errno }

// A record version the app cannot store now (RetryLater) is applied
// again, from its revision, with the versions after it; one it refuses
// (another error) is skipped and counted.
func TestReadModelRetriesWhatCannotBeStoredNow(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{s.url()}}, &recorder{})
	b := startNode(t, Config{NodeName: "b", URLs: []string{s.url()}}, &recorder{})
	ra := startReplica(t, a)
	var mu sync.Mutex
	var got []string
	fails := 2
	rb, err := NewReadModel(b, func(v RecordVersion) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case v.ID == "1" && fails > 0:
			fails--
			return RetryLater(&syscallError{syscall.ENOSPC})
		case v.ID == "bad":
			return errors.New("refused: not a record of this node")
		}
		got = append(got, v.ID+"@"+v.Version)
		return nil
	}, ReadModelConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rb.Close)
	waitFor(t, "b ready", rb.Ready)

	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	ra.write("1", "v1", t0)
	ra.write("bad", "v1", t0)
	ra.write("2", "v1", t0)
	waitFor(t, "1 and 2 applied on b", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	mu.Lock()
	if got[0] != "1@v1" || got[1] != "2@v1" {
		t.Fatalf("applied %v", got)
	}
	mu.Unlock()
	st := rb.Stats()
	if st.Retries != 2 || st.ApplyErrors != 1 || st.Applied != 2 {
		t.Fatalf("b's read model stats %+v: want 2 retries, 1 refused, 2 applied", st)
	}
	waitFor(t, "b ready again", rb.Ready)
}

// A copy published under another page's subject (which no copy of its own
// key would ever replace, the stream keeping one message per subject) is
// neither imported nor read.
func TestSharedSnapshotsSkipCopiesUnderAnotherSubject(t *testing.T) {
	srv := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{srv.url()}}, &recorder{})
	sa := startShared(t, a, SharedSnapshotsConfig{})
	good := SharedSnapshot{Key: "GET https://shop.example/p/1", StoredAt: time.Now().Add(-time.Minute), Value: []byte("good")}
	if !sa.Put(good) {
		t.Fatal("put refused")
	}
	if err := sa.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The hostile copy claims /p/1 but is filed under /p/2's subject.
	msg := nats.NewMsg(sa.subject("GET https://shop.example/p/2"))
	msg.Header.Set(headerNode, "mallory")
	msg.Data = encodeShared(SharedSnapshot{Key: good.Key, StoredAt: time.Now(), Value: []byte("hostile")})
	if _, err := a.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	var seen []string
	if err := sa.Each(context.Background(), func(sn SharedSnapshot) bool {
		seen = append(seen, sn.Key+"="+string(sn.Value))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != good.Key+"=good" {
		t.Fatalf("Each gave %v, want the good copy only", seen)
	}
	if st := sa.Stats(); st.Malformed != 1 {
		t.Fatalf("stats %+v: want the misfiled copy counted malformed", st)
	}
	if _, ok, err := sa.Get(context.Background(), "GET https://shop.example/p/2"); ok || err != nil {
		t.Fatalf("Get of /p/2 found the misfiled copy (ok %v, err %v)", ok, err)
	}
}

// Kill-switch keys that no node writes (a name that is not UTF-8, or
// longer than any upstream name) are ignored, not applied.
func TestKillSwitchIgnoresHostileKeys(t *testing.T) {
	srv := startServer(t, "solo", "", nil)
	r := &recorder{}
	a := startNode(t, Config{NodeName: "a", URLs: []string{srv.url()}}, r)
	waitState(t, a, StateReady)
	if err := a.SetSnapshotOnly(context.Background(), "craft", true); err != nil {
		t.Fatal(err)
	}
	kv := a.kill
	for _, name := range []string{"\xff\xfe", strings.Repeat("u", maxUpstreamName+1), "with\x00nul"} {
		if _, err := kv.Put(context.Background(), killPrefix+base64.RawURLEncoding.EncodeToString([]byte(name)), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SetSnapshotOnly(context.Background(), "shop", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the last override seen", func() bool { return r.killSet()["shop"] })
	if got := r.killSet(); len(got) != 2 || !got["craft"] || !got["shop"] {
		t.Fatalf("kill-switch set %v: want craft and shop only", got)
	}
}

// A webhook delivery recorded as seen until far beyond the bucket's
// retention (which no node writes) is not a duplicate: it would drop the
// vendor's deliveries of that id for good.
func TestDeliverySeenBoundsTheRecordedTime(t *testing.T) {
	srv := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{srv.url()}}, &recorder{})
	waitState(t, a, StateReady)
	now := time.Now()
	ctx := context.Background()
	if err := a.RememberDelivery(ctx, "shop", "d1", now, time.Hour); err != nil {
		t.Fatal(err)
	}
	if seen, err := a.DeliverySeen(ctx, "shop", "d1", now); !seen || err != nil {
		t.Fatalf("a delivery remembered: seen %v, %v", seen, err)
	}
	kv, err := a.deliveryBucket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id, v := range map[string]string{
		"forever": strconv.FormatInt(now.Add(100*365*24*time.Hour).UnixNano(), 10),
		"junk":    "\xff not a time",
	} {
		if _, err := kv.Put(ctx, deliveryKey("shop", id), []byte(v)); err != nil {
			t.Fatal(err)
		}
		if seen, err := a.DeliverySeen(ctx, "shop", id, now); seen || err != nil {
			t.Fatalf("%s: seen %v, %v: want not a duplicate", id, seen, err)
		}
	}
}

// Values of the records bucket that are not record versions of their key
// are skipped and counted, whatever they hold.
func TestReadModelSkipsHostileValues(t *testing.T) {
	srv := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{srv.url()}}, &recorder{})
	b := startNode(t, Config{NodeName: "b", URLs: []string{srv.url()}}, &recorder{})
	startReplica(t, a)
	rb := startReplica(t, b)
	var kv jetstream.KeyValue
	waitFor(t, "the records bucket", func() bool {
		var err error
		kv, err = a.js.KeyValue(context.Background(), a.name("records"))
		return err == nil
	})
	other, _ := json.Marshal(RecordVersion{Vendor: "shop", Resource: "product", ID: "2", Version: "evil", Node: "mallory"})
	for key, v := range map[string][]byte{
		RecordVersion{Vendor: "shop", Resource: "product", ID: "1"}.key(): other, // claims another record
		RecordVersion{Vendor: "shop", Resource: "product", ID: "3"}.key(): []byte("\xff\xfe{"),
		RecordVersion{Vendor: "shop", Resource: "product", ID: "4"}.key(): []byte(`{"vendor":"shop"`),
	} {
		if _, err := kv.Put(context.Background(), key, v); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "three malformed values counted", func() bool { return rb.rm.Stats().Malformed == 3 })
	for _, id := range []string{"1", "2", "3", "4"} {
		if v := rb.store.version(id); v != "" {
			t.Fatalf("record %s applied as %q", id, v)
		}
	}
}

// A version ten years ahead in the bucket (no node's: nodes refuse to
// apply one) does not hold the record back: a node's next version
// replaces it.
func TestReadModelVersionFromTheFarFutureHoldsNothingBack(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{s.url()}}, &recorder{})
	b := startNode(t, Config{NodeName: "b", URLs: []string{s.url()}}, &recorder{})
	ra := startReplica(t, a)
	rb := startReplica(t, b)
	now := time.Now()
	ra.write("1", "v1", now)
	waitFor(t, "v1 on b", func() bool { return rb.store.version("1") == "v1" })
	evil, _ := json.Marshal(RecordVersion{Vendor: "shop", Resource: "product", ID: "1", Version: "evil",
		UpdatedAt: now.AddDate(10, 0, 0), Node: "mallory"})
	kv, err := a.js.KeyValue(context.Background(), a.name("records"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), RecordVersion{Vendor: "shop", Resource: "product", ID: "1"}.key(), evil); err != nil {
		t.Fatal(err)
	}
	// Published as a node that refused the evil version publishes it
	// (this test's store would take the evil one, a node's refuses it).
	ra.rm.Publish(RecordVersion{Vendor: "shop", Resource: "product", ID: "1", Version: "v2", UpdatedAt: now.Add(time.Minute)})
	if err := ra.rm.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), RecordVersion{Vendor: "shop", Resource: "product", ID: "1"}.key())
	if err != nil {
		t.Fatal(err)
	}
	var got RecordVersion
	if err := json.Unmarshal(e.Value(), &got); err != nil || got.Version != "v2" {
		t.Fatalf("bucket holds %q (%v), want v2", got.Version, err)
	}
}

// A node that cannot run jobs now (its storage file damaged or full)
// gives them back: with MaxAttempts 2, five give-backs dead-letter
// nothing, and the job is done on its first counted attempt, by whichever
// node can.
func TestOutboxGiveBackCountsNoAttempt(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{s.url()}}, &recorder{})
	o := startOutbox(t, a, OutboxConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		BlockedRetry: time.Millisecond})
	ctx := context.Background()
	j, _, err := o.Accept(ctx, OutboxRequest{Kind: "outbox", Entity: "e", Payload: []byte("write")})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := 0
	runOutbox(t, o, func(_ context.Context, job OutboxJob) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls <= 5 {
			return OutboxGiveBack(&syscallError{syscall.ENOSPC})
		}
		return nil
	})
	waitFor(t, "the job done", func() bool {
		st, err := o.Get(ctx, j.ID)
		return err == nil && st.State == OutboxDone
	})
	st, _ := o.Get(ctx, j.ID)
	if st.Attempts != 1 {
		t.Fatalf("job status %+v: want 1 attempt counted", st)
	}
	if s := o.Stats(); s.GivenBack != 5 || s.Dead != 0 || s.Delivered != 1 {
		t.Fatalf("outbox stats %+v", s)
	}
}
