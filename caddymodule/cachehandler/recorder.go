package cachehandler

import (
	"bytes"
	"net/http"
)

// recorderMode is what the recorder does with the upstream response, decided
// when the status line and headers arrive.
type recorderMode uint8

const (
	// modeUndecided: nothing written yet.
	modeUndecided recorderMode = iota
	// modeBuffer: cacheable so far; the body is buffered for storing.
	modeBuffer
	// modePassthrough: not cacheable (or too large): streamed to the client.
	modePassthrough
	// modeFailed: a 5xx; buffered (bounded) so a fallback can replace it.
	modeFailed
	// modeNotModified: the upstream confirmed our stored copy (304).
	modeNotModified
)

// maxErrorBody bounds how much of an upstream 5xx body is kept to relay
// when nothing better can be served.
const maxErrorBody = 64 << 10

// upstreamRecorder sits between the upstream handler and the client for
// cacheable requests. It buffers cacheable responses up to a limit and
// switches to streaming for anything it will not store, so large or private
// responses reach the client untouched and unbuffered.
type upstreamRecorder struct {
	client http.ResponseWriter
	header http.Header
	status int
	mode   recorderMode
	body   bytes.Buffer
	limit  int64

	// decide classifies the response when headers arrive: true to
	// buffer it for the cache.
	decide func(status int, header http.Header) bool
	// onPassthrough runs once when the recorder starts streaming.
	onPassthrough func()
	// writeErr remembers a client write error in passthrough.
	wroteClient bool
}

func newUpstreamRecorder(client http.ResponseWriter, limit int64, decide func(int, http.Header) bool, onPassthrough func()) *upstreamRecorder {
	return &upstreamRecorder{
		client:        client,
		header:        make(http.Header),
		limit:         limit,
		decide:        decide,
		onPassthrough: onPassthrough,
	}
}

func (rec *upstreamRecorder) Header() http.Header { return rec.header }

func (rec *upstreamRecorder) WriteHeader(status int) {
	if rec.mode != modeUndecided {
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		// Informational responses (103 Early Hints) go straight out.
		copyHeader(rec.client.Header(), rec.header)
		rec.client.WriteHeader(status)
		return
	}
	rec.status = status
	switch {
	case status >= 500:
		rec.mode = modeFailed
	case status == http.StatusNotModified:
		rec.mode = modeNotModified
	case rec.decide(status, rec.header):
		rec.mode = modeBuffer
	default:
		rec.startPassthrough()
	}
}

func (rec *upstreamRecorder) startPassthrough() {
	rec.mode = modePassthrough
	if rec.onPassthrough != nil {
		rec.onPassthrough()
	}
	copyHeader(rec.client.Header(), rec.header)
	rec.client.WriteHeader(rec.status)
	rec.wroteClient = true
}

func (rec *upstreamRecorder) Write(p []byte) (int, error) {
	if rec.mode == modeUndecided {
		rec.WriteHeader(http.StatusOK)
	}
	switch rec.mode {
	case modeBuffer:
		if int64(rec.body.Len()+len(p)) > rec.limit {
			// Too large to cache: stream what we have and the rest.
			rec.header.Del("Content-Length")
			buffered := rec.body.Bytes()
			rec.startPassthrough()
			if _, err := rec.client.Write(buffered); err != nil {
				return 0, err
			}
			rec.body = bytes.Buffer{}
			return rec.client.Write(p)
		}
		return rec.body.Write(p)
	case modePassthrough:
		return rec.client.Write(p)
	case modeFailed:
		if room := maxErrorBody - rec.body.Len(); room > 0 {
			if len(p) > room {
				rec.body.Write(p[:room])
			} else {
				rec.body.Write(p)
			}
		}
		return len(p), nil
	default:
		return len(p), nil
	}
}

// Flush streams in passthrough mode; buffered modes ignore it.
func (rec *upstreamRecorder) Flush() {
	if rec.mode == modePassthrough {
		_ = http.NewResponseController(rec.client).Flush()
	}
}

// Unwrap lets http.ResponseController reach the client writer.
func (rec *upstreamRecorder) Unwrap() http.ResponseWriter { return rec.client }

// copyHeader adds every field of src to dst.
func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}
