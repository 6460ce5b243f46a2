package pagecache

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/maypok86/otter/v2"
)

// Soft purges: the purged entries stay in the memory tier, marked stale
// (never fresh again), instead of being removed. What may still serve them
// (a slow or failing upstream, within their stale window) is the caller's
// rule; the memory tier only guarantees that after a soft purge returns no
// entry it marked is fresh, and that an entry stored anew meanwhile is not
// marked.
//
// The mark is kept in the tag index, not in the stored bytes: the top bit
// of the key's generation (genSoftPurged), set under the index lock only
// while the key still has the generation the purge listed it at. Get,
// which reads the generation anyway, returns a marked entry as a copy with
// the marks applied (softPurgedCopy), so a soft purge costs a store read
// (one the store's eviction policy does not count as a use) and an atomic
// store per entry, whatever the entries weigh: no entry is copied or
// stored again then. A marked entry's first hit stores a marked copy in
// its place (see softPurgedEntry), so its later hits, all of them while
// the upstream is down or slow, cost no copy. Storing the key anew (the
// revalidation a marked entry causes) gives it a new generation without
// the mark.

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

// Offsets of the fields a soft purge changes in an encoded entry (see
// AppendEncode).
const (
	flagsOffset    = 1
	swrOffset      = freshForOffset + 8
	softMinEncoded = freshForOffset + 8*5 // through the reserved field
)

// genSoftPurged is the top bit of a key's generation in the index's table
// (generations are 31 bits, see nextGenLocked): the entry stored with the
// rest of it was marked by a soft purge.
const genSoftPurged uint32 = 1 << 31

// softMarkChunk is how many entries a soft purge marks per hold of the
// index lock.
const softMarkChunk = 4096

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
// stored under the new epoch, stale already, or is gone). A member whose
// stored bytes are not an entry of this version cannot be marked: it is
// purged as a hard purge would, never left fresh. Vary markers are left
// as they are.
func (c *Cache) softPurge(ms []member) int {
	var hard []member
	marks := ms[:0]
	for _, m := range ms {
		e, ok := c.store.GetEntryQuietly(m.key) // not a use of the entry
		b := e.Value
		if !ok || len(b) < slotHeaderSize || binary.LittleEndian.Uint32(b) != m.id || binary.LittleEndian.Uint32(b[4:]) != m.gen {
			continue // purged, evicted or stored anew meanwhile
		}
		switch raw := b[slotHeaderSize:]; {
		case len(raw) < softMinEncoded || raw[0] != entryVersion:
			hard = append(hard, m)
		case raw[flagsOffset]&FlagVaryMarker == 0:
			marks = append(marks, m)
		}
	}
	n := c.index.markSoft(marks) + c.index.doomMembers(hard)
	c.purged.Add(uint64(n))
	return n
}

// softPurgedEntry returns the entry stored under key as b (with its slot
// header), which a soft purge marked, with the marks applied. The first
// hit after the purge makes a marked copy (softPurgedCopy) and stores it
// in b's place, if the store still holds b's generation (a store of the
// key since is never overwritten); later hits find the marks in the
// stored bytes and return them as they are, without a copy. Entries are
// immutable: b itself, which other hits may be reading, is not changed.
func (c *Cache) softPurgedEntry(key string, b []byte) ([]byte, bool) {
	if e := b[slotHeaderSize:]; isSoftPurged(e) {
		return e[:len(e):len(e)], true
	}
	e, ok := softPurgedCopy(b[slotHeaderSize:])
	if !ok || len(e) > 0 && e[flagsOffset]&FlagVaryMarker != 0 {
		return e, ok
	}
	nb := make([]byte, slotHeaderSize+len(e))
	copy(nb, b[:slotHeaderSize])
	copy(nb[slotHeaderSize:], e)
	c.store.ComputeIfPresent(key, func(old []byte) ([]byte, otter.ComputeOp) {
		if len(old) < slotHeaderSize || !bytes.Equal(old[:slotHeaderSize], b[:slotHeaderSize]) {
			return old, otter.CancelOp // stored anew (or purged) since b was read
		}
		return nb, otter.WriteOp
	})
	e = nb[slotHeaderSize:]
	return e[:len(e):len(e)], true
}

// isSoftPurged reports whether encoded already carries a soft purge's
// marks (softPurgedCopy would return the same bytes).
func isSoftPurged(encoded []byte) bool {
	if len(encoded) < softMinEncoded || encoded[0] != entryVersion {
		return false
	}
	flags := encoded[flagsOffset]
	return flags&FlagVaryMarker == 0 && flags&softPurgeFlags(flags) == softPurgeFlags(flags) &&
		binary.BigEndian.Uint64(encoded[freshForOffset:]) == 0 && binary.BigEndian.Uint64(encoded[swrOffset:]) == 0
}

// softPurgedCopy returns a copy of encoded (a stored entry a soft purge
// marked) with the marks applied: FlagSoftPurged (see softPurgeFlags) set,
// FreshFor and StaleWhileRevalidate zero. A Vary marker is returned as it
// is; bytes that are not an entry of this version are not returned (a
// soft purge never leaves what it cannot mark fresh).
func softPurgedCopy(encoded []byte) ([]byte, bool) {
	if len(encoded) < softMinEncoded || encoded[0] != entryVersion {
		return nil, false
	}
	flags := encoded[flagsOffset]
	if flags&FlagVaryMarker != 0 {
		return encoded[:len(encoded):len(encoded)], true
	}
	e := slices.Clone(encoded)
	e[flagsOffset] = flags | softPurgeFlags(flags)
	binary.BigEndian.PutUint64(e[freshForOffset:], 0)
	binary.BigEndian.PutUint64(e[swrOffset:], 0)
	return e[:len(e):len(e)], true
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

// markSoft marks the members still at the generation they were listed
// at (and not doomed) soft-purged, in chunks of softMarkChunk per hold of
// the lock, and returns how many (marked before included).
func (ix *tagIndex) markSoft(ms []member) int {
	n := 0
	for len(ms) > 0 {
		chunk := ms[:min(len(ms), softMarkChunk)]
		ms = ms[len(chunk):]
		ix.mu.Lock()
		ix.drainLocked()
		for _, m := range chunk {
			if !ix.validLocked(posting{m.id, m.gen}) || ix.keys[m.id].doomed {
				continue
			}
			ix.gens.store(m.id, m.gen|genSoftPurged)
			n++
		}
		ix.mu.Unlock()
	}
	return n
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
