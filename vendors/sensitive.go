package vendors

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// sensitiveErrors returns the problems of r.Sensitive, each naming the
// field: a sensitive field must be mapped, and must not be the id, version
// or updated_at mapping (those are stored in clear: keys, indexes, lineage,
// ETags) nor appear in a tag template (tags are stored in clear in the tag
// index and snapshots, and logged by purges).
func (r Resource) sensitiveErrors() []error {
	var errs []error
	seen := map[string]bool{}
	for _, name := range r.Sensitive {
		f, ok := r.Fields[name]
		switch {
		case seen[name]:
			errs = append(errs, fmt.Errorf("sensitive: field %q is listed twice", name))
			continue
		case !ok:
			errs = append(errs, fmt.Errorf("sensitive: %q is not a mapped field (add a field %s <json path> line)", name, name))
			continue
		}
		seen[name] = true
		for what, path := range map[string]string{"id": r.ID, "version": r.Version, "updated_at": r.UpdatedAt} {
			if path != "" && f.Path == path {
				errs = append(errs, fmt.Errorf("sensitive: field %q maps %q, which is also the %s mapping (stored in clear)", name, f.Path, what))
			}
		}
		for i, t := range r.Tags {
			if strings.Contains(t, "{"+name+"}") {
				errs = append(errs, fmt.Errorf("sensitive: field %q is used in tags[%d] %q (tags are stored and logged in clear)", name, i, t))
			}
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errs
}

// HasSensitive reports whether any resource of c has sensitive fields.
func (c Config) HasSensitive() bool {
	for _, r := range c.Resources {
		if len(r.Sensitive) > 0 {
			return true
		}
	}
	return false
}

// SensitiveKeys returns the last segment of the payload path of every
// sensitive field of c's resources ("customer.email" → "email"): the JSON
// object keys that mark a vendor answer as holding a sensitive value.
func (c Config) SensitiveKeys() map[string]bool {
	out := map[string]bool{}
	for _, r := range c.Resources {
		for _, name := range r.Sensitive {
			p := r.Fields[name].Path
			if i := strings.LastIndexByte(p, '.'); i >= 0 {
				p = p[i+1:]
			}
			if p != "" {
				out[p] = true
			}
		}
	}
	return out
}

// ContainsSensitive reports whether a vendor answer may hold a sensitive
// value: it is not JSON (it cannot be told), or an object in it, at any
// depth, has one of keys (see Config.SensitiveKeys). With no keys it is
// always false.
func ContainsSensitive(body []byte, keys map[string]bool) bool {
	if len(keys) == 0 {
		return false
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return true
	}
	var walk func(v any) bool
	walk = func(v any) bool {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if keys[k] || walk(x) {
					return true
				}
			}
		case []any:
			for _, x := range v {
				if walk(x) {
					return true
				}
			}
		}
		return false
	}
	return walk(doc)
}
