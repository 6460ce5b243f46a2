package jobs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"
)

// Environment of the crash helper process.
const (
	envHelper = "CRAFTEDGE_JOBS_CRASH_HELPER" // "1" in the child
	envDB     = "CRAFTEDGE_JOBS_CRASH_DB"
	envURL    = "CRAFTEDGE_JOBS_CRASH_URL"
	envPhase  = "CRAFTEDGE_JOBS_CRASH_PHASE" // "enqueue" or "recover"
	envJobs   = "CRAFTEDGE_JOBS_CRASH_JOBS"
)

// crashKind is the kind the helper runs: an outbound write (POST with an
// Idempotency-Key header) to the parent's server.
const crashKind = "outbox.deliver"

// deliveryServer counts deliveries per idempotency key, as a vendor that
// drops duplicates by key would: the effect is applied once per key.
type deliveryServer struct {
	mu         sync.Mutex
	deliveries int
	perKey     map[string]int
	badKeys    int
	hold       int           // the delivery number to hold until release is closed
	held       chan struct{} // closed when delivery number hold arrives
	release    chan struct{}
}

func (s *deliveryServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.deliveries++
	n := s.deliveries
	if key == "" || string(body) != "payload:"+key {
		s.badKeys++
	}
	s.perKey[key]++ // a vendor would apply the effect only when this becomes 1
	s.mu.Unlock()
	if n == s.hold {
		// Delivered but not acknowledged: the parent kills the worker
		// now, so this job must be delivered again after the restart.
		close(s.held)
		<-s.release
	}
	w.WriteHeader(http.StatusNoContent)
}

// TestCrashRecovery runs the queue in a child process that enqueues
// thousands of outbox jobs while delivering them, SIGKILLs it in the middle
// (with a delivery sent but not yet acknowledged), restarts it, and checks
// that every acknowledged enqueue was delivered, that the store holds exactly
// one done job per key, and that the vendor saw every key — more than once
// for some (at-least-once delivery), which its key dedupe turns into exactly
// one effect per key.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	const jobs = 3000
	srv := &deliveryServer{perKey: map[string]int{}, hold: 200, held: make(chan struct{}), release: make(chan struct{})}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(srv.release) }) }
	defer release()
	dbPath := filepath.Join(t.TempDir(), "crash.db")

	child := func(phase string) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), envHelper+"=1", envDB+"="+dbPath, envURL+"="+ts.URL,
			envPhase+"="+phase, envJobs+"="+strconv.Itoa(jobs))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, bufio.NewScanner(out)
	}

	// Phase 1: enqueue and deliver; SIGKILL once the held delivery arrives.
	cmd, out := child("enqueue")
	acked := map[string]bool{}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for out.Scan() {
			if keys, found := strings.CutPrefix(out.Text(), "ACK "); found {
				for _, k := range strings.Fields(keys) {
					acked[k] = true
				}
			}
		}
	}()
	select {
	case <-srv.held:
	case <-time.After(45 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the helper never reached the held delivery")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-readDone
	err := cmd.Wait()
	if ws, isWS := cmd.ProcessState.Sys().(syscall.WaitStatus); !isWS || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper was not killed by SIGKILL: %v", err)
	}
	release()
	srv.mu.Lock()
	deliveredBeforeKill := srv.deliveries
	srv.mu.Unlock()
	t.Logf("killed after %d deliveries, %d of %d enqueues acknowledged", deliveredBeforeKill, len(acked), jobs)
	if len(acked) == 0 {
		t.Fatal("no enqueue acknowledged before the kill")
	}

	// Phase 2: restart; the producer re-enqueues every key (it cannot know
	// which enqueues were acknowledged); then everything must complete.
	cmd, out = child("recover")
	var created []string
	finished := false
	for out.Scan() {
		line := out.Text()
		if k, found := strings.CutPrefix(line, "CREATED "); found {
			created = append(created, k)
		}
		if line == "DONE" {
			finished = true
		}
	}
	if err := cmd.Wait(); err != nil || !finished {
		t.Fatalf("recovery run: %v (finished=%v)", err, finished)
	}
	for _, k := range created {
		if acked[k] {
			t.Errorf("acknowledged enqueue of %s was lost (re-enqueue created a new job)", k)
		}
	}

	// The store: exactly one job per key, all done.
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := openQueue(t, db, Options{Logger: zap.NewNop()})
	st, err := q.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if ks := st.Kinds[crashKind]; ks.Done != jobs || ks.Ready+ks.Running+ks.Dead != 0 {
		t.Fatalf("store after recovery: %+v", ks)
	}
	keys := map[string]int{}
	for after := ""; ; {
		page, err := q.List(ListFilter{Kind: crashKind, After: after, Limit: MaxListLimit})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, j := range page {
			keys[j.Key]++
			if j.State != StateDone {
				t.Fatalf("job %s is %s", j.ID, j.State)
			}
		}
		after = page[len(page)-1].ID
	}
	if len(keys) != jobs {
		t.Fatalf("%d distinct keys in the store, want %d", len(keys), jobs)
	}
	for k, n := range keys {
		if n != 1 {
			t.Fatalf("key %s has %d jobs", k, n)
		}
	}

	// The vendor: every key delivered, at least once; one effect per key.
	srv.mu.Lock()
	defer srv.mu.Unlock()
	dups := 0
	for i := range jobs {
		k := crashKey(i)
		switch n := srv.perKey[k]; {
		case n == 0:
			t.Fatalf("key %s never delivered", k)
		case n > 1:
			dups += n - 1
		}
	}
	if len(srv.perKey) != jobs || srv.badKeys != 0 {
		t.Fatalf("vendor saw %d distinct keys (want %d), %d deliveries without a matching key", len(srv.perKey), jobs, srv.badKeys)
	}
	if dups == 0 {
		t.Fatal("the held delivery was not redelivered after the crash")
	}
	t.Logf("vendor: %d deliveries, %d distinct keys (effects), %d duplicate deliveries dropped by key", srv.deliveries, len(srv.perKey), dups)
}

// crashKey is the idempotency key of the i-th job of the crash test.
func crashKey(i int) string { return fmt.Sprintf("shop:order:%d:v1", i) }

// TestCrashHelperProcess is the child process of TestCrashRecovery; it does
// nothing unless CRAFTEDGE_JOBS_CRASH_HELPER=1.
func TestCrashHelperProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("helper process for TestCrashRecovery")
	}
	jobs, _ := strconv.Atoi(os.Getenv(envJobs))
	url := os.Getenv(envURL)
	db, err := bolt.Open(os.Getenv(envDB), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q, err := Open(db, Options{Logger: zap.NewNop(), PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	err = q.Register(crashKind, KindConfig{Concurrency: 8, BaseBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		Single(func(ctx context.Context, task *Task) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(task.Job.Payload)))
			if err != nil {
				return Permanent(err)
			}
			req.Header.Set("Idempotency-Key", task.IdempotencyKey())
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				return fmt.Errorf("vendor: %s", resp.Status)
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- q.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Error(err)
		}
	}()

	stdout := bufio.NewWriter(os.Stdout)
	const batch = 20
	for start := 0; start < jobs; start += batch {
		reqs := make([]EnqueueRequest, 0, batch)
		for i := start; i < min(start+batch, jobs); i++ {
			k := crashKey(i)
			reqs = append(reqs, EnqueueRequest{Kind: crashKind, Key: k, Payload: []byte("payload:" + k)})
		}
		res, err := q.EnqueueBatch(ctx, reqs)
		if err != nil {
			t.Fatal(err)
		}
		var acked []string
		for _, r := range res {
			acked = append(acked, r.Job.Key)
			if r.Created && os.Getenv(envPhase) == "recover" {
				fmt.Fprintln(stdout, "CREATED", r.Job.Key)
			}
		}
		fmt.Fprintln(stdout, "ACK", strings.Join(acked, " "))
		if err := stdout.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getenv(envPhase) == "enqueue" {
		select {} // deliver until the parent kills this process
	}
	deadline := time.Now().Add(40 * time.Second)
	for {
		st, err := q.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if ks := st.Kinds[crashKind]; ks.Ready+ks.Running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs not finished: %+v", st.Kinds[crashKind])
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintln(stdout, "DONE")
	_ = stdout.Flush()
}
