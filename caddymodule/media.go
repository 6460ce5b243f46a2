package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/media"
	"github.com/craftedge/craftedge/vendors"
)

// Job kinds of the media store.
const (
	jobKindMediaFetch = "media.fetch"
	jobKindMediaGC    = "media.gc"
)

// MediaPathPrefix is the path under which craftedge_records serves the
// stored media files: MediaPathPrefix + <sha256 hex>.
const MediaPathPrefix = "/vendors/v1/media/"

func init() {
	registerJobKind(jobKindMediaFetch, jobs.KindConfig{
		Concurrency: 2, BaseBackoff: 30 * time.Second, MaxBackoff: time.Hour,
		MaxAttempts: 10, Timeout: 10 * time.Minute,
	}, func(a *App) jobs.Handler { return jobs.Single(a.runMediaFetch) })
	registerJobKind(jobKindMediaGC, jobs.KindConfig{
		Concurrency: 1, BaseBackoff: time.Minute, MaxBackoff: time.Hour,
		MaxAttempts: 3, Timeout: 30 * time.Minute,
	}, func(a *App) jobs.Handler { return jobs.Single(a.runMediaGC) })
}

// mediaState is a config's media store: the files (shared across reloads
// through the usage pool), the URL index in the bbolt file, the fetcher
// and the media fields of every resource.
type mediaState struct {
	cfg     *MediaConfig
	store   *media.Store
	index   *media.Index
	fetcher *media.Fetcher
	// fields are the media fields by vendor and resource.
	fields map[string]map[string][]string
	// gcMu keeps the maintenance job (writer) from removing a file that a
	// download (reader) stored and has not indexed yet.
	gcMu *sync.RWMutex

	stopMaintenance func()
}

// mediaStoreResource is a pooled media store.
type mediaStoreResource struct {
	store *media.Store
	gcMu  *sync.RWMutex
}

func (mediaStoreResource) Destruct() error { return nil }

// provisionMedia opens the media store when a resource has media fields.
func (a *App) provisionMedia() error {
	fields := map[string]map[string][]string{}
	if _, ok := a.Vendors["media"]; ok {
		return fmt.Errorf("craftedge: vendor name %q is reserved (read-model API path of the media files)", "media")
	}
	for _, vn := range sortedKeys(a.Vendors) {
		for _, rn := range sortedKeys(a.Vendors[vn].Resources) {
			r := a.Vendors[vn].Resources[rn]
			if r == nil || len(r.Media) == 0 {
				continue
			}
			if err := checkMediaFields(rn, r); err != nil {
				return fmt.Errorf("craftedge: vendor %q: %w", vn, err)
			}
			if fields[vn] == nil {
				fields[vn] = map[string][]string{}
			}
			fields[vn][rn] = r.Media
		}
	}
	if len(fields) == 0 && a.Media == nil {
		return nil
	}
	cfg := a.Media
	if cfg == nil {
		cfg = &MediaConfig{}
		a.Media = cfg
	}
	if err := cfg.applyDefaults(); err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	dir := cfg.Dir
	if validatingOnly {
		dir = filepath.Join(a.validateDir, "media")
	}
	key := "media:" + dir + ":" + strconv.FormatInt(cfg.MaxTotalSize, 10)
	val, _, err := statePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := media.OpenStore(dir, cfg.MaxTotalSize)
		if err != nil {
			return nil, err
		}
		return mediaStoreResource{store: s, gcMu: new(sync.RWMutex)}, nil
	})
	if err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	a.poolKeys = append(a.poolKeys, key)
	idx, err := media.OpenIndex(a.store.DB())
	if err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	f, err := media.NewFetcher(media.FetcherOptions{
		Timeout: time.Duration(cfg.Timeout), AllowPrivate: cfg.AllowPrivateAddresses, UserAgent: "craftedge-media/1",
	})
	if err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	res := val.(mediaStoreResource)
	a.media = &mediaState{cfg: cfg, store: res.store, index: idx, fetcher: f, fields: fields, gcMu: res.gcMu}
	if err := registerCollectors(a.ctx.GetMetricsRegistry(), mediaCollectors()...); err != nil {
		return fmt.Errorf("craftedge: registering media metrics: %w", err)
	}
	return nil
}

// mediaURLs returns the URLs a record's media field names: a string, or
// the strings of an array (other values are ignored).
func mediaURLs(rec vendors.Record, field string) []string {
	switch v := rec.Fields[field].(type) {
	case string:
		if v != "" {
			return []string{v}
		}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// mediaFetchPayload is the payload of a media.fetch job: the record field
// that names the URL (the job is done without a download when the record
// no longer names it).
type mediaFetchPayload struct {
	Vendor   string `json:"vendor"`
	Resource string `json:"resource"`
	ID       string `json:"id"`
	Field    string `json:"field"`
	URL      string `json:"url"`
}

// mediaChanged enqueues a media.fetch job for every media URL of recs
// that is not stored yet. A URL refused outright (scheme, credentials) is
// logged and skipped: the record keeps naming it.
func (a *App) mediaChanged(ctx context.Context, recs []vendors.Record) error {
	m := a.media
	if m == nil {
		return nil
	}
	var reqs []jobs.EnqueueRequest
	for _, rec := range recs {
		fields := m.fields[rec.Vendor][rec.Resource]
		if rec.Deleted || len(fields) == 0 {
			continue
		}
		for _, f := range fields {
			for _, u := range mediaURLs(rec, f) {
				if err := media.CheckURL(u); err != nil {
					a.logger.Warn("media URL refused", zap.String("vendor", rec.Vendor), zap.String("resource", rec.Resource),
						zap.String("id", rec.ID), zap.String("field", f), zap.Error(err))
					continue
				}
				if e, ok, err := m.index.Lookup(u); err == nil && ok && m.store.Has(e.Hash) {
					continue
				}
				reqs = append(reqs, mediaFetchRequest(mediaFetchPayload{Vendor: rec.Vendor, Resource: rec.Resource, ID: rec.ID, Field: f, URL: u}, ""))
			}
		}
	}
	if len(reqs) == 0 {
		return nil
	}
	if _, err := a.jobs.EnqueueBatch(ctx, reqs); err != nil {
		return fmt.Errorf("media: enqueueing downloads: %w", err)
	}
	return nil
}

// mediaFetchRequest is the enqueue request of p, keyed by the record
// field and URL (so each is downloaded once however often it is synced).
// A repair (the maintenance job downloading a file again) adds its own
// suffix, so it is not deduplicated against the first download's job.
func mediaFetchRequest(p mediaFetchPayload, suffix string) jobs.EnqueueRequest {
	payload, _ := json.Marshal(p)
	sum := sha256.Sum256([]byte(p.URL))
	return jobs.EnqueueRequest{
		Kind:    jobKindMediaFetch,
		Key:     p.Vendor + ":" + p.Resource + ":" + p.ID + ":" + p.Field + ":" + hex.EncodeToString(sum[:16]) + suffix,
		Payload: payload,
	}
}

// Media fetch outcomes (craftedge_media_fetches_total's outcome label).
const (
	mediaOK         = "ok"          // downloaded and stored
	mediaCached     = "cached"      // already stored
	mediaSuperseded = "superseded"  // the record no longer names the URL
	mediaNotFound   = "not_found"   // 404 or 410 at the source
	mediaTooLarge   = "too_large"   // larger than max_file_size
	mediaBadType    = "bad_type"    // content not of an accepted type
	mediaRefused    = "refused"     // URL or address refused (SSRF guard)
	mediaRejected   = "rejected"    // another 4xx
	mediaStoreFull  = "store_full"  // max_total_size reached (retried)
	mediaDiskFull   = "disk_full"   // no space on the disk (retried)
	mediaError      = "error"       // network, 5xx, timeout (retried)
	mediaDisabled   = "unavailable" // no media store configured
)

var mediaOutcomes = []string{mediaOK, mediaCached, mediaSuperseded, mediaNotFound, mediaTooLarge, mediaBadType,
	mediaRefused, mediaRejected, mediaStoreFull, mediaDiskFull, mediaError, mediaDisabled}

// mediaOutcome classifies a download error, and says whether it is
// permanent.
func mediaOutcome(err error) (string, bool) {
	switch {
	case err == nil:
		return mediaOK, false
	case errors.Is(err, media.ErrGone):
		return mediaNotFound, true
	case errors.Is(err, media.ErrTooLarge):
		return mediaTooLarge, true
	case errors.Is(err, media.ErrType):
		return mediaBadType, true
	case errors.Is(err, media.ErrRefused):
		return mediaRefused, true
	case errors.Is(err, media.ErrRejected):
		return mediaRejected, true
	case errors.Is(err, media.ErrStoreFull):
		return mediaStoreFull, false
	case errors.Is(err, media.ErrNoSpace):
		return mediaDiskFull, false
	}
	return mediaError, false
}

// runMediaFetch downloads one media file of a record, stores it and
// purges the record's cache tags so its answers name the edge URL. It
// never touches the record itself: a download failing (a vendor outage, a
// 404) leaves the record as synced, naming the vendor URL.
func (a *App) runMediaFetch(ctx context.Context, t *jobs.Task) error {
	var p mediaFetchPayload
	if err := json.Unmarshal(t.Job.Payload, &p); err != nil {
		return jobs.Permanent(fmt.Errorf("media.fetch: bad payload: %w", err))
	}
	if t.Job.Attempts <= 1 {
		observeMediaQueueAge(nowFunc().Sub(t.Job.CreatedAt))
	}
	m := a.media
	if m == nil {
		observeMediaFetch(mediaDisabled, 0)
		return jobs.Permanent(errors.New("media.fetch: no resource has media fields in this config"))
	}
	log := a.logger.With(zap.String("vendor", p.Vendor), zap.String("resource", p.Resource), zap.String("id", p.ID),
		zap.String("field", p.Field), zap.String("job", t.Job.ID))
	rec, err := a.records.Get(p.Vendor, p.Resource, p.ID)
	if errors.Is(err, vendors.ErrNotFound) || (err == nil && (rec.Deleted || !slices.Contains(mediaURLs(rec, p.Field), p.URL))) {
		observeMediaFetch(mediaSuperseded, 0)
		return nil
	}
	if err != nil {
		return fmt.Errorf("media.fetch: reading the record: %w", err)
	}
	m.gcMu.RLock()
	defer m.gcMu.RUnlock()
	if e, ok, err := m.index.Lookup(p.URL); err != nil {
		return err
	} else if ok && m.store.Has(e.Hash) {
		observeMediaFetch(mediaCached, 0)
		return a.purgeMediaRecord(ctx, rec)
	}
	obj, err := m.fetcher.Fetch(ctx, p.URL, m.store, m.cfg.MaxFileSize, m.cfg.Types)
	outcome, permanent := mediaOutcome(err)
	observeMediaFetch(outcome, obj.Size)
	if err != nil {
		switch {
		case permanent:
			log.Warn("media download refused; the record keeps naming the vendor URL", zap.String("outcome", outcome), zap.Error(err))
			return jobs.Permanent(err)
		case outcome == mediaStoreFull || outcome == mediaDiskFull:
			log.Error("media store full: download postponed", zap.String("outcome", outcome),
				zap.Int64("stored_bytes", m.store.Total()), zap.Error(err))
		default:
			log.Info("media download failed; retrying", zap.Error(err))
		}
		return err
	}
	entry := media.Entry{Object: obj, FetchedAt: nowFunc().UTC()}
	if len(m.cfg.Widths) > 0 {
		derived, err := media.Derive(m.store, obj, m.cfg.Widths)
		switch {
		case errors.Is(err, media.ErrStoreFull) || errors.Is(err, media.ErrNoSpace):
			o, _ := mediaOutcome(err)
			observeMediaFetch(o, 0)
			log.Error("media store full: resized copies postponed", zap.Error(err))
			return err
		case err != nil:
			// The original is served; only its copies are missing.
			log.Warn("media: no resized copies", zap.String("hash", obj.Hash), zap.Error(err))
		default:
			entry.Widths = derived
		}
	}
	if err := m.index.Bind(p.URL, entry); err != nil {
		return fmt.Errorf("media.fetch: indexing %s: %w", obj.Hash, err)
	}
	log.Debug("media stored", zap.String("hash", obj.Hash), zap.Int64("bytes", obj.Size), zap.String("type", obj.Type))
	return a.purgeMediaRecord(ctx, rec)
}

// purgeMediaRecord purges a record's tags (and its collection's), whose
// answers now name a media file's edge URL.
func (a *App) purgeMediaRecord(ctx context.Context, rec vendors.Record) error {
	tags := append(append([]string(nil), rec.Tags...), collectionTag(rec.Vendor, rec.Resource))
	if _, err := a.purgeFor(ctx, &PurgeRequest{Tags: tags}, "media"); err != nil {
		return fmt.Errorf("media.fetch: purging the record's tags: %w", err)
	}
	return nil
}

// MediaGCReport is what one run of the maintenance job did.
type MediaGCReport struct {
	Referenced int `json:"referenced"`
	Unbound    int `json:"unbound"`
	Removed    int `json:"removed"`
	Damaged    int `json:"damaged"`
	Enqueued   int `json:"enqueued"`
}

// runMediaGC is the maintenance job: it removes the files and index
// entries no live record names, removes damaged files (hash checked), and
// enqueues downloads of named URLs whose stored file is gone or damaged. Any error reading
// the records stops it before anything is removed.
func (a *App) runMediaGC(ctx context.Context, t *jobs.Task) error {
	m := a.media
	if m == nil {
		return nil
	}
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	// Every URL a live record names, with one field naming it.
	named := map[string]mediaFetchPayload{}
	for _, vn := range sortedKeys(m.fields) {
		for _, rn := range sortedKeys(m.fields[vn]) {
			for page := 1; ; page++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				pg, err := a.records.List(vn, rn, time.Time{}, page, vendors.MaxPerPage)
				if err != nil {
					return fmt.Errorf("media.gc: listing %s/%s: %w", vn, rn, err)
				}
				for _, rec := range pg.Records {
					if rec.Deleted {
						continue
					}
					for _, f := range m.fields[vn][rn] {
						for _, u := range mediaURLs(rec, f) {
							if _, ok := named[u]; !ok && media.CheckURL(u) == nil {
								named[u] = mediaFetchPayload{Vendor: vn, Resource: rn, ID: rec.ID, Field: f, URL: u}
							}
						}
					}
				}
				if !pg.HasMore {
					break
				}
			}
		}
	}
	entries, err := m.index.All()
	if err != nil {
		return err
	}
	rep := MediaGCReport{Referenced: len(named)}
	var unbind []string
	keep := map[string]bool{}
	for u, e := range entries {
		if _, ok := named[u]; !ok {
			unbind = append(unbind, u)
			continue
		}
		for _, h := range e.Hashes() {
			keep[h] = true
		}
	}
	// Check every kept file's content.
	for h := range keep {
		f, _, err := m.store.Open(h)
		switch {
		case err == nil:
			f.Close()
			continue
		case errors.Is(err, media.ErrDamaged):
			rep.Damaged++
			observeMediaDamaged()
			a.logger.Error("media file damaged: removed, downloading again", zap.String("hash", h), zap.Error(err))
		case errors.Is(err, media.ErrNotFound):
		default:
			return fmt.Errorf("media.gc: checking %s: %w", h, err)
		}
		delete(keep, h)
		for u, e := range entries {
			if slices.Contains(e.Hashes(), h) {
				unbind = append(unbind, u)
			}
		}
	}
	if err := m.index.Unbind(unbind...); err != nil {
		return fmt.Errorf("media.gc: %w", err)
	}
	rep.Unbound = len(unbind)
	hashes, err := m.store.Hashes()
	if err != nil {
		return fmt.Errorf("media.gc: listing files: %w", err)
	}
	for _, h := range hashes {
		if keep[h] {
			continue
		}
		if err := m.store.Remove(h); err != nil {
			return fmt.Errorf("media.gc: %w", err)
		}
		rep.Removed++
		observeMediaRemoved()
	}
	// Stored once, named, and now missing or damaged: download again.
	// (URLs never stored are left to their own jobs: one whose download
	// failed for good, a 404, is not retried every run.)
	var reqs []jobs.EnqueueRequest
	for _, u := range sortedKeys(named) {
		if e, ok := entries[u]; !ok || !slices.ContainsFunc(e.Hashes(), func(h string) bool { return !keep[h] }) {
			continue
		}
		reqs = append(reqs, mediaFetchRequest(named[u], ":repair:"+t.Job.ID))
	}
	if len(reqs) > 0 {
		if _, err := a.jobs.EnqueueBatch(ctx, reqs); err != nil {
			return fmt.Errorf("media.gc: enqueueing downloads: %w", err)
		}
	}
	rep.Enqueued = len(reqs)
	a.logger.Info("media maintenance done", zap.Int("referenced", rep.Referenced), zap.Int("unbound", rep.Unbound),
		zap.Int("removed", rep.Removed), zap.Int("damaged", rep.Damaged), zap.Int("enqueued", rep.Enqueued))
	return nil
}

// startMediaMaintenance enqueues a media.gc job once per gc_every window
// (idempotency key media.gc:<window start>).
func (a *App) startMediaMaintenance() {
	m := a.media
	if m == nil || validatingOnly {
		return
	}
	every := time.Duration(m.cfg.GCEvery)
	ctx, cancel := context.WithCancel(a.ctx)
	done := make(chan struct{})
	m.stopMaintenance = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		var last int64
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			// The first window after start is skipped: a restart does not
			// rescan everything.
			if w := nowFunc().Truncate(every).Unix(); last == 0 {
				last = w
			} else if w != last {
				if err := a.EnqueueMediaGC(ctx, "media.gc:"+strconv.FormatInt(w, 10)); err != nil && ctx.Err() == nil {
					a.logger.Error("scheduling media maintenance", zap.Error(err))
				} else {
					last = w
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// EnqueueMediaGC enqueues the media maintenance job with an idempotency
// key (empty: none).
func (a *App) EnqueueMediaGC(ctx context.Context, key string) error {
	_, _, err := a.jobs.Enqueue(ctx, jobs.EnqueueRequest{Kind: jobKindMediaGC, Key: key})
	return err
}
