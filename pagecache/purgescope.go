package pagecache

import (
	"errors"
	"slices"
	"strings"
	"sync"
)

// A response is fetched under the epoch read before the upstream was asked
// (Cache.Epoch); every purge moves the epoch when it begins and when it
// ends. When the epoch moved by the time the response is stored, Set asks
// the purge log whether one of the purges that ran since (began after the
// epoch was read, or was still running then) could select this entry: its
// explicit tags, its URL (the url: tag), its exact query, its host, a
// prefix of its URL, or all. Only then is it stored stale (a soft purge),
// or not at all (a hard one, see ErrPurgedWhileFetched). A purge elsewhere
// on the site leaves it fresh: purges are frequent (every unsafe request
// passing through invalidates its URL, RFC 9111 §4.4; every editor's save,
// every vendor sync), and storing every fetch in flight stale whenever any
// of them ran would send the next visitor of each of those pages to Craft
// again, which a visitor POSTing a form in a loop could keep up at will.
//
// The log keeps, per selector (a tag, a URL's exact query, a prefix) and
// for all, the epoch at which its last purge ended (soft or hard, and hard
// alone) and how many of its purges are running. It holds at most
// maxPurgeSelectors selectors in maxPurgeLogBytes; the one whose last
// purge ended first is forgotten first, and the log then no longer fully
// answers for responses fetched under an epoch before that end (floor):
// they are stored stale, as any purge used to make them (not at all if a
// hard purge the log still holds selects them, or if a hard purge of a
// tag, host or prefix was forgotten: see floorHard). Visitors get there by
// making the site purge enough distinct URLs within the time of one fetch
// (one unsafe request each, answered by Craft): some 130 with 16 KiB
// queries fill maxPurgeLogBytes, which is why a forgotten takedown keeps
// the fetches in flight across it out rather than stale.
//
// The log is read on the store path only, under the tag index's lock,
// after the epoch was found moved: hits never read it, and a store when
// no purge ran since its epoch reads only the epoch, as before.

// maxPurgeSelectors and maxPurgeLogBytes bound the purge log: how many
// selectors it holds, and the memory they take (names included, counted
// with selectorOverhead each), since URLs to purge may be long and their
// queries are chosen by whoever sends an unsafe request.
const (
	maxPurgeSelectors = 8192
	maxPurgeLogBytes  = 2 << 20
	selectorOverhead  = 160 // the selState, its map slot and list links
)

// ErrPurgedWhileFetched is Set's answer when a hard purge that selects the
// entry ran while it was being fetched (since the epoch passed to Set):
// the response may be the render the purge was to take down (an entry
// disabled or deleted in Craft), so it is not stored at all rather than
// kept as a stale copy that a slow or failing upstream would serve. The
// response itself may still go to the client that asked for it.
var ErrPurgedWhileFetched = errors.New("pagecache: a hard purge selecting the entry ran while it was fetched; not stored")

// Selector kinds of the purge log.
const (
	selTag    uint8 = iota // a tag other than the URL and host tags
	selURL                 // a URL tag: every query of a path (s is the path key)
	selHost                // a host tag (s is the lowercase host)
	selExact               // one URL's exact query, every Vary variant (s is the base key)
	selPrefix              // keys whose URL starts with s
	// selSnapshotURL is the path of a selExact purge: the purge marks
	// every snapshot of the path stale (snapshot marks are by path), so a
	// snapshot promoted into memory (FlagFromSnapshot) with another query
	// may have been read before its mark; it is stored a purged snapshot
	// (markStoredDuringPurge), as it would be promoted after the purge.
	selSnapshotURL
)

type selKey struct {
	kind uint8
	s    string
}

// selState is one selector's purges: last and lastHard are the epochs at
// which its last purge (of either mode, and hard) ended, running and
// runningHard count its purges running now. It sits in the log's list,
// least recently ended first.
type selState struct {
	key                  selKey
	last, lastHard       uint64
	running, runningHard int
	prev, next           *selState
}

// purgeScope is what one purge selects.
type purgeScope struct {
	all  bool
	hard bool
	sels []selKey
}

// tagScope is the scope of a purge of tags.
func tagScope(tags []string, hard bool) purgeScope {
	s := purgeScope{hard: hard, sels: make([]selKey, 0, len(tags))}
	for _, t := range tags {
		s.sels = append(s.sels, tagSel(t))
	}
	return s
}

// tagSel is the selector of a tag: the URL and host tags (derived from
// every key, see tagIndex.addLocked) by their path key and host, so a
// store checks its own without building the tag names.
func tagSel(t string) selKey {
	switch {
	case strings.HasPrefix(t, "url:"):
		return selKey{selURL, t[len("url:"):]}
	case strings.HasPrefix(t, "host:"):
		return selKey{selHost, t[len("host:"):]}
	}
	return selKey{selTag, t}
}

// urlScope is the scope of PurgeURL and SoftPurgeURL.
func urlScope(pathKey, fullKey string, hard bool) purgeScope {
	if fullKey != pathKey {
		return purgeScope{hard: hard, sels: []selKey{{selExact, fullKey}, {selSnapshotURL, pathKey}}}
	}
	return purgeScope{hard: hard, sels: []selKey{{selURL, pathKey}}}
}

// purgeLog is the log of recent purges' selectors (see above).
type purgeLog struct {
	mu    sync.Mutex
	sels  map[selKey]*selState
	head  *selState // least recently ended
	tail  *selState
	all   selState
	prefs []*selState // the prefix selectors in sels
	bytes int         // what the selectors take (see maxPurgeLogBytes)
	// floor is the latest end of a forgotten selector's purge: the log
	// answers for epochs from floor on. floorHard is the latest end of a
	// forgotten hard purge of a tag, host or prefix (a takedown: Craft's
	// or an operator's, never a visitor's): an entry fetched under an
	// epoch before it may be the render it took down, so it is not
	// stored. Visitors' invalidations (URLs) forgotten raise floor only:
	// a flood of them must not keep every fetch in flight out.
	floor, floorHard uint64
}

// purgeVerdict is what the purges since an entry's epoch do to it.
type purgeVerdict uint8

const (
	verdictNone purgeVerdict = iota // none selects it: store it as it is
	verdictSoft                     // a soft purge selects it, or the log cannot tell: store it stale
	verdictHard                     // a hard purge selects it: do not store it
)

// beginLocked records that a purge of scope s began (the caller moves
// the epoch under the same hold of l.mu).
func (l *purgeLog) beginLocked(s *purgeScope) {
	if s.all {
		l.all.running++
		l.all.runningHard++ // all is always hard
		return
	}
	if l.sels == nil {
		l.sels = make(map[selKey]*selState)
	}
	for _, k := range s.sels {
		st := l.sels[k]
		if st == nil {
			st = &selState{key: k}
			l.sels[k] = st
			l.bytes += len(k.s) + selectorOverhead
			l.pushLocked(st)
			if k.kind == selPrefix {
				l.prefs = append(l.prefs, st)
			}
		}
		st.running++
		if s.hard {
			st.runningHard++
		}
	}
	l.trimLocked()
}

// endLocked records that a purge of scope s ended at epoch end.
func (l *purgeLog) endLocked(s *purgeScope, end uint64) {
	if s.all {
		l.all.running--
		l.all.runningHard--
		l.all.last, l.all.lastHard = end, end
		return
	}
	for _, k := range s.sels {
		st := l.sels[k]
		if st == nil {
			continue // cannot happen: running selectors are never forgotten
		}
		st.running--
		st.last = end
		if s.hard {
			st.runningHard--
			st.lastHard = end
		}
		l.unlinkLocked(st)
		l.pushLocked(st)
	}
	l.trimLocked()
}

// trimLocked forgets the selectors whose last purge ended first while the
// log holds more than maxPurgeSelectors, raising floor. A selector with
// purges running is kept (it is moved to the end of the list).
func (l *purgeLog) trimLocked() {
	for i := len(l.sels); (len(l.sels) > maxPurgeSelectors || l.bytes > maxPurgeLogBytes) && i > 0; i-- {
		st := l.head
		l.unlinkLocked(st)
		if st.running > 0 {
			l.pushLocked(st)
			continue
		}
		delete(l.sels, st.key)
		l.bytes -= len(st.key.s) + selectorOverhead
		if st.key.kind == selPrefix {
			l.prefs = slices.DeleteFunc(l.prefs, func(p *selState) bool { return p == st })
		}
		l.floor = max(l.floor, st.last)
		if st.key.kind == selTag || st.key.kind == selHost || st.key.kind == selPrefix {
			l.floorHard = max(l.floorHard, st.lastHard)
		}
	}
}

func (l *purgeLog) pushLocked(st *selState) {
	st.prev, st.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = st
	} else {
		l.head = st
	}
	l.tail = st
}

func (l *purgeLog) unlinkLocked(st *selState) {
	if st.prev != nil {
		st.prev.next = st.next
	} else {
		l.head = st.next
	}
	if st.next != nil {
		st.next.prev = st.prev
	} else {
		l.tail = st.prev
	}
	st.prev, st.next = nil, nil
}

// verdict tells what the purges that ran since epoch (began after it was
// read, or were running then: their end is after it) do to an entry stored
// under key with tags (its explicit tags; the URL and host tags are
// derived from key, as the tag index does); fromSnapshot says it is a
// snapshot promoted into memory (see selSnapshotURL).
func (l *purgeLog) verdict(key string, tags []string, fromSnapshot bool, epoch uint64) purgeVerdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := verdictNone
	if l.floorHard > epoch {
		return verdictHard // a takedown forgotten since epoch (see floorHard)
	}
	if l.floor > epoch {
		// The log forgot purges since epoch: it cannot tell whether one
		// selects the entry, so it is stale at least; a hard purge it
		// still holds (the most recent ones) keeps it out.
		v = verdictSoft
	}
	note := func(st *selState) {
		if st == nil || v == verdictHard {
			return
		}
		switch {
		case st.runningHard > 0 || st.lastHard > epoch:
			v = verdictHard
		case st.running > 0 || st.last > epoch:
			v = verdictSoft
		}
	}
	note(&l.all)
	if len(l.sels) == 0 || v == verdictHard {
		return v
	}
	base := BaseKey(key)
	path := PathKeyOf(key)
	note(l.sels[selKey{selURL, path}])
	note(l.sels[selKey{selHost, lowerASCII(HostOf(key))}])
	note(l.sels[selKey{selExact, base}])
	for _, t := range tags {
		note(l.sels[tagSel(t)])
	}
	if fromSnapshot && v == verdictNone {
		if st := l.sels[selKey{selSnapshotURL, path}]; st != nil && (st.running > 0 || st.last > epoch) {
			v = verdictSoft
		}
	}
	for _, st := range l.prefs {
		if strings.HasPrefix(base, st.key.s) {
			note(st)
		}
	}
	return v
}

// lowerASCII is s lowercased as HostTag does, without a copy when it is
// lowercase already.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
