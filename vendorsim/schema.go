package vendorsim

import "strings"

// applyRenames moves fields of m (a rendered record, modified in place)
// from old to new dotted paths. Missing fields are left alone; missing
// parents of a new path are created.
func applyRenames(m map[string]any, renames [][2]string) {
	for _, rn := range renames {
		v, ok := popPath(m, strings.Split(rn[0], "."))
		if ok {
			setPath(m, strings.Split(rn[1], "."), v)
		}
	}
}

// popPath removes and returns the value at path.
func popPath(m map[string]any, path []string) (any, bool) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			return nil, false
		}
		m = next
	}
	last := path[len(path)-1]
	v, ok := m[last]
	if ok {
		delete(m, last)
	}
	return v, ok
}

// setPath stores v at path, creating intermediate maps.
func setPath(m map[string]any, path []string, v any) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}
