package vendors

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Record is a vendor item normalized by its Resource mapping: what templates
// and the read-model API see. Numbers in Fields are json.Number (exact, and
// the same before and after a round trip through the store).
type Record struct {
	Vendor    string         `json:"vendor"`
	Resource  string         `json:"resource"`
	ID        string         `json:"id"`
	Version   string         `json:"version"`
	UpdatedAt time.Time      `json:"updated_at"`
	SyncedAt  time.Time      `json:"synced_at"`
	Fields    map[string]any `json:"fields,omitempty"`
	Tags      []string       `json:"tags,omitempty"`
	Deleted   bool           `json:"deleted,omitempty"`
}

// decodeJSON decodes data keeping numbers as json.Number.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

// lookup follows a dot path ("a.b.0.c") through decoded JSON; numeric
// segments index arrays. The empty path is v itself. It reports false when a
// segment is absent.
func lookup(v any, path string) (any, bool) {
	if path == "" {
		return v, true
	}
	for _, seg := range strings.Split(path, ".") {
		switch t := v.(type) {
		case map[string]any:
			next, ok := t[seg]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// jsonType names the JSON type of a decoded value for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "bool"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// mapper turns decoded items of one resource into Records.
type mapper struct {
	vendor, resource string
	res              Resource
}

// mapItem maps one decoded item. now is the SyncedAt of the record.
func (m mapper) mapItem(item any, now time.Time) (Record, error) {
	merr := func(id, field, path, reason string) error {
		return &MappingError{Vendor: m.vendor, Resource: m.resource, ID: id, Field: field, Path: path, Reason: reason}
	}
	if _, ok := item.(map[string]any); !ok {
		return Record{}, merr("", "item", "", "expected object, got "+jsonType(item))
	}

	rec := Record{Vendor: m.vendor, Resource: m.resource, SyncedAt: now.UTC()}

	idv, ok := lookup(item, m.res.ID)
	if !ok || idv == nil {
		return Record{}, merr("", "id", m.res.ID, "missing")
	}
	id, ok := scalarString(idv)
	if !ok {
		return Record{}, merr("", "id", m.res.ID, "expected string or number, got "+jsonType(idv))
	}
	if id == "" {
		return Record{}, merr("", "id", m.res.ID, "empty")
	}
	rec.ID = id

	if m.res.Version != "" {
		vv, ok := lookup(item, m.res.Version)
		if !ok || vv == nil {
			return Record{}, merr(id, "version", m.res.Version, "missing")
		}
		v, ok := scalarString(vv)
		if !ok {
			return Record{}, merr(id, "version", m.res.Version, "expected string or number, got "+jsonType(vv))
		}
		rec.Version = v
	} else {
		// encoding/json sorts map keys, so equal payloads hash equally.
		raw, err := json.Marshal(item)
		if err != nil {
			return Record{}, merr(id, "version", "", "hashing payload: "+err.Error())
		}
		sum := sha256.Sum256(raw)
		rec.Version = "sha256:" + hex.EncodeToString(sum[:12])
	}

	if m.res.UpdatedAt != "" {
		uv, ok := lookup(item, m.res.UpdatedAt)
		if !ok || uv == nil {
			return Record{}, merr(id, "updated_at", m.res.UpdatedAt, "missing")
		}
		t, err := parseTime(uv)
		if err != nil {
			return Record{}, merr(id, "updated_at", m.res.UpdatedAt, err.Error())
		}
		rec.UpdatedAt = t
	}

	if len(m.res.Fields) > 0 {
		rec.Fields = make(map[string]any, len(m.res.Fields))
	}
	for name, f := range m.res.Fields {
		v, ok := lookup(item, f.Path)
		if !ok || v == nil {
			if f.Required {
				reason := "missing"
				if ok {
					reason = "null"
				}
				return Record{}, merr(id, name, f.Path, reason)
			}
			continue
		}
		norm, err := checkType(v, f.Type)
		if err != nil {
			reason := err.Error()
			if slices.Contains(m.res.Sensitive, name) {
				// Errors are logged and stored in jobs: never the value.
				reason = "expected " + f.Type + " (value of a sensitive field not shown)"
			}
			return Record{}, merr(id, name, f.Path, reason)
		}
		rec.Fields[name] = norm
	}
	rec.Tags = m.tags(rec)
	return rec, nil
}

// tags renders the resource's tag templates for rec, skipping templates
// whose fields are absent and duplicates.
func (m mapper) tags(rec Record) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range m.res.Tags {
		tag, ok := expandText(t, func(name string) (string, bool) {
			switch name {
			case "id":
				return rec.ID, true
			case "vendor":
				return rec.Vendor, true
			case "resource":
				return rec.Resource, true
			case "version":
				return rec.Version, true
			}
			v, ok := rec.Fields[name]
			if !ok {
				return "", false
			}
			if s, ok := scalarString(v); ok {
				return s, true
			}
			if b, ok := v.(bool); ok {
				return strconv.FormatBool(b), true
			}
			return "", false
		})
		if ok && tag != "" && !seen[tag] {
			seen[tag] = true
			out = append(out, tag)
		}
	}
	return out
}

// scalarString returns a string or number value as a string.
func scalarString(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	}
	return "", false
}

// checkType checks v against a Field type and returns the normalized value.
func checkType(v any, typ string) (any, error) {
	wrong := func() error { return fmt.Errorf("expected %s, got %s", typ, jsonType(v)) }
	switch typ {
	case "", "any":
		return v, nil
	case "string":
		if _, ok := v.(string); !ok {
			return nil, wrong()
		}
	case "number":
		if _, ok := v.(json.Number); !ok {
			return nil, wrong()
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return nil, wrong()
		}
		if _, err := n.Int64(); err != nil {
			return nil, fmt.Errorf("expected integer, got %s", n)
		}
	case "bool":
		if _, ok := v.(bool); !ok {
			return nil, wrong()
		}
	case "object":
		if _, ok := v.(map[string]any); !ok {
			return nil, wrong()
		}
	case "array":
		if _, ok := v.([]any); !ok {
			return nil, wrong()
		}
	case "time":
		s, ok := v.(string)
		if !ok {
			return nil, wrong()
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("expected an RFC 3339 time, got %q", s)
		}
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	return v, nil
}

// parseTime reads an RFC 3339 string or a number of Unix seconds.
func parseTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case string:
		ts, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return time.Time{}, fmt.Errorf("expected an RFC 3339 time, got %q", t)
		}
		return ts.UTC(), nil
	case json.Number:
		f, err := t.Float64()
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return time.Time{}, fmt.Errorf("expected Unix seconds, got %s", t)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("expected time, got %s", jsonType(v))
}

// formatSince writes t for a list template's {since}.
func formatSince(t time.Time, format string) string {
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	switch format {
	case "unix":
		return strconv.FormatInt(t.Unix(), 10)
	case "unix_ms":
		return strconv.FormatInt(t.UnixMilli(), 10)
	}
	return t.UTC().Format(time.RFC3339Nano)
}
