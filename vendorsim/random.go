package vendorsim

import (
	"math/rand/v2"
	"sync"
)

// Stream numbers keep the seeded generators independent of each other, so
// that, say, adding contacts does not change the products.
const (
	streamProducts uint64 = iota + 1
	streamContacts
	streamWebhooks
	streamEndpoints // endpoint n uses streamEndpoints + n
)

// lockedRand is a seeded generator safe for concurrent use.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRand(seed int64, stream uint64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(uint64(seed), stream))}
}

// Float64 returns a number in [0, 1).
func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

// Int64N returns a number in [0, n); n must be positive.
func (l *lockedRand) Int64N(n int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Int64N(n)
}

// IntN returns a number in [0, n); n must be positive.
func (l *lockedRand) IntN(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.IntN(n)
}

// hit reports whether a roll falls under rate: always for rate >= 1, never
// for rate <= 0 (without consuming randomness in either case).
func (l *lockedRand) hit(rate float64) bool {
	switch {
	case rate <= 0:
		return false
	case rate >= 1:
		return true
	}
	return l.Float64() < rate
}
