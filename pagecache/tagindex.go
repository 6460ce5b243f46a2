package pagecache

import (
	"strings"
	"sync"
)

// tagIndex maps tags to the keys carrying them, and keys back to their
// tags, so a purge finds its entries directly and an eviction or overwrite
// leaves no dangling members. It lives beside bigcache, never inside it,
// under its own lock.
type tagIndex struct {
	mu   sync.Mutex
	tags map[string]map[string]struct{}
	keys map[string][]string
}

func newTagIndex() *tagIndex {
	return &tagIndex{
		tags: make(map[string]map[string]struct{}),
		keys: make(map[string][]string),
	}
}

// add records key under tags plus its implicit URL and host tags, replacing
// whatever it was indexed under before.
func (ix *tagIndex) add(key string, tags []string) {
	all := make([]string, 0, len(tags)+2)
	all = append(all, URLTag(PathKeyOf(key)), HostTag(HostOf(key)))
	all = append(all, tags...)
	ix.mu.Lock()
	ix.unlinkLocked(key)
	ix.keys[key] = all
	for _, t := range all {
		set := ix.tags[t]
		if set == nil {
			set = make(map[string]struct{})
			ix.tags[t] = set
		}
		set[key] = struct{}{}
	}
	ix.mu.Unlock()
}

// remove forgets key.
func (ix *tagIndex) remove(key string) {
	ix.mu.Lock()
	ix.unlinkLocked(key)
	ix.mu.Unlock()
}

func (ix *tagIndex) unlinkLocked(key string) {
	old, ok := ix.keys[key]
	if !ok {
		return
	}
	delete(ix.keys, key)
	for _, t := range old {
		if set := ix.tags[t]; set != nil {
			delete(set, key)
			if len(set) == 0 {
				delete(ix.tags, t)
			}
		}
	}
}

// take removes from the index, and returns, every key carrying any of tags
// (and accepted by filter, when given).
func (ix *tagIndex) take(tags []string, filter func(string) bool) []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var out []string
	for _, t := range tags {
		set := ix.tags[t]
		if len(set) == 0 {
			continue
		}
		if out == nil {
			out = make([]string, 0, len(set))
		}
		for k := range set {
			if filter == nil || filter(k) {
				out = append(out, k)
			}
		}
	}
	for _, k := range out {
		ix.unlinkLocked(k)
	}
	return out
}

// takePrefix removes and returns every key whose URL starts with prefix.
func (ix *tagIndex) takePrefix(prefix string) []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var out []string
	for k := range ix.keys {
		if strings.HasPrefix(BaseKey(k), prefix) {
			out = append(out, k)
		}
	}
	for _, k := range out {
		ix.unlinkLocked(k)
	}
	return out
}

func (ix *tagIndex) reset() {
	ix.mu.Lock()
	ix.tags = make(map[string]map[string]struct{})
	ix.keys = make(map[string][]string)
	ix.mu.Unlock()
}

func (ix *tagIndex) tagCount() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.tags)
}
