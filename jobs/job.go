package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// State is the lifecycle state of a job.
type State string

// The states of a job.
const (
	// StateReady is a job waiting for its run-at time, for a worker, or (see
	// Job.Blocked) for an earlier job of its entity.
	StateReady State = "ready"
	// StateRunning is a job claimed by a worker under a lease.
	StateRunning State = "running"
	// StateDone is a job whose handler succeeded. Done jobs are deleted
	// Options.Retention after they finished.
	StateDone State = "done"
	// StateDead is a dead letter: a job that failed permanently or ran out
	// of attempts. It stays until FlushDead deletes it.
	StateDead State = "dead"
)

// states lists every state, in lifecycle order.
var states = []State{StateReady, StateRunning, StateDone, StateDead}

// ParseState returns the State named s, or an error wrapping ErrUnknownState.
func ParseState(s string) (State, error) {
	for _, st := range states {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("%w: %q (want ready, running, done or dead)", ErrUnknownState, s)
}

// Job is the stored state of one job, as returned by Enqueue, Get and List and
// handed to handlers in Task.Job.
type Job struct {
	// ID identifies the job: 32 lower-case hex digits, 128 random bits, so
	// that an ID cannot be guessed from another (jobs accepted before IDs
	// were random keep their 16-digit sequence number). IDs carry no order:
	// List returns jobs in acceptance order.
	ID string `json:"id"`
	// Kind selects the handler (see Queue.Register).
	Kind string `json:"kind"`
	// Key is the idempotency key, unique per kind among live jobs; empty
	// for a job enqueued without one.
	Key string `json:"key,omitempty"`
	// Entity orders jobs of one kind and entity (see the package doc);
	// empty for an unordered job.
	Entity string `json:"entity,omitempty"`
	// Correlation ties the job to what caused it, for logs: the request id
	// (Caddy's {http.request.uuid}) of the HTTP request that enqueued it,
	// such as an outbox write or a webhook. Empty for jobs started by a
	// schedule. Workers log it as request_id with every attempt.
	Correlation string `json:"correlation,omitempty"`
	// Payload is what the job was enqueued with, unchanged.
	Payload []byte `json:"payload,omitempty"`
	// Context is the progress the handler saved with Task.SaveContext (or
	// the initial context given to Enqueue).
	Context []byte `json:"context,omitempty"`
	// State is the lifecycle state.
	State State `json:"state"`
	// Blocked reports a ready job waiting for an earlier-accepted job of
	// the same kind and entity to finish.
	Blocked bool `json:"blocked,omitempty"`
	// RunAt is the earliest time the job may (next) run.
	RunAt time.Time `json:"run_at"`
	// CreatedAt is when the job was accepted.
	CreatedAt time.Time `json:"created_at"`
	// UpdatedAt is when the job's record last changed.
	UpdatedAt time.Time `json:"updated_at"`
	// StartedAt is when the current or last attempt started.
	StartedAt time.Time `json:"started_at,omitzero"`
	// FinishedAt is when the job became done or dead.
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// LeaseUntil is when the claim of a running job expires unless renewed.
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// Attempts counts attempts started since the job was accepted or last
	// replayed; it is incremented when a worker claims the job.
	Attempts int `json:"attempts"`
	// LastError is the error of the last failed attempt.
	LastError string `json:"last_error,omitempty"`
	// History has one entry per finished attempt, oldest first, kept across
	// replays.
	History []Attempt `json:"history,omitempty"`
}

// Attempt is one finished attempt of a job.
type Attempt struct {
	// At is when the attempt started.
	At time.Time `json:"at"`
	// Duration is how long it ran (until the handler returned, or until
	// its lease was found expired).
	Duration time.Duration `json:"duration_ns"`
	// Error is the attempt's error; empty for the successful attempt.
	Error string `json:"error,omitempty"`
}

// record is the stored form of a job: the public Job plus the bookkeeping
// that only this package reads.
type record struct {
	Job
	// Owner is the Run that holds the lease of a running job.
	Owner uint64 `json:"owner,omitempty"`
	// Claim identifies the current claim; completions and renewals carrying
	// another claim are stale and ignored.
	Claim uint64 `json:"claim,omitempty"`
	// EntitySeq is the job's position in its entity queue.
	EntitySeq uint64 `json:"entity_seq,omitempty"`

	id uint64 // the job's sequence number (its key in jobs_records)
}

// idMatches reports whether r's public ID fits its sequence number: a random
// ID (indexed in jobs_ids), or the sequence number itself for a job accepted
// before IDs were random.
func (r *record) idMatches(seq uint64) bool {
	_, ok := randomID(r.ID)
	return ok || r.ID == formatID(seq)
}

// newRandomID returns a fresh random job ID: 128 bits from crypto/rand, in
// lower-case hex.
func newRandomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand.Read panics instead)
	return hex.EncodeToString(b[:])
}

// randomID decodes a random job ID (32 lower-case hex digits) to its 16
// bytes, the key of jobs_ids.
func randomID(s string) ([]byte, bool) {
	if len(s) != 32 {
		return nil, false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return nil, false
		}
	}
	b, err := hex.DecodeString(s)
	return b, err == nil
}

// clone returns a deep enough copy of r for a transaction to modify: the
// history slice is copied, byte slices are shared (they are never mutated in
// place).
func (r *record) clone() *record {
	c := *r
	c.History = append([]Attempt(nil), r.History...)
	return &c
}

// maxErrorLen bounds stored error strings so that a vendor's huge error body
// cannot bloat records.
const maxErrorLen = 4 << 10

// errorText returns err's message truncated to maxErrorLen bytes.
func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen] + "…(truncated)"
	}
	return s
}

// formatID renders a sequence number as 16 hex digits: the ID of a job
// accepted before IDs were random, and how logs name an unreadable record.
func formatID(id uint64) string {
	const hex = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hex[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// parseID parses a sequence-number job ID, returning an error wrapping
// ErrInvalidID.
func parseID(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("%w: %q", ErrInvalidID, s)
	}
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%w: %q", ErrInvalidID, s)
	}
	return id, nil
}
