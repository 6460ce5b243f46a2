package pagecache

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
)

// decodeRecord decodes a record read with GetBody.
func decodeRecord(t *testing.T, raw []byte) Entry {
	t.Helper()
	var e Entry
	if err := e.Decode(raw); err != nil {
		t.Fatal(err)
	}
	return e
}

// A large entry with compressed variants is stored in parts: each GetBody
// record holds the metadata and only its body; Get returns the entry whole,
// byte for byte as stored.
func TestPartsHoldOneBodyEach(t *testing.T) {
	c := newBenchCache(t, 64<<20)
	enc := benchEncoded(t, benchPage(100<<10), []string{"t:1"}, true)
	var whole Entry
	if err := whole.Decode(enc); err != nil || whole.Gzip == nil || whole.Zstd == nil {
		t.Fatalf("test entry without variants: %v", err)
	}
	const key = "https://example.com/big"
	if err := c.Set(key, enc, []string{"t:1"}, c.Epoch()); err != nil {
		t.Fatal(err)
	}
	if c.big.Len() != 3 {
		t.Fatalf("bigcache holds %d records, want 3 (identity, gzip, zstd)", c.big.Len())
	}
	for _, tc := range []struct {
		variant uint8
		want    []byte
		size    int
	}{
		{BodyIdentity, whole.Body, len(whole.Body)},
		{BodyGzip, whole.Gzip, len(whole.Gzip)},
		{BodyZstd, whole.Zstd, len(whole.Zstd)},
	} {
		raw, ok := c.GetBody(key, tc.variant)
		if !ok {
			t.Fatalf("variant %d not found", tc.variant)
		}
		if len(raw) > tc.size+1024 {
			t.Fatalf("variant %d: record of %d bytes for a body of %d", tc.variant, len(raw), tc.size)
		}
		e := decodeRecord(t, raw)
		var got []byte
		switch tc.variant {
		case BodyIdentity:
			got = e.Body
		case BodyGzip:
			got = e.Gzip
		case BodyZstd:
			got = e.Zstd
		}
		if !bytes.Equal(got, tc.want) || e.ETag != whole.ETag || e.FreshFor != whole.FreshFor || len(e.Header) != len(whole.Header) {
			t.Fatalf("variant %d: record differs from the entry", tc.variant)
		}
		for _, v := range []uint8{BodyIdentity, BodyGzip, BodyZstd} {
			if !e.Has(v) {
				t.Fatalf("record of variant %d does not name variant %d", tc.variant, v)
			}
		}
		if e.Apart&tc.variant != 0 {
			t.Fatalf("variant %d: its own body marked apart", tc.variant)
		}
	}
	got, ok := c.Get(key)
	if !ok || !bytes.Equal(got, enc) {
		t.Fatal("Get does not return the stored entry whole")
	}
	if st := c.Stats(); st.EntryBytes < len(enc) || st.Entries != 1 {
		t.Fatalf("stats %+v do not count the parts", st)
	}
	// A record read with GetBody is not an entry to store.
	raw, _ := c.GetBody(key, BodyGzip)
	if err := c.Set(key+"/copy", raw, nil, c.Epoch()); err == nil {
		t.Fatal("Set stored a record without all its bodies")
	}
}

// Small or uncompressed entries stay one record; GetBody of a compressed
// variant finds nothing and the identity record is the whole entry.
func TestSmallEntryOneRecord(t *testing.T) {
	c := newBenchCache(t, 64<<20)
	enc := benchEncoded(t, benchPage(2<<10), nil, true)
	if err := c.Set("https://example.com/small", enc, nil, c.Epoch()); err != nil {
		t.Fatal(err)
	}
	if c.big.Len() != 1 {
		t.Fatalf("bigcache holds %d records, want 1", c.big.Len())
	}
	if _, ok := c.GetBody("https://example.com/small", BodyGzip); ok {
		t.Fatal("a gzip record of an entry stored whole")
	}
	raw, ok := c.GetBody("https://example.com/small", BodyIdentity)
	if !ok || !bytes.Equal(raw, enc) {
		t.Fatal("the identity record of a small entry is not the entry")
	}
}

// Purging, overwriting, deleting and evicting any part make every part
// unreadable: a reader never combines records of two stores.
func TestPartsFollowTheEntry(t *testing.T) {
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
	none := func(what string) {
		t.Helper()
		for _, v := range []uint8{BodyIdentity, BodyGzip, BodyZstd} {
			if _, ok := c.GetBody(key, v); ok {
				t.Fatalf("%s: variant %d still served", what, v)
			}
		}
		if _, ok := c.Get(key); ok {
			t.Fatalf("%s: entry still served", what)
		}
	}

	set(v1)
	stale, _ := c.big.Get(partKey(key, partGzip)) // v1's gzip record
	set(v2)
	if got, ok := c.Get(key); !ok || !bytes.Equal(got, v2) {
		t.Fatal("overwrite: Get does not return the new entry")
	}
	// An older store's record put back (as a racing writer could leave
	// it) is not current: Get refuses the mix, GetBody the record.
	if err := c.big.Set(partKey(key, partGzip), stale); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.GetBody(key, BodyGzip); ok {
		t.Fatal("an older store's gzip record served")
	}
	if _, ok := c.Get(key); ok {
		t.Fatal("Get combined records of two stores")
	}

	set(v2)
	c.PurgeTags([]string{"t:1"})
	none("purge")

	set(v1)
	c.Delete(key)
	none("delete")
	if c.big.Len() != 0 {
		t.Fatalf("delete left %d records in bigcache", c.big.Len())
	}

	set(v1)
	raw, _ := c.big.Get(partKey(key, partZstd))
	c.onRemove(partKey(key, partZstd), raw, 0) // bigcache evicts one part
	c.index.mu.Lock()
	c.index.drainLocked()
	c.index.mu.Unlock()
	none("eviction of one part")
	if st := c.Stats(); st.Entries != 0 || st.EntryBytes != 0 {
		t.Fatalf("eviction of one part: stats %+v", st)
	}
}

// A main record is never read as another key's part: keys differ by the
// part suffix and records name their part.
func TestPartKeyNotAnotherEntry(t *testing.T) {
	c := newBenchCache(t, 64<<20)
	const key = "https://example.com/x"
	small := benchEncoded(t, benchPage(1<<10), nil, false)
	if err := c.Set(partKey(key, partGzip), small, nil, c.Epoch()); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.GetBody(key, BodyGzip); ok {
		t.Fatal("another entry's record read as a gzip part")
	}
}

// Concurrent stores of two versions and hits: every record read belongs
// to one whole version (its body matches that version's metadata).
func TestPartsConcurrentStores(t *testing.T) {
	c := newBenchCache(t, 64<<20)
	const key = "https://example.com/race"
	versions := make([][]byte, 2)
	etags := map[string][]byte{}
	for i := range versions {
		var e Entry
		if err := e.Decode(benchEncoded(t, benchPage(20<<10+i*1000), nil, true)); err != nil {
			t.Fatal(err)
		}
		e.ETag = `"v` + string(rune('0'+i)) + `"`
		versions[i] = e.Encode()
		etags[e.ETag] = e.Gzip
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			_ = c.Set(key, versions[i%2], nil, c.Epoch())
		}
	}()
	for i := 0; i < 20000; i++ {
		raw, ok := c.GetBody(key, BodyGzip)
		if !ok {
			continue
		}
		e := decodeRecord(t, raw)
		if !bytes.Equal(e.Gzip, etags[e.ETag]) {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("record of %s holds another version's body", e.ETag)
		}
	}
	stop.Store(true)
	wg.Wait()
}
