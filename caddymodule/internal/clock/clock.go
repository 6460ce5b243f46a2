// Package clock is the clock of craftedge's Caddy modules: the core and
// every leaf read the time through Now, so end-to-end tests move it forward
// (Advance) instead of sleeping. The offset is zero in production.
package clock

import (
	"sync/atomic"
	"time"
)

// offset shifts the clock; only tests change it.
var offset atomic.Int64

// Now is the current time as craftedge sees it.
func Now() time.Time { return time.Now().Add(time.Duration(offset.Load())) }

// Advance moves the clock forward by d.
func Advance(d time.Duration) { offset.Add(int64(d)) }

// Reset puts the clock back to the wall clock.
func Reset() { offset.Store(0) }
