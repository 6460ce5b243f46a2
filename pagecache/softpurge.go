package pagecache

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Soft purges: the purged entries stay in the memory tier, marked stale
// (never fresh again), instead of being removed. What may still serve them
// (a slow or failing upstream, within their stale window) is the caller's
// rule; the memory tier only guarantees that after a soft purge returns no
// entry it marked is fresh, and that an entry stored anew meanwhile is not
// overwritten.
//
// A marked entry is stored again (entries are immutable), and otter's
// eviction policy counts every write of a present key as a use of it:
// the entry moves to the recently used end of its queue (from probation
// to protected) and its frequency estimate grows by one, as if it had
// been requested once more. Otter's only write its policy does not count
// (a refresh's) is asynchronous, outside the index lock that keeps a
// soft purge from overwriting a newer store, so this stays. It matters
// little: a soft purge selects pages Craft changed, mostly requested
// again soon (that request refreshes them, another write); one that is
// not keeps its place a little longer than it would have, at the expense
// of the least used entries, once per soft purge of it. A hard purge has
// no such effect.

// FlagSoftPurged marks an entry a soft purge made stale: its freshness and
// stale-while-revalidate window were cleared (FreshFor and
// StaleWhileRevalidate zero), so it is never served as fresh; its stale
// window (StaleIfError) is unchanged and still counts from when it was
// stored, so a soft purge never lengthens how long it may be served. A
// snapshot promoted into memory (FlagFromSnapshot) a soft purge marks is
// also marked FlagPurgedSnapshot, as it would be promoted after the purge
// (its snapshot is marked stale too): served only in place of a failed
// upstream, never a slow one.
const FlagSoftPurged uint8 = 1 << 6

// Offsets of the fields a soft purge rewrites in an encoded entry (see
// AppendEncode).
const (
	flagsOffset    = 1
	swrOffset      = freshForOffset + 8
	softMinEncoded = freshForOffset + 8*5 // through the reserved field
)

// errNotCurrent is replaceIfCurrent's answer when the key was stored
// anew, purged or evicted since it was read.
var errNotCurrent = errors.New("pagecache: entry changed since it was read")

// SoftPurgeTags marks every entry carrying any of tags stale (see
// FlagSoftPurged) and returns how many it marked. Vary markers are left as
// they are (they hold no response; the variants they lead to carry the
// tags). Like a purge it moves the epoch as it begins and ends (see Epoch), so a
// response it selects being fetched meanwhile is stored stale (see Set).
func (c *Cache) SoftPurgeTags(tags []string) int {
	defer c.purging(tagScope(tags, false))()
	n := 0
	for _, t := range tags {
		n += c.softPurge(c.index.members(t, nil))
	}
	return n
}

// SoftPurgeURL is SoftPurgeTags for the entries of one URL (see PurgeURL).
func (c *Cache) SoftPurgeURL(pathKey, fullKey string) int {
	defer c.purging(urlScope(pathKey, fullKey, false))()
	return c.softPurge(c.index.members(URLTag(pathKey), exactQuery(pathKey, fullKey)))
}

// SoftPurgeHost is SoftPurgeTags for every entry of a host.
func (c *Cache) SoftPurgeHost(host string) int {
	return c.SoftPurgeTags([]string{HostTag(host)})
}

// SoftPurgePrefix is SoftPurgeTags for every entry whose URL starts with
// prefix (see PurgePrefix).
func (c *Cache) SoftPurgePrefix(prefix string) int {
	defer c.purging(purgeScope{sels: []selKey{{selPrefix, prefix}}})()
	return c.softPurge(c.index.prefixMembers(prefix))
}

// member is a stored key and the generation it was read at.
type member struct {
	key     string
	id, gen uint32
}

// softPurge marks each member stale, unless it was stored anew, purged
// or evicted since the index listed it (then whatever replaced it was
// stored under the new epoch, stale already, or is gone). Each entry is
// read whole, rewritten and stored again under the index lock, checked
// against the generation it was read at. An entry that cannot be
// rewritten (not an entry of this version, too large now, a failed store)
// is purged as a hard purge would: a purged entry is never left fresh.
func (c *Cache) softPurge(ms []member) int {
	n := 0
	var hard []member
	for _, m := range ms {
		raw, ok := c.Get(m.key)
		if !ok {
			continue // purged, evicted or stored anew meanwhile
		}
		if len(raw) < softMinEncoded || raw[0] != entryVersion {
			hard = append(hard, m)
			continue
		}
		flags := raw[flagsOffset]
		if flags&FlagVaryMarker != 0 {
			continue
		}
		if flags&softPurgeFlags(flags) == softPurgeFlags(flags) && binary.BigEndian.Uint64(raw[freshForOffset:]) == 0 && binary.BigEndian.Uint64(raw[swrOffset:]) == 0 {
			n++ // marked by an earlier soft purge: nothing to rewrite
			continue
		}
		tags, err := DecodeTags(raw)
		if err != nil {
			hard = append(hard, m)
			continue
		}
		switch err := c.replaceIfCurrent(m, raw, flags, tags); {
		case err == nil:
			n++
		case !errors.Is(err, errNotCurrent):
			hard = append(hard, m)
		}
	}
	n += c.index.doomMembers(hard)
	c.purged.Add(uint64(n))
	return n
}

// softPurgeFlags are the flags a soft purge sets on an entry with flags
// (see FlagSoftPurged).
func softPurgeFlags(flags uint8) uint8 {
	if flags&FlagFromSnapshot != 0 {
		return FlagSoftPurged | FlagPurgedSnapshot
	}
	return FlagSoftPurged
}

// doomMembers purges the members still at the generation they were listed
// at, as purgeTag does, and returns how many.
func (ix *tagIndex) doomMembers(ms []member) int {
	if len(ms) == 0 {
		return 0
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drainLocked()
	dead := ix.nextGenLocked()
	n := 0
	for _, m := range ms {
		if !ix.validLocked(posting{m.id, m.gen}) || ix.keys[m.id].doomed {
			continue
		}
		ix.doomLocked(m.id, dead)
		n++
	}
	ix.startCleanupLocked()
	return n
}

// replaceIfCurrent stores a soft-purged copy of encoded (the store's
// bytes, read-only: the copy is a new value, see storedValue) under m.key,
// as Set does, if the key still has the generation m was listed at.
func (c *Cache) replaceIfCurrent(m member, encoded []byte, flags uint8, tags []string) error {
	if len(encoded) > c.opts.MaxEntryBytes {
		return ErrTooLarge
	}
	b := storedValue(encoded)
	e := b[slotHeaderSize:]
	e[flagsOffset] = flags | softPurgeFlags(flags)
	binary.BigEndian.PutUint64(e[freshForOffset:], 0)
	binary.BigEndian.PutUint64(e[swrOffset:], 0)
	size := int64(entryWeight(m.key, b))
	ix := c.index
	ix.mu.Lock()
	ix.drainLocked()
	var err error
	if !ix.validLocked(posting{m.id, m.gen}) || ix.keys[m.id].doomed || ix.keys[m.id].key != m.key {
		err = errNotCurrent
	} else {
		err = ix.setLocked(m.key, tags, size, func(id, gen uint32) error {
			binary.LittleEndian.PutUint32(b, id)
			binary.LittleEndian.PutUint32(b[4:], gen)
			c.store.Set(m.key, b)
			return nil
		})
	}
	ix.mu.Unlock()
	if err != nil && !errors.Is(err, errNotCurrent) {
		c.storeErrors.Add(1)
		return fmt.Errorf("pagecache: soft purge of %q: %w", m.key, err)
	}
	return err
}

// members lists the keys carrying tag (accepted by filter, when given)
// with their current generations.
func (ix *tagIndex) members(tag string, filter func(string) bool) []member {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.drainLocked()
	tid, ok := ix.tagIDs[tag]
	if !ok {
		return nil
	}
	var out []member
	seen := map[uint32]bool{}
	for _, p := range ix.tags[tid].postings {
		if !ix.validLocked(p) || ix.keys[p.id].doomed || seen[p.id] {
			continue
		}
		key := ix.keys[p.id].key
		if filter != nil && !filter(key) {
			continue
		}
		seen[p.id] = true
		out = append(out, member{key: key, id: p.id, gen: p.gen})
	}
	return out
}

// prefixMembers lists the keys whose URL starts with prefix with their
// current generations, scanning as purgePrefix does.
func (ix *tagIndex) prefixMembers(prefix string) []member {
	var out []member
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.eachPrefixLocked(prefix, func(id, gen uint32) {
		out = append(out, member{key: ix.keys[id].key, id: id, gen: gen})
	})
	return out
}
