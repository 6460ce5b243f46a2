package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"github.com/craftedge/craftedge/caddymodule/internal/clock"
)

// nowFunc is the clock of the app and of every module: see package clock.
func nowFunc() time.Time { return clock.Now() }

// Running reports whether a craftedge app is loaded. End-to-end tests use
// it to check that unloading a config released the app's state.
func Running() bool { return currentApp.Load() != nil }

// FlushSnapshots waits until the running app's write-behind queue reached
// the bbolt file. End-to-end tests call it before reading the file.
func FlushSnapshots() error {
	a := currentApp.Load()
	if a == nil {
		return errors.New("no running craftedge app")
	}
	if err := a.store.Flush(); err != nil {
		return fmt.Errorf("flushing snapshots: %w", err)
	}
	return nil
}

// FailCDNEnqueues makes the next n cdn.purge enqueues fail, as a full or
// broken job queue would (0 clears it). End-to-end tests of the module
// packages use it; the core's own tests set cdnEnqueueFaults.
func FailCDNEnqueues(n int32) { cdnEnqueueFaults.Store(n) }

// ResetWebhookRejections forgets the recent webhook rejections (what
// RecentWebhookRejections reports), so a test sees only its own.
func ResetWebhookRejections() { webhookRejections.reset() }
