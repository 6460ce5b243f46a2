package cachehandler

import (
	"context"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// refreshInBackground revalidates a stale-while-revalidate entry after the
// stale copy has been served. At most one refresh per key runs at a time
// (it joins the same flight as misses).
func (h *Handler) refreshInBackground(r *http.Request, next caddyhttp.Handler, key string, stale []byte) {
	bg := r.Clone(context.WithoutCancel(r.Context()))
	go func() {
		defer func() {
			if p := recover(); p != nil {
				h.logger.Error("background refresh panicked", zap.String("key", key), zap.Any("panic", p))
			}
		}()
		_, _, _ = h.flights.Do(key, func() (any, error) {
			return h.fetch(discardWriter{header: make(http.Header)}, bg, next, key, stale), nil
		})
	}()
}

// discardWriter swallows a background refresh's response (a stored copy
// is all we want from it).
type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}
