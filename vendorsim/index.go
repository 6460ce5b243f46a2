package vendorsim

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
)

// The search index API, served on every endpoint under the chaos knobs
// like the vendor APIs. Its shapes are Meilisearch's document routes (the
// craftedge push preset "meilisearch"), plus a PUT of one document by id
// (the shape of the "elasticsearch" and "algolia" presets), so the push of
// normalized records can be tested without a search engine installed:
//
//	PUT    /indexes/{index}/documents/{id}   one document; 200
//	POST   /indexes/{index}/documents        an array of documents (or one), each with "id"; 202
//	DELETE /indexes/{index}/documents/{id}   200, or 404 when absent
//	GET    /indexes/{index}/documents/{id}   the document, or 404
//	GET    /indexes/{index}/documents        {"results":[... by id],"total":n}
//	GET    /indexes/{index}/search?q=<text>  {"hits":[...],"query":q}: documents with a string
//	                                         value containing q (case-insensitive), by id
//
// Requests need "Authorization: Bearer <Options.IndexToken>". A write
// with an Idempotency-Key has its effect once per key: a repeat of the
// same request gets the first answer again with "Idempotent-Replayed:
// true"; another request with the key is a 422. FailAfterWrite loses the
// answer of a write whose effect was kept (502). Every effect is logged
// (Sim.IndexWrites).
const (
	RouteIndexPut    = "PUT /indexes/{index}/documents/{id}"
	RouteIndexPost   = "POST /indexes/{index}/documents"
	RouteIndexDelete = "DELETE /indexes/{index}/documents/{id}"
	RouteIndexGet    = "GET /indexes/{index}/documents/{id}"
	RouteIndexList   = "GET /indexes/{index}/documents"
	RouteIndexSearch = "GET /indexes/{index}/search"
)

// DefaultIndexToken is the index API's bearer token when
// Options.IndexToken is empty.
const DefaultIndexToken = "sim-index-token"

// IndexWrite is one effect on the search index, in arrival order.
type IndexWrite struct {
	// Seq is the effect's 1-based position among the index's effects.
	Seq int
	// Index and ID name the document.
	Index, ID string
	// Op is "upsert" or "delete".
	Op string
	// Key is the request's Idempotency-Key, "" if none.
	Key string
	// Doc is the document written (nil for a delete).
	Doc map[string]any
}

// searchIndex holds the index API's documents, keys and effect log; the
// Sim's mutex guards it.
type searchIndex struct {
	docs   map[string]map[string]map[string]any // index → id → document
	idem   map[string]*indexIdem
	writes []IndexWrite
}

type indexIdem struct {
	fingerprint [sha256.Size]byte
	status      int
	body        []byte
}

func newSearchIndex() *searchIndex {
	return &searchIndex{docs: map[string]map[string]map[string]any{}, idem: map[string]*indexIdem{}}
}

// registerIndex adds the index routes to e.
func (e *Endpoint) registerIndex() {
	e.mux.HandleFunc(RouteIndexPut, e.indexWrite)
	e.mux.HandleFunc(RouteIndexPost, e.indexWrite)
	e.mux.HandleFunc(RouteIndexDelete, e.indexWrite)
	e.mux.HandleFunc(RouteIndexGet, e.indexRead)
	e.mux.HandleFunc(RouteIndexList, e.indexRead)
	e.mux.HandleFunc(RouteIndexSearch, e.indexRead)
}

// indexAdmit checks the index token.
func (e *Endpoint) indexAdmit(w http.ResponseWriter, r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(e.sim.opts.IndexToken)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vendorsim-index"`)
		writeJSON(w, http.StatusUnauthorized, indexError("invalid_api_key", "missing or invalid bearer token"))
		return false
	}
	return true
}

func indexError(code, msg string) map[string]string {
	return map[string]string{"code": code, "message": msg}
}

// indexWrite serves the PUT, POST and DELETE routes.
func (e *Endpoint) indexWrite(w http.ResponseWriter, r *http.Request) {
	if !e.indexAdmit(w, r) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		writeJSON(w, http.StatusBadRequest, indexError("bad_request", "unreadable or too large body"))
		return
	}
	index, id, key := r.PathValue("index"), r.PathValue("id"), r.Header.Get(HeaderIdempotencyKey)
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", r.Method, r.URL.Path)
	h.Write(body)
	var fp [sha256.Size]byte
	copy(fp[:], h.Sum(nil))

	s := e.sim
	s.mu.Lock()
	status, out, replayed := s.applyIndexWrite(r.Method, index, id, key, fp, body)
	s.mu.Unlock()
	if replayed {
		w.Header().Set(HeaderIdempotentReplayed, "true")
	}
	if status < 300 && e.chaos.loseWriteResponse(r.URL.Path) {
		writeHTML(w, http.StatusBadGateway)
		return
	}
	writeRaw(w, status, out)
}

// applyIndexWrite performs (or replays) one write under s.mu.
func (s *Sim) applyIndexWrite(method, index, id, key string, fp [sha256.Size]byte, body []byte) (int, []byte, bool) {
	ix := s.index
	if key != "" {
		if e, ok := ix.idem[key]; ok {
			if e.fingerprint != fp {
				return http.StatusUnprocessableEntity, mustJSON(indexError("idempotency_key_reused",
					fmt.Sprintf("Idempotency-Key %q was used for a different request", key))), false
			}
			return e.status, e.body, true
		}
	}
	var docs []map[string]any
	switch method {
	case http.MethodDelete:
	case http.MethodPut:
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
			return http.StatusBadRequest, mustJSON(indexError("bad_request", "the body must be a JSON object")), false
		}
		if v, ok := doc["id"]; ok && fmt.Sprint(v) != id {
			return http.StatusBadRequest, mustJSON(indexError("bad_request", fmt.Sprintf("body id %v does not match path id %q", v, id))), false
		}
		docs = []map[string]any{doc}
	default: // POST: an array, or one object
		trimmed := bytes.TrimSpace(body)
		if len(trimmed) > 0 && trimmed[0] == '{' {
			trimmed = append(append([]byte{'['}, trimmed...), ']')
		}
		if err := json.Unmarshal(trimmed, &docs); err != nil || len(docs) == 0 {
			return http.StatusBadRequest, mustJSON(indexError("bad_request", "the body must be a non-empty JSON array of objects")), false
		}
		for _, d := range docs {
			v, ok := d["id"]
			if !ok || d == nil || fmt.Sprint(v) == "" {
				return http.StatusBadRequest, mustJSON(indexError("missing_document_id", "every document needs an id")), false
			}
		}
	}
	status, out := http.StatusOK, []byte(nil)
	if ix.docs[index] == nil {
		ix.docs[index] = map[string]map[string]any{}
	}
	if method == http.MethodDelete {
		if _, ok := ix.docs[index][id]; !ok {
			// A 404 is not remembered under the key: nothing happened.
			return http.StatusNotFound, mustJSON(indexError("document_not_found", fmt.Sprintf("document %q not found", id))), false
		}
		delete(ix.docs[index], id)
		ix.writes = append(ix.writes, IndexWrite{Seq: len(ix.writes) + 1, Index: index, ID: id, Op: "delete", Key: key})
		out = mustJSON(map[string]any{"deleted": id})
	} else {
		for _, d := range docs {
			did := id
			if did == "" {
				did = fmt.Sprint(d["id"])
			}
			d["id"] = did
			ix.docs[index][did] = d
			ix.writes = append(ix.writes, IndexWrite{Seq: len(ix.writes) + 1, Index: index, ID: did, Op: "upsert", Key: key, Doc: cloneDoc(d)})
		}
		if method == http.MethodPost {
			status = http.StatusAccepted
			out = mustJSON(map[string]any{"status": "enqueued", "indexed": len(docs)})
		} else {
			out = mustJSON(docs[0])
		}
	}
	if key != "" {
		ix.idem[key] = &indexIdem{fingerprint: fp, status: status, body: out}
	}
	return status, out, false
}

// indexRead serves the GET routes.
func (e *Endpoint) indexRead(w http.ResponseWriter, r *http.Request) {
	if !e.indexAdmit(w, r) {
		return
	}
	index, id := r.PathValue("index"), r.PathValue("id")
	s := e.sim
	s.mu.Lock()
	defer s.mu.Unlock()
	docs := s.index.docs[index]
	switch {
	case id != "":
		d, ok := docs[id]
		if !ok {
			writeJSON(w, http.StatusNotFound, indexError("document_not_found", fmt.Sprintf("document %q not found", id)))
			return
		}
		writeJSON(w, http.StatusOK, d)
	case strings.HasSuffix(r.URL.Path, "/search"):
		q := strings.ToLower(r.URL.Query().Get("q"))
		hits := []map[string]any{}
		for _, d := range sortedDocs(docs) {
			if matches(d, q) {
				hits = append(hits, d)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"hits": hits, "query": r.URL.Query().Get("q")})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"results": sortedDocs(docs), "total": len(docs)})
	}
}

// matches reports whether a string value of d (nested ones included)
// contains q.
func matches(v any, q string) bool {
	switch t := v.(type) {
	case string:
		return strings.Contains(strings.ToLower(t), q)
	case map[string]any:
		for _, e := range t {
			if matches(e, q) {
				return true
			}
		}
	case []any:
		for _, e := range t {
			if matches(e, q) {
				return true
			}
		}
	}
	return false
}

func sortedDocs(docs map[string]map[string]any) []map[string]any {
	ids := make([]string, 0, len(docs))
	for id := range docs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]map[string]any, len(ids))
	for i, id := range ids {
		out[i] = docs[id]
	}
	return out
}

func cloneDoc(d map[string]any) map[string]any {
	var out map[string]any
	_ = json.Unmarshal(mustJSON(d), &out)
	return out
}

// IndexDocument returns a copy of a document of the search index.
func (s *Sim) IndexDocument(index, id string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.index.docs[index][id]
	if !ok {
		return nil, false
	}
	return cloneDoc(d), true
}

// IndexDocuments returns how many documents an index holds.
func (s *Sim) IndexDocuments(index string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index.docs[index])
}

// IndexWrites returns the search index's effects, in arrival order.
func (s *Sim) IndexWrites() []IndexWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]IndexWrite, len(s.index.writes))
	for i, w := range s.index.writes {
		w.Doc = cloneDoc(w.Doc)
		out[i] = w
	}
	return out
}

// ClearIndex drops every document of every index (the effect log and the
// idempotency keys stay), as a lost or recreated index would.
func (s *Sim) ClearIndex() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index.docs = map[string]map[string]map[string]any{}
}
