package vendors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/craftedge/craftedge/circuit"
)

// Push body shapes (PushSpec.Body).
const (
	// PushBodyDocument sends a flat document: the record's fields with the
	// id under PushSpec.IDField, as search engines index them.
	PushBodyDocument = "document"
	// PushBodyRecord sends the normalized record as the read-model API
	// serves it (vendor, resource, id, version, updated_at, fields,
	// deleted), as an analytics endpoint receives events.
	PushBodyRecord = "record"
)

// PushSpec says how a normalized record is sent to an index (a search
// engine or an analytics endpoint): one request per record change, an
// upsert for a live record, a delete for a deleted one. Presets fill it
// for the common engines (PushPreset).
type PushSpec struct {
	// Method of the upsert request: PUT, POST or PATCH. Default PUT.
	Method string `json:"method,omitempty"`
	// Path of the upsert request under the vendor's versioned base URL,
	// with {id} (the record id, path-escaped) if the engine wants it in
	// the path, e.g. "/indexes/products/documents". Required.
	Path string `json:"path"`
	// DeleteMethod is the method of the delete request. Default DELETE.
	DeleteMethod string `json:"delete_method,omitempty"`
	// DeletePath is the path of the delete request, usually with {id}.
	// Empty sends a deletion as an upsert of the record marked deleted
	// (Body "record": "deleted": true; "document": the id and
	// "_deleted": true), for endpoints that take events, not deletes.
	DeletePath string `json:"delete_path,omitempty"`
	// Body is PushBodyDocument (default) or PushBodyRecord.
	Body string `json:"body,omitempty"`
	// IDField is the document's id field ("id"; Algolia's "objectID").
	// Default "id".
	IDField string `json:"id_field,omitempty"`
	// Array wraps the body in a one-element JSON array (Meilisearch's
	// documents route takes an array).
	Array bool `json:"array,omitempty"`
	// Fields, if set, is the allow-list of the record's fields a document
	// carries; empty sends every field.
	Fields []string `json:"fields,omitempty"`
	// ReservedIDs are record ids that, put in place of {id}, would name
	// another endpoint of the engine (Algolia's PUT /1/indexes/<index>/settings
	// changes the index's settings): a record with one is refused, never
	// sent. The algolia preset sets them.
	ReservedIDs []string `json:"reserved_ids,omitempty"`
}

// algoliaReservedIDs are the names Algolia's API uses right after an
// index name; an objectID equal to one would reach that endpoint.
var algoliaReservedIDs = []string{"batch", "browse", "clear", "deleteByQuery", "facets", "keys",
	"objects", "operation", "partial", "queries", "query", "rules", "settings", "synonyms", "task"}

// Push presets (PushPreset's names).
const (
	PresetMeilisearch   = "meilisearch"
	PresetTypesense     = "typesense"
	PresetAlgolia       = "algolia"
	PresetElasticsearch = "elasticsearch"
)

// PushPresets lists the preset names, sorted.
var PushPresets = []string{PresetAlgolia, PresetElasticsearch, PresetMeilisearch, PresetTypesense}

// PushPreset returns the PushSpec of a known engine's document API for
// index (an index, collection or Algolia index name):
//
//	meilisearch    POST   /indexes/<index>/documents        [doc]
//	               DELETE /indexes/<index>/documents/{id}
//	typesense      POST   /collections/<index>/documents?action=upsert  doc
//	               DELETE /collections/<index>/documents/{id}
//	algolia        PUT    /1/indexes/<index>/{id}           doc with objectID
//	               DELETE /1/indexes/<index>/{id}
//	elasticsearch  PUT    /<index>/_doc/{id}                doc (also OpenSearch)
//	               DELETE /<index>/_doc/{id}
//
// Credentials (Meilisearch's Bearer key, Typesense's X-TYPESENSE-API-KEY,
// Algolia's X-Algolia-Application-Id and X-Algolia-API-Key) are the
// vendor's headers.
func PushPreset(name, index string) (PushSpec, error) {
	if index == "" || strings.ContainsAny(index, "/?#%{} \t\r\n\x00") {
		return PushSpec{}, fmt.Errorf("push preset %s: index %q: want a non-empty name without '/', '?', '#', '%%', braces or spaces", name, index)
	}
	switch name {
	case PresetMeilisearch:
		return PushSpec{Method: http.MethodPost, Path: "/indexes/" + index + "/documents", Array: true,
			DeletePath: "/indexes/" + index + "/documents/{id}"}, nil
	case PresetTypesense:
		return PushSpec{Method: http.MethodPost, Path: "/collections/" + index + "/documents?action=upsert",
			DeletePath: "/collections/" + index + "/documents/{id}"}, nil
	case PresetAlgolia:
		return PushSpec{Method: http.MethodPut, Path: "/1/indexes/" + index + "/{id}", IDField: "objectID",
			DeletePath: "/1/indexes/" + index + "/{id}", ReservedIDs: algoliaReservedIDs}, nil
	case PresetElasticsearch:
		return PushSpec{Method: http.MethodPut, Path: "/" + index + "/_doc/{id}",
			DeletePath: "/" + index + "/_doc/{id}"}, nil
	}
	return PushSpec{}, fmt.Errorf("unknown push preset %q (known: %s)", name, strings.Join(PushPresets, ", "))
}

// WithDefaults returns s with its zero optional fields set.
func (s PushSpec) WithDefaults() PushSpec {
	if s.Method == "" {
		s.Method = http.MethodPut
	}
	s.Method = strings.ToUpper(s.Method)
	if s.DeleteMethod == "" {
		s.DeleteMethod = http.MethodDelete
	}
	s.DeleteMethod = strings.ToUpper(s.DeleteMethod)
	if s.Body == "" {
		s.Body = PushBodyDocument
	}
	if s.IDField == "" {
		s.IDField = "id"
	}
	return s
}

// Validate checks s (after defaults), naming the field at fault.
func (s PushSpec) Validate() error {
	s = s.WithDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	checkPushPath := func(field, p string) {
		if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "#\\\x00\r\n ") {
			bad(field, "must be an absolute path without '#', '\\', spaces or control characters (got %q)", p)
			return
		}
		checkTemplate(bad, field, p, "id")
	}
	if s.Path == "" {
		bad("path", "is required")
	} else {
		checkPushPath("path", s.Path)
	}
	if s.DeletePath != "" {
		checkPushPath("delete_path", s.DeletePath)
	}
	switch s.Method {
	case http.MethodPut, http.MethodPost, http.MethodPatch:
	default:
		bad("method", "must be PUT, POST or PATCH (got %q)", s.Method)
	}
	switch s.DeleteMethod {
	case http.MethodDelete, http.MethodPost, http.MethodPut:
	default:
		bad("delete_method", "must be DELETE, POST or PUT (got %q)", s.DeleteMethod)
	}
	switch s.Body {
	case PushBodyDocument, PushBodyRecord:
	default:
		bad("body", "must be %s or %s (got %q)", PushBodyDocument, PushBodyRecord, s.Body)
	}
	for _, f := range s.Fields {
		if f == "" {
			bad("fields", "a field name is empty")
		}
	}
	return errors.Join(errs...)
}

// PushDocument returns the body that pushes rec under s: the upsert's
// document, or, for a deleted record sent without a delete path, the
// record marked deleted. del reports that rec is pushed as a delete
// request (no body).
func (s PushSpec) PushDocument(rec Record) (body []byte, del bool, err error) {
	s = s.WithDefaults()
	if rec.Deleted && s.DeletePath != "" {
		return nil, true, nil
	}
	fields := rec.Fields
	if len(s.Fields) > 0 {
		fields = make(map[string]any, len(s.Fields))
		for _, f := range s.Fields {
			if v, ok := rec.Fields[f]; ok {
				fields[f] = v
			}
		}
	}
	var v any
	switch s.Body {
	case PushBodyRecord:
		r := rec
		r.Fields = fields
		r.Tags = nil // cache tags are the edge's business
		v = r
	default:
		doc := make(map[string]any, len(fields)+2)
		for k, val := range fields {
			doc[k] = val
		}
		doc[s.IDField] = rec.ID
		if rec.Deleted {
			doc["_deleted"] = true
		}
		v = doc
	}
	if s.Array {
		v = []any{v}
	}
	body, err = json.Marshal(v)
	return body, false, err
}

// Push sends rec to the index described by spec (validated by the
// caller): an upsert of its document, or a delete request when rec is
// deleted and spec has a delete path. resource names the pushed records in
// stats and errors. Like Upsert it is sent once, to the first base URL,
// under the breaker and the token bucket, and never retried here: the
// durable job retries with the same idempotencyKey. The Idempotency-Key
// sent (if idempotencyKey is not empty) is idempotencyKey and a hash of the
// request (method, path, body): a retry of the same push replays it, while
// a retry that sends another document (the target's fields changed by a
// reload in between) is a write of its own, which an index honouring the
// header would otherwise refuse (a key reused for another request). A
// delete answered 404 is done (the document is not there).
func (c *Client) Push(ctx context.Context, spec PushSpec, resource string, rec Record, idempotencyKey string) error {
	spec = spec.WithDefaults()
	body, del, err := spec.PushDocument(rec)
	if err != nil {
		return fmt.Errorf("vendor %q: push %s id %q: encoding: %w", c.cfg.Name, resource, rec.ID, err)
	}
	method, tmpl := spec.Method, spec.Path
	if del {
		method, tmpl = spec.DeleteMethod, spec.DeletePath
	}
	if strings.Contains(tmpl, "{id}") {
		if err := checkID(rec.ID); err != nil {
			return fmt.Errorf("vendor %q: push %s: %w", c.cfg.Name, resource, err)
		}
		if slices.Contains(spec.ReservedIDs, rec.ID) {
			return fmt.Errorf("vendor %q: push %s id %q: the id names another endpoint of the index in %s: %w",
				c.cfg.Name, resource, rec.ID, tmpl, ErrInvalidRequest)
		}
	}
	if strings.ContainsAny(idempotencyKey, "\r\n\x00") {
		return fmt.Errorf("vendor %q: push %s: idempotency key contains a control character: %w", c.cfg.Name, resource, ErrInvalidRequest)
	}
	if err := c.begin(resource, method, ""); err != nil {
		return err
	}
	h := http.Header{"Accept": {"application/json"}}
	if body != nil {
		h.Set("Content-Type", "application/json")
	}
	out := outbound{resource: resource, method: method, path: expandURL(tmpl, map[string]string{"id": rec.ID}),
		header: h, body: body, v: c.stable}
	if idempotencyKey != "" {
		h.Set("Idempotency-Key", pushKey(idempotencyKey, method, out.path, body))
	}
	// The breaker tells one record's failure from the index's: an index
	// API often has a single upsert path, so the record names the "path".
	bpath := out.path
	if !strings.Contains(tmpl, "{id}") {
		bpath += "#" + url.PathEscape(rec.ID) // escaped: the breaker cuts a path at '?'
	}
	var raw *rawResponse
	berr := c.breaker.RunOn(bpath, func() circuit.Outcome {
		raw, err = c.send(ctx, out)
		return breakerOutcome(ctx, bpath, err)
	})
	if errors.Is(berr, circuit.ErrOpen) {
		return c.refuse(resource, method, out.path, c.stable, 0, OutcomeBreakerOpen, ErrBreakerOpen)
	}
	if err != nil {
		return err
	}
	if del && raw.status == http.StatusNotFound {
		return nil
	}
	return c.statusErr(method, c.stable, out.path, raw)
}

// pushKey is the Idempotency-Key of a push: the caller's key and a hash
// of the request it names.
func pushKey(key, method, path string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(body)
	return key + ":" + hex.EncodeToString(h.Sum(nil)[:8])
}

// Count returns how many records (deleted ones included) a vendor's
// resource holds, for a rebuild's progress.
func (s *Records) Count(vendor, resource string) (int, error) {
	if err := checkScope(vendor, resource); err != nil {
		return 0, err
	}
	n := 0
	prefix := scope(vendor, resource)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecordsUpdated).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}
