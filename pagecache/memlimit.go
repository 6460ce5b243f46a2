package pagecache

import (
	"math"
	"os"
	"runtime/debug"
	"sync"
)

// MemoryLimitOverhead is the fixed allowance, beyond the memory bound,
// of the soft memory limit a tier sets when Options.SetMemoryLimit is on:
// the rest of the process (Caddy, the snapshot store's queue, requests in
// flight, goroutine stacks) and the garbage the collector lets accumulate
// between cycles.
const MemoryLimitOverhead = 40 << 20

// MemoryLimitFor is the soft memory limit set for memory tiers bounding
// bound bytes in total (entries and tag index, see SplitBound), plus
// MemoryLimitOverhead.
func MemoryLimitFor(bound int64) int64 {
	return bound + MemoryLimitOverhead
}

// memoryLimit tracks the tiers that set the process's soft memory limit.
var memoryLimit struct {
	mu     sync.Mutex
	bounds int64 // sum of the bounds of open tiers that set it
	tiers  int
	prev   int64 // the limit before the first tier set it
}

// userMemoryLimit reports whether the operator chose the limit (GOMEMLIMIT
// in the environment, including "off"): then it is left alone.
func userMemoryLimit() bool {
	_, ok := os.LookupEnv("GOMEMLIMIT")
	return ok
}

// holdMemoryLimit raises the soft memory limit by this tier's bound and
// returns the function that lowers it again (restoring the previous limit
// when the last tier goes). It does nothing when GOMEMLIMIT is set.
func holdMemoryLimit(bound int64) (release func()) {
	if userMemoryLimit() {
		return func() {}
	}
	m := &memoryLimit
	m.mu.Lock()
	if m.tiers == 0 {
		m.prev = debug.SetMemoryLimit(-1)
	}
	m.tiers++
	m.bounds += bound
	debug.SetMemoryLimit(MemoryLimitFor(m.bounds))
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			m.tiers--
			m.bounds -= bound
			if m.tiers == 0 {
				debug.SetMemoryLimit(m.prev)
			} else {
				debug.SetMemoryLimit(MemoryLimitFor(m.bounds))
			}
			m.mu.Unlock()
		})
	}
}

// CurrentMemoryLimit is the process's soft memory limit, or 0 when there
// is none.
func CurrentMemoryLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	return 0
}
