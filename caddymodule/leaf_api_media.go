package caddymodule

import (
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/media"
	"github.com/craftedge/craftedge/vendors"
)

// The App's API for serving media files (caddymodule/records serves them
// under MediaPathPrefix) and naming them in read-model answers.

// MediaRef is a media URL of a record as the read model shows it.
type MediaRef struct {
	// URL is where a visitor gets the file: its edge URL
	// (MediaPathPrefix + hash) once stored, the vendor URL until then.
	URL string `json:"url"`
	// VendorURL is the URL the record names.
	VendorURL string `json:"vendor_url"`
	// Stored reports that the file is stored and URL is the edge URL.
	Stored bool `json:"stored"`
	// Hash, Type and Size describe the stored file.
	Hash string `json:"hash,omitempty"`
	Type string `json:"type,omitempty"`
	Size int64  `json:"size,omitempty"`
	// Widths are the edge URLs of the image's scaled-down copies, by
	// width in pixels (the media block's widths below the image's own).
	Widths map[int]string `json:"widths,omitempty"`
}

// MediaRefs returns the media of a record by field: a MediaRef for a
// string field, a []MediaRef for an array; nil when the resource has no
// media fields. It reads the index only (no vendor call).
func (a *App) MediaRefs(rec vendors.Record) map[string]any {
	m := a.media
	if m == nil {
		return nil
	}
	fields := m.fields[rec.Vendor][rec.Resource]
	if len(fields) == 0 {
		return nil
	}
	out := map[string]any{}
	for _, f := range fields {
		urls := mediaURLs(rec, f)
		refs := make([]MediaRef, 0, len(urls))
		for _, u := range urls {
			ref := MediaRef{URL: u, VendorURL: u}
			if e, ok, err := m.index.Lookup(u); err == nil && ok && m.store.Has(e.Hash) {
				ref = MediaRef{URL: MediaPathPrefix + e.Hash, VendorURL: u, Stored: true, Hash: e.Hash, Type: e.Type, Size: e.Size}
				for w, o := range e.Widths {
					if ref.Widths == nil {
						ref.Widths = map[int]string{}
					}
					ref.Widths[w] = MediaPathPrefix + o.Hash
				}
			}
			refs = append(refs, ref)
		}
		switch rec.Fields[f].(type) {
		case string:
			if len(refs) == 1 {
				out[f] = refs[0]
			}
		case []any:
			out[f] = refs
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// ServeMedia answers GET and HEAD of a stored media file by its hash: a
// strong ETag (the hash), an immutable Cache-Control, Range and
// conditional requests (http.ServeContent), the content type sniffed as
// when it was stored. A missing file is a 404; a damaged one is removed,
// its URLs are downloaded again (the maintenance job runs), and it is a
// 404 too: never served.
func (a *App) ServeMedia(w http.ResponseWriter, r *http.Request, hash string, logger *zap.Logger) error {
	m := a.media
	if m == nil || !media.ValidHash(hash) {
		return writeAPIError(w, http.StatusNotFound, "no such media file")
	}
	f, info, err := m.store.Open(hash)
	switch {
	case errors.Is(err, media.ErrNotFound):
		return writeAPIError(w, http.StatusNotFound, "no such media file")
	case errors.Is(err, media.ErrDamaged):
		observeMediaDamaged()
		logger.Error("media file damaged: removed, not served; downloading again", zap.String("hash", hash), zap.Error(err))
		if err := a.EnqueueMediaGC(r.Context(), "media.gc:damaged:"+hash); err != nil {
			logger.Error("enqueueing media maintenance", zap.Error(err))
		}
		return writeAPIError(w, http.StatusNotFound, "no such media file")
	case err != nil:
		logger.Error("opening media file", zap.String("hash", hash), zap.Error(err))
		return writeAPIError(w, http.StatusInternalServerError, "media file unreadable")
	}
	defer f.Close()
	setMediaHeaders(w.Header(), hash)
	http.ServeContent(w, r, "", info.ModTime(), f)
	return nil
}
