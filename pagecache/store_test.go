package pagecache

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/maypok86/otter/v2"
)

// A hit reads the stored bytes in place: Get returns the same bytes to
// every reader, allocates nothing, and the slice is capped so appending to
// it copies. Set copies what it is given: the caller may reuse its buffer.
func TestGetReadsInPlace(t *testing.T) {
	c := newBenchCache(t, 64<<20)
	enc := benchEncoded(t, benchPage(100<<10), []string{"t:1"}, true)
	const key = "https://example.com/big"
	if err := c.Set(key, enc, []string{"t:1"}, c.Epoch()); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(enc)
	clear(enc) // the caller reuses its buffer
	a, ok := c.Get(key)
	b, ok2 := c.Get(key)
	if !ok || !ok2 || !bytes.Equal(a, want) {
		t.Fatal("Get does not return the entry as stored")
	}
	if unsafe.SliceData(a) != unsafe.SliceData(b) {
		t.Fatal("two reads returned two copies")
	}
	if cap(a) != len(a) {
		t.Fatalf("Get returned a slice with room to append in place (len %d, cap %d)", len(a), cap(a))
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = c.Get(key) }); n != 0 {
		t.Fatalf("Get allocates %v times per read", n)
	}
	var e Entry
	if err := e.Decode(a); err != nil || e.Gzip == nil || e.Zstd == nil {
		t.Fatalf("stored entry: %v", err)
	}
	if st := c.Stats(); st.EntryBytes < len(want) || st.Entries != 1 || st.AllocatedBytes != st.EntryBytes {
		t.Fatalf("stats %+v for one entry of %d bytes", st, len(want))
	}
}

// An entry stored while a soft purge selecting it ran is stored stale: the
// stored copy is marked, never the caller's buffer.
func TestSetStaleMarksTheStoredCopy(t *testing.T) {
	c := newBenchCache(t, 64<<20)
	enc := benchEncoded(t, benchPage(1<<10), nil, false)
	before := bytes.Clone(enc)
	epoch := c.Epoch()
	c.SoftPurgeHost("example.com")
	if err := c.Set("https://example.com/s", enc, nil, epoch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, before) {
		t.Fatal("Set modified the caller's buffer")
	}
	raw, _ := c.Get("https://example.com/s")
	var e Entry
	if err := e.Decode(raw); err != nil || e.FreshFor != 0 {
		t.Fatalf("entry stored during a purge: FreshFor %v, err %v", e.FreshFor, err)
	}
}

// Purging, overwriting, deleting and evicting: a reader never gets an
// entry that is not the key's current store, and the store lets go of what
// is no longer served (the purge cleanup deletes purged entries).
func TestStoreFollowsTheIndex(t *testing.T) {
	c := newBenchCache(t, 64<<20)
	const key = "https://example.com/p"
	v1 := benchEncoded(t, benchPage(50<<10), []string{"t:1"}, true)
	v2 := benchEncoded(t, benchPage(60<<10), []string{"t:1"}, true)
	set := func(enc []byte) {
		t.Helper()
		if err := c.Set(key, enc, []string{"t:1"}, c.Epoch()); err != nil {
			t.Fatal(err)
		}
	}
	held := func() int {
		c.store.CleanUp()
		return c.store.EstimatedSize()
	}

	set(v1)
	old, _ := c.store.GetIfPresent(key) // v1 as stored, slot header first
	set(v2)
	if got, ok := c.Get(key); !ok || !bytes.Equal(got, v2) {
		t.Fatal("overwrite: Get does not return the new entry")
	}
	// An older store's value put back (as a racing writer could leave
	// it) is not current.
	c.store.Set(key, old)
	if _, ok := c.Get(key); ok {
		t.Fatal("an older store's entry served")
	}

	set(v2)
	c.PurgeTags([]string{"t:1"})
	if _, ok := c.Get(key); ok {
		t.Fatal("purge: entry still served")
	}
	c.index.waitCleanup()
	if n := held(); n != 0 {
		t.Fatalf("purge cleanup left %d entries in the store", n)
	}

	set(v1)
	c.Delete(key)
	if _, ok := c.Get(key); ok {
		t.Fatal("delete: entry still served")
	}
	if n := held(); n != 0 {
		t.Fatalf("delete left %d entries in the store", n)
	}

	set(v1)
	raw, _ := c.store.GetIfPresent(key)
	c.store.Invalidate(key)
	c.onRemove(otter.DeletionEvent[string, []byte]{Key: key, Value: raw, Cause: otter.CauseOverflow})
	c.index.mu.Lock()
	c.index.drainLocked()
	c.index.mu.Unlock()
	if _, ok := c.Get(key); ok {
		t.Fatal("eviction: entry still served")
	}
	if st := c.Stats(); st.Entries != 0 || st.EntryBytes != 0 || st.Evicted != 1 {
		t.Fatalf("eviction: stats %+v", st)
	}
	// Replacements and deletions are not evictions.
	set(v1)
	raw, _ = c.store.GetIfPresent(key)
	for _, cause := range []otter.DeletionCause{otter.CauseReplacement, otter.CauseInvalidation} {
		c.onRemove(otter.DeletionEvent[string, []byte]{Key: key, Value: raw, Cause: cause})
	}
	if _, ok := c.Get(key); !ok {
		t.Fatal("a replacement or deletion event evicted the current entry")
	}
}

// Concurrent stores of two versions and hits: every entry read is one
// whole version, and (with -race) nobody writes the bytes readers hold.
func TestConcurrentStoresAndHits(t *testing.T) {
	c := newBenchCache(t, 64<<20)
	const key = "https://example.com/race"
	versions := make([][]byte, 2)
	gzips := map[string][]byte{}
	for i := range versions {
		var e Entry
		if err := e.Decode(benchEncoded(t, benchPage(20<<10+i*1000), nil, true)); err != nil {
			t.Fatal(err)
		}
		e.ETag = `"v` + string(rune('0'+i)) + `"`
		versions[i] = e.Encode()
		gzips[e.ETag] = e.Gzip
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			_ = c.Set(key, versions[i%2], nil, c.Epoch())
			if i%7 == 0 {
				c.PurgeURL(PathKeyOf(key), key)
			}
		}
	}()
	for i := 0; i < 20000; i++ {
		raw, ok := c.Get(key)
		if !ok {
			continue
		}
		var e Entry
		if err := e.Decode(raw); err != nil || !bytes.Equal(e.Gzip, gzips[e.ETag]) {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("entry %s holds another version's body (%v)", e.ETag, err)
		}
	}
	stop.Store(true)
	wg.Wait()
}
