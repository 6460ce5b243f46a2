package vendorsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// HeaderIdempotencyKey is the request header naming a write's idempotency
// key; HeaderIdempotentReplayed marks a replayed response.
const (
	HeaderIdempotencyKey     = "Idempotency-Key"
	HeaderIdempotentReplayed = "Idempotent-Replayed"
)

// Write is one effect of an API write, as logged by the Sim.
type Write struct {
	// Seq is the write's 1-based position in arrival order, across kinds.
	Seq int
	// Kind and ID name the entity written.
	Kind Kind
	ID   string
	// Key is the request's Idempotency-Key, "" if it had none.
	Key string
	// Method is PUT or POST.
	Method string
	// Body is the raw request body.
	Body []byte
	// Version is the entity's version after the write; Created reports
	// whether the write created it.
	Version int
	Created bool
	// At is the entity's new updated timestamp.
	At time.Time
}

// idemEntry is the remembered outcome of the first write with a key.
type idemEntry struct {
	fingerprint [sha256.Size]byte
	result      writeResult
	replays     int
}

// writeRequest is an API write, decoded.
type writeRequest struct {
	spec    *apiSpec
	method  string
	path    string
	id      string // "" for a create
	key     string
	body    []byte
	fields  map[string]any
	renames [][2]string // schema change in force at the endpoint
}

// writeResult is the response to a write.
type writeResult struct {
	status   int
	location string
	body     []byte
	event    *Event // webhook event for a fresh effect
	replayed bool
}

// fingerprint identifies a request for idempotency-key reuse checks.
func (w *writeRequest) fingerprint() [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", w.method, w.path)
	h.Write(w.body)
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// applyWrite performs (or replays) a write atomically.
func (s *Sim) applyWrite(w *writeRequest) writeResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	kind := w.spec.kind
	if w.key != "" {
		if e, ok := s.idem[kind][w.key]; ok {
			if e.fingerprint != w.fingerprint() {
				return errorResult(w.spec, http.StatusUnprocessableEntity, codeKeyReused,
					fmt.Sprintf("Idempotency-Key %q was used for a different request", w.key))
			}
			e.replays++
			res := e.result
			res.event, res.replayed = nil, true
			return res
		}
	}
	if bodyID, ok := w.fields["id"]; ok && w.id != "" && fmt.Sprint(bodyID) != w.id {
		return errorResult(w.spec, http.StatusBadRequest, codeBadRequest,
			fmt.Sprintf("body id %v does not match path id %q", bodyID, w.id))
	}

	c := s.data[kind]
	c.stripManaged(w.fields)
	id := w.id
	if id == "" {
		id = c.newID()
	}
	rec, exists := c.records[id]
	if !exists {
		rec = &record{}
		c.records[id] = rec
	}
	rec.fields = w.fields
	rec.version++
	rec.updated = s.now().UTC()

	s.writeSeq++
	s.writes = append(s.writes, Write{
		Seq: s.writeSeq, Kind: kind, ID: id, Key: w.key, Method: w.method,
		Body: bytes.Clone(w.body), Version: rec.version, Created: !exists, At: rec.updated,
	})

	out := c.render(id, rec)
	applyRenames(out, w.renames)
	res := writeResult{status: http.StatusOK, body: mustJSON(out)}
	verb := "updated"
	if !exists {
		res.status = http.StatusCreated
		res.location = c.spec.collection + "/" + id
		verb = "created"
	}
	if w.key != "" {
		s.idem[kind][w.key] = &idemEntry{fingerprint: w.fingerprint(), result: res}
	}
	res.event = &Event{Type: string(kind) + "." + verb, ID: id, Version: rec.version}
	return res
}

// errorResult is a write refused before any effect; it is not remembered
// under the idempotency key.
func errorResult(spec *apiSpec, status int, code, msg string) writeResult {
	return writeResult{status: status, body: mustJSON(spec.errorBody(status, code, msg))}
}

// Writes returns the log of API write effects in arrival order. Replays
// and refused writes are not in it; Update is not an API write.
func (s *Sim) Writes() []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Write, len(s.writes))
	copy(out, s.writes)
	return out
}

// WritesFor returns the logged writes to one entity, in arrival order.
func (s *Sim) WritesFor(kind Kind, id string) []Write {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Write
	for _, w := range s.writes {
		if w.Kind == kind && w.ID == id {
			out = append(out, w)
		}
	}
	return out
}

// EffectsByKey returns, for kind, how many logged writes carried each
// idempotency key (writes without a key are not counted). Every value is 1
// unless ResetWrites was called in between.
func (s *Sim) EffectsByKey(kind Kind) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int)
	for _, w := range s.writes {
		if w.Kind == kind && w.Key != "" {
			out[w.Key]++
		}
	}
	return out
}

// Replays returns how many times a write with key was answered from the
// idempotency store instead of being performed.
func (s *Sim) Replays(kind Kind, key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.idem[kind][key]; ok {
		return e.replays
	}
	return 0
}

// ResetWrites empties the write log. Idempotency keys are kept, so a key
// seen before the reset is still replayed.
func (s *Sim) ResetWrites() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes = nil
}

// mustJSON encodes a JSON-shaped value; it cannot fail for the maps the sim
// builds from decoded JSON and its own literals.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("vendorsim: encoding response: %v", err))
	}
	return append(b, '\n')
}
