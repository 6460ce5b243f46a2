package vendorsim

import (
	"sort"
	"strconv"
	"time"
)

// record is one stored entity. fields excludes the managed fields (id,
// version, updated timestamp), which live beside it.
type record struct {
	fields  map[string]any
	version int
	updated time.Time
}

// collection holds the records of one kind. It is guarded by Sim.mu.
type collection struct {
	spec    *apiSpec
	records map[string]*record
	next    int // numeric suffix of the next id POST assigns
	// deleted keeps the records Delete removed, for Restore.
	deleted map[string]*record
}

func newCollection(spec *apiSpec) *collection {
	return &collection{spec: spec, records: make(map[string]*record), next: 1}
}

// newID returns an unused id for a created record.
func (c *collection) newID() string {
	for {
		id := c.spec.idPrefix + strconv.Itoa(c.next)
		c.next++
		if _, taken := c.records[id]; !taken {
			return id
		}
	}
}

// listed is a record with its id, as returned by list.
type listed struct {
	id  string
	rec *record
}

// list returns the records updated strictly after since (all of them when
// since is zero), ordered by (updated, id) ascending.
func (c *collection) list(since time.Time) []listed {
	out := make([]listed, 0, len(c.records))
	for id, rec := range c.records {
		if !since.IsZero() && !rec.updated.After(since) {
			continue
		}
		out = append(out, listed{id: id, rec: rec})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.rec.updated.Equal(b.rec.updated) {
			return a.rec.updated.Before(b.rec.updated)
		}
		return a.id < b.id
	})
	return out
}

// render returns the wire form of rec in the canonical schema: a deep copy
// of its fields plus id, version and the kind's updated field.
func (c *collection) render(id string, rec *record) map[string]any {
	m := deepCopyMap(rec.fields)
	m["id"] = id
	m["version"] = rec.version
	m[c.spec.updatedField] = rec.updated.UTC().Format(time.RFC3339Nano)
	return m
}

// stripManaged removes the fields the sim manages from a record body.
func (c *collection) stripManaged(fields map[string]any) {
	delete(fields, "id")
	delete(fields, "version")
	delete(fields, c.spec.updatedField)
}

// deepCopyMap copies a JSON-shaped map, recursing into maps and slices.
func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopyValue(v)
	}
	return out
}

func deepCopyValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return deepCopyMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopyValue(e)
		}
		return out
	default:
		return v
	}
}
