// Package pagecache is craftedge's memory tier: encoded responses held in
// an otter cache bounded in bytes, read in place by hits, with a tag index beside it so purges by tag,
// URL, host or prefix find their entries without scanning.
//
// Purges are hard (entries removed) or soft (kept, marked stale;
// softpurge.go). A response fetched while a purge ran is stored under the
// epoch read before the fetch (Cache.Epoch, Cache.Set): if a purge that
// selects it ran since, it is stored stale (soft) or not at all (hard,
// ErrPurgedWhileFetched); purges that cannot select it leave it as it is
// (purgescope.go). Hits never read the purge log.
package pagecache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unsafe"
)

// entryVersion is the first byte of every encoded entry. Bump it when the
// layout changes: entries (and snapshots) of another version are ignored.
const entryVersion = 2

// Entry flags.
const (
	// FlagMustRevalidate: the origin forbade serving this entry stale
	// beyond the windows it granted explicitly (no-cache, must-revalidate,
	// proxy-revalidate or s-maxage; RFC 9111 §4.2.4).
	FlagMustRevalidate uint8 = 1 << iota
	// FlagNoCache: the origin asked for revalidation before every reuse.
	FlagNoCache
	// FlagVaryMarker: the entry holds no response, only the list of request
	// headers (Vary) that select the variant stored under a secondary key.
	FlagVaryMarker
	// FlagFromSnapshot: the entry was restored from the snapshot store.
	FlagFromSnapshot
	// FlagBodyInZstd: the identity body was dropped to save space (in
	// snapshots); it is the decompressed Zstd variant.
	FlagBodyInZstd
	// FlagPurgedSnapshot: with FlagFromSnapshot, a snapshot a purge or an
	// invalidation had marked stale when it was restored: served only in
	// place of a failed upstream, never in place of a slow one.
	FlagPurgedSnapshot
)

// Entry is one stored response: status, headers to replay, validators,
// freshness, tags and the body in identity and (optionally) pre-compressed
// variants. Decoded entries alias the buffer they were decoded from; treat
// every byte slice and string as read-only.
type Entry struct {
	Flags  uint8
	Status int
	// StoredAt is when the response was received from the origin.
	StoredAt time.Time
	// InitialAge is the age the response already had when it arrived (Age
	// header, Date in the past).
	InitialAge time.Duration
	// FreshFor is how long after StoredAt the entry is fresh.
	FreshFor time.Duration
	// StaleWhileRevalidate and StaleIfError are how long past freshness the
	// entry may still be served while refreshing, or when the origin fails.
	StaleWhileRevalidate time.Duration
	StaleIfError         time.Duration
	// ETag is the strong entity tag of the identity body (the origin's, or
	// one derived from the body's hash), quoted.
	ETag string
	// OriginETag reports whether ETag came from the origin, so revalidation
	// may send it upstream.
	OriginETag bool
	// LastModified is the origin's Last-Modified, zero if none.
	LastModified time.Time
	// Tags are the cache tags the origin sent.
	Tags []string
	// Vary lists the request headers that select a variant (vary markers).
	Vary []string
	// Header holds the response headers to replay, in order, canonical names.
	Header []HeaderField
	// Body is the identity body; Gzip and Zstd are the compressed variants
	// (nil when not worth compressing).
	Body, Gzip, Zstd []byte
	// ESI is the body's compiled edge-side include template (package esi,
	// Template.MarshalBinary), nil when the body is served as is. An entry
	// with a template has no whole-body Gzip or Zstd variant: the template
	// holds the static parts compressed as segments.
	ESI []byte
}

// HeaderField is one response header line.
type HeaderField struct {
	Name, Value string
}

// FreshUntil is the end of the entry's freshness.
func (e *Entry) FreshUntil() time.Time { return e.StoredAt.Add(e.FreshFor) }

// Age is the entry's current age at now, in the sense of RFC 9111 §4.2.3.
func (e *Entry) Age(now time.Time) time.Duration {
	age := now.Sub(e.StoredAt) + e.InitialAge
	if age < 0 {
		return 0
	}
	return age
}

// Fresh reports whether the entry may be served without contacting the
// origin.
func (e *Entry) Fresh(now time.Time) bool {
	return e.Flags&FlagNoCache == 0 && e.Age(now) < e.FreshFor
}

// StaleProhibited reports whether the origin forbade serving the entry
// stale beyond its explicit windows (FlagMustRevalidate).
func (e *Entry) StaleProhibited() bool { return e.Flags&FlagMustRevalidate != 0 }

// ServableWhileRevalidating reports whether the stale entry may be served
// at now while a background refresh runs (stale-while-revalidate). The
// window is only ever recorded when the origin allowed it.
func (e *Entry) ServableWhileRevalidating(now time.Time) bool {
	return e.Flags&FlagNoCache == 0 && e.StaleWhileRevalidate > 0 && e.StaleBy(now) <= e.StaleWhileRevalidate
}

// MarkPurgedSnapshot returns a copy of the encoded entry b (a snapshot's
// value) with FlagFromSnapshot and FlagPurgedSnapshot set: what the
// snapshot accessor hands out for a snapshot a purge or an invalidation
// marked stale, so that every fallback sees it as invalidated. b is
// returned as is when it is not an encoded entry (Decode refuses it).
func MarkPurgedSnapshot(b []byte) []byte {
	if len(b) < 2 || b[0] != entryVersion {
		return b
	}
	c := bytes.Clone(b)
	c[flagsOffset] |= FlagFromSnapshot | FlagPurgedSnapshot
	return c
}

// ServableOnError reports whether the entry may be served at now when the
// origin cannot be used, within its stale-if-error window (StaleIfError:
// the response's stale-if-error, else the configured default; zero for a
// prohibited entry without an explicit stale-if-error). A prohibited entry
// (StaleProhibited) is also servable while it is still fresh: RFC 9111
// §4.2.4 forbids serving it stale, and a copy within its freshness
// lifetime is not (§4.2); this is what answers when the memory copy of an
// s-maxage or must-revalidate page is gone (a restart, an eviction) and
// its snapshot is all there is. A no-cache entry, a soft-purged one and a
// snapshot a purge marked stale (FlagPurgedSnapshot) are not fresh in
// that sense (§4.4: invalidated).
func (e *Entry) ServableOnError(now time.Time) bool {
	by := e.StaleBy(now)
	if e.StaleProhibited() {
		if e.Flags&FlagNoCache != 0 {
			return false
		}
		if e.Flags&(FlagSoftPurged|FlagPurgedSnapshot) == 0 && e.Age(now) < e.FreshFor {
			return true
		}
		return e.StaleIfError > 0 && by <= e.StaleIfError
	}
	return by <= e.StaleIfError
}

// StaleBy is how long past freshness the entry is at now (0 if fresh).
func (e *Entry) StaleBy(now time.Time) time.Duration {
	d := e.Age(now) - e.FreshFor
	if d < 0 {
		return 0
	}
	return d
}

// ErrBadEntry is returned for bytes that are not an entry of this version.
var ErrBadEntry = errors.New("pagecache: malformed or foreign entry")

// Encode serializes e. The layout is fixed-width fields followed by
// length-prefixed strings and bodies, so decoding slices the buffer without
// copying.
func (e *Entry) Encode() []byte {
	return e.AppendEncode(make([]byte, 0, e.EncodedSize()))
}

// EncodedSize is the length of e's encoding.
func (e *Entry) EncodedSize() int {
	size := 1 + 1 + 2 + 8*7 + 1
	size += 2 + len(e.ETag)
	size += 2
	for _, t := range e.Tags {
		size += 2 + len(t)
	}
	size += 2
	for _, v := range e.Vary {
		size += 2 + len(v)
	}
	size += 2
	for _, h := range e.Header {
		size += 2 + len(h.Name) + 4 + len(h.Value)
	}
	size += 16 + len(e.Body) + len(e.Gzip) + len(e.Zstd) + len(e.ESI)
	return size
}

// AppendEncode appends e's encoding (see Encode) to b.
func (e *Entry) AppendEncode(b []byte) []byte {
	b = append(b, entryVersion, e.Flags)
	b = binary.BigEndian.AppendUint16(b, uint16(e.Status))
	b = binary.BigEndian.AppendUint64(b, uint64(e.StoredAt.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.InitialAge))
	b = binary.BigEndian.AppendUint64(b, uint64(e.FreshFor))
	b = binary.BigEndian.AppendUint64(b, uint64(e.StaleWhileRevalidate))
	b = binary.BigEndian.AppendUint64(b, uint64(e.StaleIfError))
	var lm int64
	if !e.LastModified.IsZero() {
		lm = e.LastModified.Unix()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(lm))
	b = binary.BigEndian.AppendUint64(b, 0) // reserved
	if e.OriginETag {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendString16(b, e.ETag)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Tags)))
	for _, t := range e.Tags {
		b = appendString16(b, t)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Vary)))
	for _, v := range e.Vary {
		b = appendString16(b, v)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Header)))
	for _, h := range e.Header {
		b = appendString16(b, h.Name)
		b = binary.BigEndian.AppendUint32(b, uint32(len(h.Value)))
		b = append(b, h.Value...)
	}
	for _, body := range [][]byte{e.Body, e.Gzip, e.Zstd, e.ESI} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
		b = append(b, body...)
	}
	return b
}

// freshForOffset is the byte offset of FreshFor in an encoded entry, used to
// mark an encoded entry stale in place.
const freshForOffset = 1 + 1 + 2 + 8 + 8

// MarkEncodedStale sets FreshFor and StaleWhileRevalidate to zero in an
// encoded entry, so it is served neither as fresh nor at once while a
// refresh runs: the next request waits for the origin (its stale-if-error
// window stays). Set uses it for an entry fetched while a purge ran, which
// may hold what the purge was to remove.
func MarkEncodedStale(b []byte) {
	if len(b) >= swrOffset+8 && b[0] == entryVersion {
		binary.BigEndian.PutUint64(b[freshForOffset:], 0)
		binary.BigEndian.PutUint64(b[swrOffset:], 0)
	}
}

// Decode parses b into e. Strings and slices in e alias b (no copies), so b
// must not be modified afterwards. Headers are decoded into e.Header, reusing
// its capacity.
func (e *Entry) Decode(b []byte) error {
	d := decoder{b: b}
	if len(b) < 2 || b[0] != entryVersion {
		return ErrBadEntry
	}
	d.off = 1
	e.Flags = d.u8()
	e.Status = int(d.u16())
	e.StoredAt = time.Unix(0, int64(d.u64()))
	e.InitialAge = time.Duration(d.u64())
	e.FreshFor = time.Duration(d.u64())
	e.StaleWhileRevalidate = time.Duration(d.u64())
	e.StaleIfError = time.Duration(d.u64())
	if lm := int64(d.u64()); lm != 0 {
		e.LastModified = time.Unix(lm, 0)
	} else {
		e.LastModified = time.Time{}
	}
	d.u64() // reserved
	e.OriginETag = d.u8() == 1
	e.ETag = d.str16()
	n := int(d.u16())
	e.Tags = e.Tags[:0]
	if cap(e.Tags) < n {
		e.Tags = make([]string, 0, d.bound(n, 2)) // one allocation, not one per growth
	}
	for i := 0; i < n && d.err == nil; i++ {
		e.Tags = append(e.Tags, d.str16())
	}
	n = int(d.u16())
	e.Vary = e.Vary[:0]
	if cap(e.Vary) < n {
		e.Vary = make([]string, 0, d.bound(n, 2))
	}
	for i := 0; i < n && d.err == nil; i++ {
		e.Vary = append(e.Vary, d.str16())
	}
	n = int(d.u16())
	e.Header = e.Header[:0]
	if cap(e.Header) < n {
		e.Header = make([]HeaderField, 0, d.bound(n, 6))
	}
	for i := 0; i < n && d.err == nil; i++ {
		name := d.str16()
		value := d.str(int(d.u32()))
		e.Header = append(e.Header, HeaderField{Name: name, Value: value})
	}
	e.Body = d.bytes(int(d.u32()))
	e.Gzip = d.bytes(int(d.u32()))
	e.Zstd = d.bytes(int(d.u32()))
	e.ESI = d.bytes(int(d.u32()))
	if d.err != nil {
		return d.err
	}
	if len(e.Body) == 0 {
		e.Body = nil
	}
	if len(e.Gzip) == 0 {
		e.Gzip = nil
	}
	if len(e.Zstd) == 0 {
		e.Zstd = nil
	}
	if len(e.ESI) == 0 {
		e.ESI = nil
	}
	return nil
}

// RestoreBody decompresses the identity body of an entry stored with
// FlagBodyInZstd.
func (e *Entry) RestoreBody() error {
	if e.Flags&FlagBodyInZstd == 0 || e.Body != nil {
		return nil
	}
	b, err := zstdDecoder.DecodeAll(e.Zstd, nil)
	if err != nil {
		return fmt.Errorf("pagecache: restoring body: %w", err)
	}
	e.Body = b
	return nil
}

// DecodeTags returns only the tags of an encoded entry (copied).
func DecodeTags(b []byte) ([]string, error) {
	var e Entry
	if err := e.Decode(b); err != nil {
		return nil, err
	}
	out := make([]string, len(e.Tags))
	for i, t := range e.Tags {
		out[i] = string([]byte(t))
	}
	return out, nil
}

// HTTPHeader builds an http.Header from the entry's fields with a single
// allocation for all values; callers copy the fields into a response.
func (e *Entry) HTTPHeader() http.Header {
	h := make(http.Header, len(e.Header))
	vals := make([]string, len(e.Header))
	for i, f := range e.Header {
		vals[i] = f.Value
		h[f.Name] = append(h[f.Name], vals[i])
	}
	return h
}

func appendString16(b []byte, s string) []byte {
	if len(s) > 0xffff {
		s = s[:0xffff]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || d.off+n > len(d.b) {
		d.err = fmt.Errorf("%w: truncated at byte %d", ErrBadEntry, d.off)
		return false
	}
	return true
}

// bound caps a decoded element count n by what the rest of the buffer can
// hold at minSize bytes each, so a corrupt count cannot make Decode
// allocate more than the entry's size.
func (d *decoder) bound(n, minSize int) int {
	return min(n, max(len(d.b)-d.off, 0)/minSize)
}

func (d *decoder) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) u16() uint16 {
	if !d.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(d.b[d.off:])
	d.off += 2
	return v
}

func (d *decoder) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *decoder) u64() uint64 {
	if !d.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *decoder) bytes(n int) []byte {
	if !d.need(n) {
		return nil
	}
	v := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return v
}

// str returns a string aliasing the buffer: entries are immutable once
// decoded, so the zero-copy conversion is safe and keeps the hit path free of
// per-header copies.
func (d *decoder) str(n int) string {
	v := d.bytes(n)
	if len(v) == 0 {
		return ""
	}
	return unsafe.String(&v[0], len(v))
}

func (d *decoder) str16() string { return d.str(int(d.u16())) }
