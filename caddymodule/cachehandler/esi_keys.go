package cachehandler

import "sync"

// fragmentKeyCache remembers the cache keys of fragments: a key depends
// only on the page's scheme, host and keyed suffix and on the include's
// path (fragmentKeys.key), and the same few fragments are included by
// every hit, so building it (normalizing the path and query) once per
// handler and path is enough. Bounded: past maxFragmentKeys, it starts
// over.
type fragmentKeyCache struct {
	mu sync.RWMutex
	m  map[fragmentKeyID]string
}

// fragmentKeyID is what a fragment's key is a function of.
type fragmentKeyID struct {
	scheme, host, suffix, prefix, path string
}

const maxFragmentKeys = 4096

func (c *fragmentKeyCache) get(id fragmentKeyID) (string, bool) {
	c.mu.RLock()
	k, ok := c.m[id]
	c.mu.RUnlock()
	return k, ok
}

func (c *fragmentKeyCache) put(id fragmentKeyID, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxFragmentKeys {
		c.m = make(map[fragmentKeyID]string)
	}
	c.m[id] = key
}
