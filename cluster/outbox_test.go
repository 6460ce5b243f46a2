package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/craftedge/craftedge/internal/boltsafe"
)

// deliveries records what outbox handlers completed, per entity in order.
type deliveries struct {
	mu       sync.Mutex
	done     map[string]int      // job id → completed attempts
	byEntity map[string][]string // entity → payloads in completion order
	keys     map[string]string   // job id → idempotency key seen
	ranOn    map[string]string   // job id → node that completed it
	attempts map[string]int      // job id → attempts started
}

func newDeliveries() *deliveries {
	return &deliveries{done: map[string]int{}, byEntity: map[string][]string{}, keys: map[string]string{},
		ranOn: map[string]string{}, attempts: map[string]int{}}
}

// handler completes every job; fail(job, attempt) may fail an attempt.
func (d *deliveries) handler(node string, fail func(OutboxJob) error) OutboxHandler {
	return func(ctx context.Context, j OutboxJob) error {
		d.mu.Lock()
		d.attempts[j.ID]++
		d.mu.Unlock()
		if fail != nil {
			if err := fail(j); err != nil {
				return err
			}
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		d.done[j.ID]++
		d.byEntity[j.Entity] = append(d.byEntity[j.Entity], string(j.Payload))
		d.keys[j.ID] = j.IdempotencyKey()
		d.ranOn[j.ID] = node
		return nil
	}
}

func (d *deliveries) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.done {
		n += c
	}
	return n
}

func startOutbox(t *testing.T, n *Node, cfg OutboxConfig) *Outbox {
	t.Helper()
	o, err := NewOutbox(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(o.Close) })
	waitFor(t, n.Name()+" outbox ready", o.Ready)
	return o
}

// runOutbox runs o's workers until the test ends.
func runOutbox(t *testing.T, o *Outbox, h OutboxHandler) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = o.Run(ctx, h)
	}()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return cancel
}

// TestOutboxDeliveredOnceByOthersWhenAcceptorNeverReturns: node a accepts
// writes for two entities (and starts one of them), then a and its NATS
// server are gone for good; b and c deliver every write exactly once, in
// acceptance order per entity, across a retry, with the same idempotency
// key.
func TestOutboxDeliveredOnceByOthersWhenAcceptorNeverReturns(t *testing.T) {
	servers := startCluster(t)
	cfg := func(name string, s *testServer) Config {
		return Config{NodeName: name, URLs: []string{s.url()}, Replicas: 3}
	}
	a := startNode(t, cfg("a", servers[0]), &recorder{})
	b := startNode(t, cfg("b", servers[1]), &recorder{})
	c := startNode(t, cfg("c", servers[2]), &recorder{})
	ocfg := OutboxConfig{AckWait: time.Second, BaseBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		BlockedRetry: 20 * time.Millisecond, Concurrency: 3}
	oa, ob, oc := startOutbox(t, a, ocfg), startOutbox(t, b, ocfg), startOutbox(t, c, ocfg)

	// a's worker takes the first job and hangs in it: a dies mid-attempt.
	started := make(chan struct{})
	var startedOnce sync.Once
	runOutbox(t, oa, func(ctx context.Context, j OutboxJob) error {
		startedOnce.Do(func() { close(started) })
		<-ctx.Done()
		return errors.New("never completes")
	})
	ctx := context.Background()
	var ids []string
	want := map[string][]string{}
	for i := range 5 {
		for _, e := range []string{"shop:customer:1", "shop:customer:2"} {
			p := fmt.Sprintf("%s#%d", e, i)
			j, created, err := oa.Accept(ctx, OutboxRequest{Kind: "outbox", Entity: e, Payload: []byte(p),
				Key: "key-" + p, Correlation: "req-" + fmt.Sprint(i)})
			if err != nil || !created {
				t.Fatalf("accept %s: created %v, %v", p, created, err)
			}
			ids = append(ids, j.ID)
			want[e] = append(want[e], p)
		}
	}
	<-started
	// a and its server go away for good; a never acknowledges its attempt.
	servers[0].stop()
	a.Close()

	d := newDeliveries()
	var failOnce sync.Once
	fail := func(j OutboxJob) error {
		var err error
		if string(j.Payload) == "shop:customer:1#1" {
			failOnce.Do(func() { err = errors.New("vendor said 503") })
		}
		return err
	}
	runOutbox(t, ob, d.handler("b", fail))
	runOutbox(t, oc, d.handler("c", fail))
	waitFor(t, "every job delivered", func() bool { return d.count() >= len(ids) })
	waitFor(t, "outbox stream empty", func() bool {
		s, _, _, err := ob.handles()
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		if d.done[id] != 1 {
			t.Errorf("job %s completed %d times", id, d.done[id])
		}
	}
	for e, w := range want {
		if !slices.Equal(d.byEntity[e], w) {
			t.Errorf("entity %s delivered in order %v, want %v", e, d.byEntity[e], w)
		}
	}
	if d.attempts[ids[2]] != 2 { // shop:customer:1#1 failed once
		t.Errorf("the failing job ran %d times", d.attempts[ids[2]])
	}
	if d.keys[ids[0]] != "key-shop:customer:1#0" {
		t.Errorf("idempotency key %q", d.keys[ids[0]])
	}
	st, err := ob.Get(ctx, ids[2])
	if err != nil || st.State != OutboxDone || st.Attempts != 2 || st.Node != "a" {
		t.Errorf("status of the retried job: %+v, %v", st, err)
	}
}

func TestOutboxIdempotencyKeyAcceptsOnce(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{s.url()}}, &recorder{})
	b := startNode(t, Config{NodeName: "b", URLs: []string{s.url()}}, &recorder{})
	oa, ob := startOutbox(t, a, OutboxConfig{}), startOutbox(t, b, OutboxConfig{})
	ctx := context.Background()
	req := OutboxRequest{Kind: "outbox", Key: "shop:order:9:v1", Entity: "shop:order:9", Payload: []byte(`{"n":1}`)}
	first, created, err := oa.Accept(ctx, req)
	if err != nil || !created {
		t.Fatalf("first accept: %v %v", created, err)
	}
	// The client retries through another node: same job, not a second one.
	again, created, err := ob.Accept(ctx, req)
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("second accept: %+v created %v, %v (first %s)", again, created, err, first.ID)
	}
	d := newDeliveries()
	runOutbox(t, ob, d.handler("b", nil))
	waitFor(t, "delivered", func() bool { return d.count() == 1 })
	if _, created, _ := oa.Accept(ctx, req); created {
		t.Fatal("a key accepted again after delivery, within retention")
	}
	if first.ID == keyHash(req.Kind, req.Key) {
		t.Fatal("the job id is derived from the key (guessable)")
	}
	if d.keys[first.ID] != "shop:order:9:v1" {
		t.Fatalf("idempotency key %q", d.keys[first.ID])
	}
	// Counted once JetStream confirmed the acknowledgement, after the
	// handler returned.
	waitFor(t, "the delivery counted", func() bool { return ob.Stats().Delivered == 1 })
	other, _, err := oa.Accept(ctx, OutboxRequest{Kind: "outbox", Key: "shop:order:9:v2"})
	if err != nil || other.ID == first.ID || len(other.ID) != 32 {
		t.Fatalf("another key: %+v %v", other, err)
	}
}

func TestOutboxDeadLetterUnblocksTheEntity(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{s.url()}}, &recorder{})
	permanent := errors.New("422 unprocessable")
	o := startOutbox(t, a, OutboxConfig{MaxAttempts: 3, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		BlockedRetry: 10 * time.Millisecond, Permanent: func(err error) bool { return errors.Is(err, permanent) }})
	ctx := context.Background()
	var ids []string
	for _, p := range []string{"flaky", "bad", "good"} {
		j, _, err := o.Accept(ctx, OutboxRequest{Kind: "outbox", Entity: "e", Payload: []byte(p)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	d := newDeliveries()
	runOutbox(t, o, d.handler("a", func(j OutboxJob) error {
		switch string(j.Payload) {
		case "flaky":
			return errors.New("timeout") // every attempt: dead after 3
		case "bad":
			return fmt.Errorf("vendor: %w", permanent)
		}
		return nil
	}))
	waitFor(t, "good delivered after two dead letters", func() bool { return d.count() == 1 })
	if d.attempts[ids[0]] != 3 || d.attempts[ids[1]] != 1 {
		t.Fatalf("attempts flaky %d (want 3), bad %d (want 1)", d.attempts[ids[0]], d.attempts[ids[1]])
	}
	dead, err := o.DeadLetters(ctx, 10)
	if err != nil || len(dead) != 2 || dead[0].ID != ids[0] || dead[1].ID != ids[1] {
		t.Fatalf("dead letters %+v, %v", dead, err)
	}
	if st, _ := o.Get(ctx, ids[1]); st.State != OutboxDead || st.LastError != "vendor: 422 unprocessable" {
		t.Fatalf("status of the dead job: %+v", st)
	}
}

// TestOutboxRefusesWithoutNATS: no JetStream acknowledgement, no
// acceptance; once NATS is there, accepted.
func TestOutboxRefusesWithoutNATS(t *testing.T) {
	port := freePort(t)
	a := startNode(t, Config{NodeName: "a", URLs: []string{fmt.Sprintf("nats://127.0.0.1:%d", port)}}, &recorder{})
	o, err := NewOutbox(a, OutboxConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	_, _, err = o.Accept(context.Background(), OutboxRequest{Kind: "outbox", Payload: []byte("x")})
	if !ErrNotConnected(err) {
		t.Fatalf("accept without NATS: %v", err)
	}
	if _, _, err := o.Accept(context.Background(), OutboxRequest{Kind: "outbox", Entity: "a\x00b"}); !errors.Is(err, ErrOutboxInvalid) {
		t.Fatalf("entity with NUL: %v", err)
	}
	s := &testServer{t: t, name: "late", dir: t.TempDir(), port: port}
	s.start(nil)
	t.Cleanup(s.stop)
	waitFor(t, "outbox ready", o.Ready)
	if _, created, err := o.Accept(context.Background(), OutboxRequest{Kind: "outbox", Payload: []byte("x")}); err != nil || !created {
		t.Fatalf("accept with NATS: %v %v", created, err)
	}
}

func TestOutboxConfigErrors(t *testing.T) {
	for _, c := range []OutboxConfig{{MaxAttempts: -1}, {AckWait: time.Millisecond}, {BaseBackoff: time.Minute, MaxBackoff: time.Second}} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestOutboxOrderPerEntityUnderConcurrency: two nodes with four workers
// each deliver 3 entities × 15 jobs, with transient failures, each job
// exactly once and every entity in acceptance order; a message that is
// not a job is dead-lettered.
func TestOutboxOrderPerEntityUnderConcurrency(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	a := startNode(t, Config{NodeName: "a", URLs: []string{s.url()}}, &recorder{})
	b := startNode(t, Config{NodeName: "b", URLs: []string{s.url()}}, &recorder{})
	cfg := OutboxConfig{Concurrency: 4, BaseBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		BlockedRetry: 5 * time.Millisecond}
	oa, ob := startOutbox(t, a, cfg), startOutbox(t, b, cfg)
	ctx := context.Background()
	want := map[string][]string{}
	total := 0
	for i := range 15 {
		for _, e := range []string{"e1", "e2", "e3"} {
			p := fmt.Sprintf("%s#%02d", e, i)
			o := oa
			if i%2 == 1 {
				o = ob // accepted on either node: one order per entity
			}
			if _, _, err := o.Accept(ctx, OutboxRequest{Kind: "outbox", Entity: e, Payload: []byte(p)}); err != nil {
				t.Fatal(err)
			}
			want[e] = append(want[e], p)
			total++
		}
	}
	// Someone publishes garbage on an outbox subject.
	if _, err := a.js.Publish(ctx, oa.subject("outbox", "e9"), []byte("not a job")); err != nil {
		t.Fatal(err)
	}
	d := newDeliveries()
	var mu sync.Mutex
	tries := map[string]int{}
	flaky := func(j OutboxJob) error {
		mu.Lock()
		defer mu.Unlock()
		tries[j.ID]++
		if tries[j.ID] == 1 && len(j.Payload)%2 == 0 || tries[j.ID] == 1 && strings.HasSuffix(string(j.Payload), "3") {
			return errors.New("transient")
		}
		return nil
	}
	runOutbox(t, oa, d.handler("a", flaky))
	runOutbox(t, ob, d.handler("b", flaky))
	waitFor(t, "every job delivered", func() bool { return d.count() >= total })
	waitFor(t, "the garbage dead-lettered", func() bool { return oa.Stats().Malformed+ob.Stats().Malformed == 1 })
	d.mu.Lock()
	defer d.mu.Unlock()
	for e, w := range want {
		if !slices.Equal(d.byEntity[e], w) {
			t.Errorf("entity %s:\n got %v\nwant %v", e, d.byEntity[e], w)
		}
	}
	for id, n := range d.done {
		if n != 1 {
			t.Errorf("job %s completed %d times", id, n)
		}
	}
	if len(d.done) != total {
		t.Errorf("%d jobs completed, want %d", len(d.done), total)
	}
}

// A handler's panic is counted as a failed attempt and logged with the
// stack that raised it, also when a storage guard around the handler
// recovered it and raised it again (as a *boltsafe.PanicError: the
// craftedge app's guard does so for a panic that is not bbolt's).
func TestOutboxHandlerPanicLogsWhereItWasRaised(t *testing.T) {
	s := startServer(t, "solo", "", nil)
	core, logs := observer.New(zap.ErrorLevel)
	n, err := Start(Config{NodeName: "a", URLs: []string{s.url()}, ReconnectWait: 50 * time.Millisecond, Timeout: 5 * time.Second},
		(&recorder{}).handlers(), Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	o := startOutbox(t, n, OutboxConfig{MaxAttempts: 1, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	job, _, err := o.Accept(context.Background(), OutboxRequest{Kind: "outbox", Entity: "e", Payload: []byte("p")})
	if err != nil {
		t.Fatal(err)
	}
	runOutbox(t, o, func(ctx context.Context, j OutboxJob) error {
		err := boltsafe.Run(func() error { return panicInOutboxHandler() })
		var p *boltsafe.PanicError
		if errors.As(err, &p) {
			panic(p) // raised again, as a storage guard does
		}
		return err
	})
	waitFor(t, "the job dead after its one attempt", func() bool {
		st, err := o.Get(context.Background(), job.ID)
		return err == nil && st.State == OutboxDead
	})
	lines := logs.FilterMessage("outbox handler panicked").All()
	if len(lines) != 1 {
		t.Fatalf("%d \"outbox handler panicked\" lines, want 1", len(lines))
	}
	f := lines[0].ContextMap()
	if stack, _ := f["stack"].(string); !strings.Contains(stack, "panicInOutboxHandler") || f["panic"] != "broken handler" {
		t.Fatalf("the panic's log line does not say what and where: %v", f)
	}
}

func panicInOutboxHandler() error { panic("broken handler") }
