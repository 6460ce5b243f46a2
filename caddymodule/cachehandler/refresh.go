package cachehandler

import (
	"context"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// refreshInBackground revalidates a stale-while-revalidate entry after the
// stale copy has been served. At most one refresh per key runs at a time
// (it joins the same flight as misses).
func (h *Handler) refreshInBackground(r *http.Request, next caddyhttp.Handler, key string, stale []byte) {
	bg := detachedRequest(r)
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

// detachedRequest is r for an upstream call that outlives r's handling (a
// background refresh, a stale_after call): its context is not cancelled
// with r's, and it has a replacer and variables of its own (a copy of r's
// variables, read here in r's goroutine), so the call's handlers
// (reverse_proxy setting its placeholders, php_fastcgi) never write into
// the maps r's goroutine still reads, for its access log among others.
func detachedRequest(r *http.Request) *http.Request {
	bg := r.Clone(context.WithoutCancel(r.Context()))
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		return bg
	}
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	bg = caddyhttp.PrepareRequest(bg, caddy.NewReplacer(), discardWriter{header: make(http.Header)}, srv)
	if m, ok := bg.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		for k, v := range vars {
			if _, set := m[k]; !set {
				m[k] = v
			}
		}
	}
	return bg
}

// discardWriter swallows a background refresh's response (a stored copy
// is all we want from it).
type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}
