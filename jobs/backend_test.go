package jobs

import (
	"errors"
	"testing"
	"time"
)

func TestExternalTask(t *testing.T) {
	task := ExternalTask(Job{ID: "0123456789abcdef0123456789abcdef", Kind: "outbox", Attempts: 2})
	if got := task.IdempotencyKey(); got != "outbox:0123456789abcdef0123456789abcdef" {
		t.Fatalf("idempotency key %q", got)
	}
	if err := task.SaveContext([]byte("x")); !errors.Is(err, ErrNoQueue) {
		t.Fatalf("SaveContext on an external task: %v", err)
	}
	if d, ok := RetryDelay(RetryAfter(errors.New("429"), 3*time.Second)); !ok || d != 3*time.Second {
		t.Fatalf("RetryDelay %v %v", d, ok)
	}
}
