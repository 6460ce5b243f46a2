package cachehandler

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/craftedge/craftedge/httpcache"
	"github.com/craftedge/craftedge/pagecache"
)

// Cache-Status values (RFC 9211) this handler sends.
const (
	cacheStatusName            = "craftedge"
	statusHit                  = "craftedge; hit"
	statusStaleWhileRevalidate = "craftedge; hit; detail=stale"
	statusRevalidated          = "craftedge; fwd=stale; fwd-status=304; stored"
)

// statusMiss is the Cache-Status of a response fetched from the upstream.
func statusMiss(res *fetchResult) string {
	switch {
	case res.revalidated:
		return statusRevalidated
	}
	fwd := "craftedge; fwd=miss"
	if res.hadStale {
		fwd = "craftedge; fwd=stale"
	}
	switch {
	case res.stored:
		return fwd + "; stored"
	case res.notStoredReason != "":
		return fwd + "; detail=" + res.notStoredReason
	default:
		return fwd
	}
}

// writeEntry answers the client from a stored entry: the variant its
// Accept-Encoding prefers (stored compressed, never compressed per
// request), a 304 when its validators match, a 206 or 416 for a Range
// request (see serveRange), no body for HEAD. The stored Date header is
// replayed as received (RFC 9110 §6.6.1); Age says how long it has been
// stored.
func (h *Handler) writeEntry(w http.ResponseWriter, r *http.Request, e *pagecache.Entry, now time.Time, cacheStatus string) {
	if e.ESI != nil {
		h.writeAssembled(w, r, nextOf(r), e, now, cacheStatus, "", 0)
		return
	}
	hdr := w.Header()
	replayHeader(hdr, e)

	body := e.Body
	etag := e.ETag
	encoding := ""
	if e.Gzip != nil || e.Zstd != nil {
		encoding = httpcache.PreferredEncoding(r.Header.Get("Accept-Encoding"), e.Gzip != nil, e.Zstd != nil)
		addVaryAcceptEncoding(hdr)
	}
	switch encoding {
	case "zstd":
		body = e.Zstd
		hdr["Content-Encoding"] = contentEncodingZstd
		etag = variantETag(e.ETag, "zstd")
	case "gzip":
		body = e.Gzip
		hdr["Content-Encoding"] = contentEncodingGzip
		etag = variantETag(e.ETag, "gzip")
	default:
		if body == nil && e.Flags&pagecache.FlagBodyInZstd != 0 {
			if err := e.RestoreBody(); err == nil {
				body = e.Body
			}
		}
	}
	if etag != "" {
		hdr["Etag"] = []string{etag}
	}
	hdr["Age"] = []string{strconv.FormatInt(int64(e.Age(now)/time.Second), 10)}
	hdr["Cache-Status"] = []string{cacheStatus}

	if e.Status == http.StatusOK && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		hasConditional(r) && httpcache.NotModified(r, entryETags(e), e.LastModified) {
		delete(hdr, "Content-Type")
		delete(hdr, "Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	status := e.Status
	if status == http.StatusOK {
		if _, set := hdr["Accept-Ranges"]; !set {
			hdr["Accept-Ranges"] = acceptRangesBytes
		}
		if rv, ok := r.Header["Range"]; ok && r.Method == http.MethodGet {
			status, body = serveRange(hdr, r, e, rv, etag, body)
		}
	}
	if bodyAllowed(status) {
		hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead && bodyAllowed(status) {
		_, _ = w.Write(body)
	}
}

// replayHeader adds a stored entry's header fields to hdr, with one
// allocation for all their values.
func replayHeader(hdr http.Header, e *pagecache.Entry) {
	vals := make([]string, len(e.Header))
	for i, f := range e.Header {
		vals[i] = f.Value
		if _, exists := hdr[f.Name]; exists {
			hdr[f.Name] = append(hdr[f.Name], f.Value)
		} else {
			hdr[f.Name] = vals[i : i+1 : i+1]
		}
	}
}

var acceptRangesBytes = []string{"bytes"}

// serveRange answers a Range request for a stored complete 200 (RFC 9110
// §14, RFC 9111 §3.3) from body, the representation being sent (identity,
// gzip or zstd: the range applies to the encoded bytes, as Content-Encoding
// says). One byte range gets 206 with Content-Range; an unsatisfiable one
// 416 with "Content-Range: bytes */<length>"; several ranges, an invalid
// Range, several Range lines or an If-Range that does not match (strong
// comparison with etag, the sent variant's entity tag, or an exact date
// equal to a strong Last-Modified) get the full 200.
func serveRange(hdr http.Header, r *http.Request, e *pagecache.Entry, rv []string, etag string, body []byte) (int, []byte) {
	if len(rv) != 1 {
		return http.StatusOK, body
	}
	if ir, ok := r.Header["If-Range"]; ok {
		if len(ir) != 1 || !httpcache.IfRangeMatches(ir[0], etag, e.LastModified, entryDate(e)) {
			return http.StatusOK, body
		}
	}
	size := int64(len(body))
	start, end, outcome := httpcache.ParseRange(rv[0], size)
	switch outcome {
	case httpcache.RangePartial:
		hdr["Content-Range"] = []string{"bytes " + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(end, 10) + "/" + strconv.FormatInt(size, 10)}
		return http.StatusPartialContent, body[start : end+1]
	case httpcache.RangeUnsatisfiable:
		hdr["Content-Range"] = []string{"bytes */" + strconv.FormatInt(size, 10)}
		delete(hdr, "Content-Type")
		delete(hdr, "Content-Encoding")
		return http.StatusRequestedRangeNotSatisfiable, nil
	}
	return http.StatusOK, body
}

// entryDate is the stored Date of an entry (zero when none or invalid).
func entryDate(e *pagecache.Entry) time.Time {
	for _, f := range e.Header {
		if f.Name == "Date" {
			t, _ := httpcache.ParseHTTPDate(f.Value)
			return t
		}
	}
	return time.Time{}
}

var (
	contentEncodingZstd = []string{"zstd"}
	contentEncodingGzip = []string{"gzip"}
)

func hasConditional(r *http.Request) bool {
	_, inm := r.Header["If-None-Match"]
	_, ims := r.Header["If-Modified-Since"]
	return inm || ims
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// variantETag derives the entity tag of a compressed variant: a different
// representation needs a different strong validator.
func variantETag(etag, coding string) string {
	if len(etag) < 2 || etag[len(etag)-1] != '"' {
		return etag
	}
	return etag[:len(etag)-1] + "-" + coding + `"`
}

func entryETags(e *pagecache.Entry) []string {
	return []string{e.ETag, variantETag(e.ETag, "gzip"), variantETag(e.ETag, "zstd")}
}

func addVaryAcceptEncoding(hdr http.Header) {
	for _, v := range hdr["Vary"] {
		if strings.Contains(strings.ToLower(v), "accept-encoding") || strings.TrimSpace(v) == "*" {
			return
		}
	}
	hdr["Vary"] = append(hdr["Vary"], "Accept-Encoding")
}
