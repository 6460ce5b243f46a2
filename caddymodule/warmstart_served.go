package caddymodule

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/snapshot"
)

// The warm start refills the pages served most first. What was served is
// sampled on the hit path (NoteServed: one hit in eight, a hash of its
// key into a ring, no lock, no allocation, no disk), folded every few
// seconds into decaying scores by a goroutine of the app, and written to
// the bbolt file every servedPersistEvery (and at stop), so a SIGKILL
// loses at most that much of it.

// servedSampleMask selects the hits NoteServed samples: those for which a
// random number has none of its bits set (7: one in eight). Tests set 0.
var servedSampleMask uint32 = 7

// servedRingSize is how many sampled hits the ring holds between two
// folds; at more than that many sampled hits per fold the oldest are
// overwritten, which is still a sample.
const servedRingSize = 4096

// Fold and persistence periods, the scores' half-life, and the most keys
// kept (the rest, the least served, are dropped).
const (
	servedFoldEvery    = 2 * time.Second
	servedPersistEvery = 10 * time.Second
	servedHalfLife     = 30 * time.Minute
	servedMaxKeys      = 16384
	servedMinScore     = 0.05
)

// bucketWarmServed holds the scores in the app's bbolt file: under
// servedScoresKey, entries of a key's xxhash (8 bytes BE) and its score
// (float32 bits, 4 bytes BE), most served first.
var (
	bucketWarmServed = []byte("warm_start_served")
	servedScoresKey  = []byte("scores_v1")
)

// servedRing is the hit path's side: slots of key hashes (0 = empty),
// written in turn.
type servedRing struct {
	pos   atomic.Uint64
	slots [servedRingSize]atomic.Uint64
}

// servedScores is the fold's side: decaying scores per key hash, guarded
// by mu.
type servedScores struct {
	mu      sync.Mutex
	read    uint64 // ring position folded up to
	scores  map[uint64]float64
	decayAt time.Time
	dirty   bool
	// from is the store the scores were loaded from (once per store).
	from *snapshot.Store
}

// The memory tier outlives configs (reloads keep it), and so do these.
var (
	served       servedRing
	servedByHash = servedScores{scores: map[uint64]float64{}}
)

// servedHash is the hash scores are kept under; stable across processes.
func servedHash(key string) uint64 { return xxhash.Sum64String(key) | 1 }

// NoteServed records that key was served from the memory tier, for one
// hit in eight: the warm start refills the pages served most first. It
// takes no lock and allocates nothing.
func (a *App) NoteServed(key string) {
	if rand.Uint32()&servedSampleMask != 0 {
		return
	}
	served.slots[(served.pos.Add(1)-1)%servedRingSize].Store(servedHash(key))
}

// fold adds the hits sampled since the last fold to the scores, decaying
// them first by the time since the last decay.
func (s *servedScores) fold(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.decayAt.IsZero() {
		if d := now.Sub(s.decayAt); d > 0 {
			f := math.Exp2(-float64(d) / float64(servedHalfLife))
			for h, v := range s.scores {
				if v *= f; v < servedMinScore {
					delete(s.scores, h)
				} else {
					s.scores[h] = v
				}
			}
		}
	}
	s.decayAt = now
	end := served.pos.Load()
	start := max(s.read, end-min(end, servedRingSize))
	for i := start; i < end; i++ {
		if h := served.slots[i%servedRingSize].Load(); h != 0 {
			s.scores[h]++
			s.dirty = true
		}
	}
	s.read = end
	if len(s.scores) > 2*servedMaxKeys {
		s.trimLocked()
	}
}

// sortedLocked returns the scores, most served first.
func (s *servedScores) sortedLocked() []servedScore {
	out := make([]servedScore, 0, len(s.scores))
	for h, v := range s.scores {
		out = append(out, servedScore{h, v})
	}
	slices.SortFunc(out, func(a, b servedScore) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.hash, b.hash)
	})
	return out
}

// trimLocked keeps the servedMaxKeys most served.
func (s *servedScores) trimLocked() {
	top := s.sortedLocked()
	if len(top) <= servedMaxKeys {
		return
	}
	for _, x := range top[servedMaxKeys:] {
		delete(s.scores, x.hash)
	}
}

type servedScore struct {
	hash  uint64
	score float64
}

// top returns a copy of the scores by key hash.
func (s *servedScores) top() map[uint64]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[uint64]float64, len(s.scores))
	for h, v := range s.scores {
		out[h] = v
	}
	return out
}

// load replaces the scores with those stored in store's file, once per
// store: at start they are the last process's; a config naming another
// file serves another site. Hits sampled before are dropped.
func (s *servedScores) load(store *snapshot.Store, log *zap.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.from == store {
		return
	}
	s.from = store
	s.scores = map[uint64]float64{}
	s.read = served.pos.Load()
	s.dirty = false
	if store.Damaged() != nil {
		return
	}
	var raw []byte
	err := store.DB().View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketWarmServed); b != nil {
			raw = append(raw, b.Get(servedScoresKey)...)
		}
		return nil
	})
	if err != nil {
		log.Warn("warm start: reading the served pages' scores (refilling newest first)", zap.Error(err))
		return
	}
	if len(raw)%12 != 0 {
		log.Warn("warm start: the served pages' scores are damaged (refilling newest first)",
			zap.String("path", store.Path()), zap.Int("bytes", len(raw)))
		return
	}
	for i := 0; i < len(raw); i += 12 {
		h := binary.BigEndian.Uint64(raw[i:])
		v := float64(math.Float32frombits(binary.BigEndian.Uint32(raw[i+8:])))
		if h == 0 || !(v > 0) || math.IsInf(v, 0) {
			continue
		}
		s.scores[h] += v
	}
	if len(s.scores) > servedMaxKeys {
		s.trimLocked()
	}
}

// persist writes the scores to store's file when they changed.
func (s *servedScores) persist(store *snapshot.Store) error {
	s.mu.Lock()
	if !s.dirty || store.Damaged() != nil {
		s.mu.Unlock()
		return nil
	}
	top := s.sortedLocked()
	s.dirty = false
	s.mu.Unlock()
	top = top[:min(len(top), servedMaxKeys)]
	raw := make([]byte, 0, 12*len(top))
	for _, x := range top {
		raw = binary.BigEndian.AppendUint64(raw, x.hash)
		raw = binary.BigEndian.AppendUint32(raw, math.Float32bits(float32(x.score)))
	}
	err := store.DB().Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketWarmServed)
		if err != nil {
			return err
		}
		return b.Put(servedScoresKey, raw)
	})
	if err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("warm start: storing the served pages' scores in %s: %w", store.Path(), err)
	}
	return nil
}

// runServedScores folds the sampled hits every servedFoldEvery and stores
// the scores every servedPersistEvery until ctx is done.
func (a *App) runServedScores(ctx context.Context) {
	fold := time.NewTicker(servedFoldEvery)
	defer fold.Stop()
	lastPersist := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-fold.C:
			servedByHash.fold(now)
			if now.Sub(lastPersist) >= servedPersistEvery {
				lastPersist = now
				if err := servedByHash.persist(a.store); err != nil {
					a.logger.Warn("warm start: served pages' scores not stored", zap.Error(err))
				}
			}
		}
	}
}

// stopServedScores folds and stores the scores once more (at Stop: what
// a clean stop knows is not lost).
func (a *App) stopServedScores() {
	if !a.warmStartOn() || a.store == nil || validatingOnly {
		return
	}
	servedByHash.fold(time.Now())
	if err := servedByHash.persist(a.store); err != nil {
		a.logger.Warn("warm start: served pages' scores not stored", zap.Error(err))
	}
}
