package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/craftedge/craftedge/cluster"
	"github.com/craftedge/craftedge/httpcache"
	"github.com/craftedge/craftedge/pagecache"
	"github.com/craftedge/craftedge/snapshot"
	"github.com/craftedge/craftedge/vendors"
)

// What a node checks before it applies another node's data. Only the
// nodes should be able to write the cluster's streams and buckets (see
// docs/guides/cluster.md), but a node still applies nothing it would not
// have stored itself: a bug on one node, or credentials that leaked, must
// not make every node serve a private page, pin a record or a page
// forever, or store data under a key it does not belong to.

// Bounds on the times other nodes give. The nodes' clocks should agree
// (NTP); a time further ahead than these is not a clock's drift.
const (
	// clusterClockAhead bounds how far ahead of this node's clock a
	// shared snapshot may say it was stored: a copy from the future is
	// never older than a purge mark, so no purge would make it stale.
	clusterClockAhead = 5 * time.Minute
	// replicaUpdatedAhead bounds a replicated record's updated_at: a
	// record updated in the far future would refuse every later version
	// (an older updated_at loses). It is the vendor's clock, hence the
	// wider bound; the bucket does not let such a value hold a record
	// back either.
	replicaUpdatedAhead = cluster.MaxUpdatedAhead
)

// gapStorageReplaced is the gap a node reports when its app runs on
// another storage file than the node's purges were recorded in (the
// file was damaged and moved aside, or a reload changed storage).
const gapStorageReplaced = "storage_replaced"

// checkReplica refuses a record version this node would not store: data
// of another record than its key, a vendor or resource not configured
// here, an updated_at far in the future.
func (a *App) checkReplica(v cluster.RecordVersion, now time.Time) error {
	var rec vendors.Record
	if err := json.Unmarshal(v.Data, &rec); err != nil {
		return fmt.Errorf("not a stored record: %w", err)
	}
	if rec.Vendor != v.Vendor || rec.Resource != v.Resource || rec.ID != v.ID || rec.Version != v.Version ||
		rec.Deleted != v.Deleted || !rec.UpdatedAt.Equal(v.UpdatedAt) {
		return fmt.Errorf("its data is %s/%s %.100q version %.100q, not the version its key names (%s/%s %.100q version %.100q)",
			rec.Vendor, rec.Resource, rec.ID, rec.Version, v.Vendor, v.Resource, v.ID, v.Version)
	}
	vc := a.Vendors[v.Vendor]
	if vc == nil || vc.Resources[v.Resource] == nil {
		return fmt.Errorf("vendor %.100q resource %.100q is not configured on this node", v.Vendor, v.Resource)
	}
	if v.UpdatedAt.After(now.Add(replicaUpdatedAhead)) {
		return fmt.Errorf("updated_at %s is more than %s ahead of this node's clock (it would refuse every later version)",
			v.UpdatedAt.UTC().Format(time.RFC3339), replicaUpdatedAhead)
	}
	return nil
}

// storageFailure reports whether err is this app's storage file failing
// (damaged, closed after damage, or an I/O error on the file itself: a
// full disk), as opposed to data refused or a network error: what failed
// so may succeed later, on this file or a fresh one.
func (a *App) storageFailure(err error) bool {
	var pe *fs.PathError
	return errors.Is(err, snapshot.ErrDamaged) || errors.Is(err, bolt.ErrDatabaseNotOpen) ||
		errors.As(err, &pe) && pe.Path == a.store.Path()
}

// sharedSnapshotRecord returns the record to store for another node's
// shared snapshot, or why it is refused: a copy this node would not have
// stored (Set-Cookie, private, no-store, Vary: *, a status never stored,
// a malformed header), one stored in the future, a key that is not a
// cache key. It is stored stale (never fresh here). Its tags are completed with the ones this node derives (the
// key's URL and host tags, the entry's own tags), so a copy published
// without them is still marked stale by the purges that cover it.
func sharedSnapshotRecord(sh cluster.SharedSnapshot, now time.Time) (snapshot.Record, error) {
	key := sh.Key
	host := pagecache.HostOf(key)
	if !utf8.ValidString(key) || len(key) > bolt.MaxKeySize || !strings.Contains(key, "://") || host == "" {
		return snapshot.Record{}, errors.New("not a cache key")
	}
	if sh.StoredAt.After(now.Add(clusterClockAhead)) {
		return snapshot.Record{}, fmt.Errorf("stored at %s, more than %s ahead of this node's clock",
			sh.StoredAt.UTC().Format(time.RFC3339), clusterClockAhead)
	}
	var e pagecache.Entry
	if err := e.Decode(sh.Value); err != nil {
		return snapshot.Record{}, err
	}
	if e.Flags&pagecache.FlagVaryMarker != 0 {
		return snapshot.Record{}, errors.New("a Vary marker, not a response")
	}
	if e.StoredAt.After(now.Add(clusterClockAhead)) {
		return snapshot.Record{}, fmt.Errorf("its response is dated %s, more than %s ahead of this node's clock",
			e.StoredAt.UTC().Format(time.RFC3339), clusterClockAhead)
	}
	// Header names as the client will see them (whatever their case), so
	// "set-cookie" or "cache-control: private" are seen for what they are.
	hdr := make(http.Header, len(e.Header))
	for _, f := range e.Header {
		switch {
		case f.Name == "" || strings.ContainsFunc(f.Name, notTokenRune):
			return snapshot.Record{}, fmt.Errorf("header name %.100q is not a header name", f.Name)
		case strings.ContainsFunc(f.Value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }):
			return snapshot.Record{}, fmt.Errorf("header %s has an invalid value", f.Name)
		}
		hdr.Add(f.Name, f.Value)
	}
	d, _ := httpcache.ResponseDirectives(hdr)
	_, explicit := httpcache.FreshnessLifetime(hdr, d, e.StoredAt)
	if reason := httpcache.Storable(e.Status, hdr, d, explicit, false); reason != "" {
		return snapshot.Record{}, fmt.Errorf("a response this node does not store (%s)", reason)
	}
	tags := make([]string, 0, len(sh.Tags)+len(e.Tags)+2)
	tags = append(tags, pagecache.URLTag(pagecache.PathKeyOf(key)), pagecache.HostTag(host))
	seen := make(map[string]bool, cap(tags))
	seen[tags[0]], seen[tags[1]] = true, true
	for _, t := range slices.Concat(e.Tags, sh.Tags) {
		if t == "" || len(t) > bolt.MaxKeySize {
			return snapshot.Record{}, errors.New("an empty or oversized tag")
		}
		if !seen[t] {
			seen[t] = true
			tags = append(tags, t)
		}
	}
	// Its freshness is the publisher's word, which this node cannot check
	// (a handler's ttl is its own): the copy is kept stale, so it answers
	// as a snapshot does (Craft failing, slow or switched off) and the
	// warm start never puts it back in memory as fresh.
	value := slices.Clone(sh.Value)
	pagecache.MarkEncodedStale(value)
	return snapshot.Record{Key: key, StoredAt: sh.StoredAt, Tags: tags, Value: value}, nil
}

// notTokenRune reports a rune not allowed in a header name (RFC 9110
// token).
func notTokenRune(r rune) bool {
	if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
		return false
	}
	return !strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}
