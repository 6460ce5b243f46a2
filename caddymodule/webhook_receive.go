package caddymodule

import (
	"errors"
	"fmt"
	"github.com/craftedge/craftedge/cluster"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/vendors"
	"github.com/craftedge/craftedge/webhook"
)

// signedReceiver authenticates and bounds the signed requests of one
// source (a vendor's webhooks, or craftedge_purge): method, media type,
// body size, signature and timestamp window, then replay protection. It
// holds resolved secrets: never log it.
type signedReceiver struct {
	source       string // metrics label, log field and replay namespace
	cfg          webhook.Config
	maxBody      int64
	contentTypes []string // nil: application/json and */*+json
	replayTTL    time.Duration
	publicURL    string
}

// newSignedReceiver resolves a's secrets (placeholders such as {env.X})
// and validates the result. Secrets resolving to nothing are skipped with a
// warning; at least one must remain.
func newSignedReceiver(source string, a *WebhookAuth, defaultScheme webhook.Scheme, logger *zap.Logger) (*signedReceiver, error) {
	initWebhookSeries(source)
	repl := caddy.NewReplacer()
	var secrets []string
	for i, s := range a.Secrets {
		v := repl.ReplaceAll(s, "")
		if v == "" {
			logger.Warn("webhook secret resolves to nothing: skipped", zap.String("source", source), zap.Int("secret", i+1))
			continue
		}
		secrets = append(secrets, v)
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("no secret configured (or every placeholder resolved to nothing: is the environment variable set?)")
	}
	cfg := a.webhookConfig(secrets, defaultScheme)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc := &signedReceiver{
		source: source, cfg: cfg, maxBody: a.MaxBodySize, replayTTL: time.Duration(a.ReplayTTL),
		publicURL: a.PublicURL,
	}
	if rc.maxBody <= 0 {
		rc.maxBody = defaultWebhookMaxBody
	}
	if rc.replayTTL <= 0 {
		rc.replayTTL = defaultWebhookReplayTTL
	}
	if rc.replayTTL <= a.window() {
		return nil, fmt.Errorf("replay_ttl %v must be longer than the window (%v)", rc.replayTTL, a.window())
	}
	for _, ct := range a.ContentTypes {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return nil, fmt.Errorf("content_type %q: %w", ct, err)
		}
		rc.contentTypes = append(rc.contentTypes, mt)
	}
	return rc, nil
}

// keepSecretOutOfAccessLog leaves a request carrying a static secret out of
// Caddy's access log. The access log records the request headers as they
// arrived: Caddy copies the request before any handler runs, so removing
// the header here would not remove it from the log line, and Caddy itself
// redacts only Authorization, Proxy-Authorization and cookies (unless the
// server sets log_credentials). The request is still logged by this
// module: "webhook accepted"/"webhook rejected"/"remote purge", with the
// request id, remote IP and outcome, never a header value.
func (rc *signedReceiver) keepSecretOutOfAccessLog(r *http.Request) {
	if rc.cfg.Scheme != webhook.SchemeStatic || len(r.Header.Values(rc.cfg.Header)) == 0 {
		return
	}
	switch http.CanonicalHeaderKey(rc.cfg.Header) {
	case "Authorization", "Proxy-Authorization", "Cookie":
		srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
		if srv == nil || srv.Logs == nil || !srv.Logs.ShouldLogCredentials {
			return // redacted by Caddy
		}
	}
	caddyhttp.SetVar(r.Context(), caddyhttp.LogSkipVar, true)
}

// acceptsContentType reports whether the request's media type is allowed.
func (rc *signedReceiver) acceptsContentType(header string) bool {
	mt, _, err := mime.ParseMediaType(header)
	if err != nil {
		return false
	}
	if rc.contentTypes == nil {
		return mt == "application/json" || strings.HasSuffix(mt, "+json")
	}
	return slices.Contains(rc.contentTypes, mt)
}

// rejection is a refused signed request.
type rejection struct {
	status int
	reason string
	err    error
}

// verifyReason maps a webhook.Verify error to a status and reason.
func verifyReason(err error) (int, string) {
	switch {
	case errors.Is(err, webhook.ErrTimestampTooOld):
		return http.StatusUnauthorized, rejectStale
	case errors.Is(err, webhook.ErrTimestampInFuture):
		return http.StatusUnauthorized, rejectFuture
	case errors.Is(err, webhook.ErrMissingHeader):
		return http.StatusUnauthorized, rejectMissingHeader
	case errors.Is(err, webhook.ErrMalformedHeader):
		return http.StatusUnauthorized, rejectMalformedHeader
	case errors.Is(err, webhook.ErrInvalidConfig):
		return http.StatusInternalServerError, rejectInternal
	default: // ErrBadSignature, ErrIncompleteRequest
		return http.StatusUnauthorized, rejectBadSignature
	}
}

// receive checks r and returns its raw body and the verified delivery. On
// a refusal it returns the rejection, which the caller passes to reject.
func (rc *signedReceiver) receive(r *http.Request, now time.Time) ([]byte, webhook.Delivery, *rejection) {
	webhookMetrics.received.WithLabelValues(rc.source).Inc()
	rc.keepSecretOutOfAccessLog(r)
	if r.Method != http.MethodPost {
		return nil, webhook.Delivery{}, &rejection{http.StatusMethodNotAllowed, rejectMethod, fmt.Errorf("method %s not allowed; use POST", r.Method)}
	}
	if !rc.acceptsContentType(r.Header.Get("Content-Type")) {
		return nil, webhook.Delivery{}, &rejection{http.StatusUnsupportedMediaType, rejectContentType,
			fmt.Errorf("unsupported Content-Type %.100q", r.Header.Get("Content-Type"))}
	}
	tooLarge := &rejection{http.StatusRequestEntityTooLarge, rejectTooLarge,
		fmt.Errorf("body larger than %s", humanize.IBytes(uint64(rc.maxBody)))}
	if r.ContentLength > rc.maxBody {
		return nil, webhook.Delivery{}, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, rc.maxBody+1))
	if err != nil {
		return nil, webhook.Delivery{}, &rejection{http.StatusBadRequest, rejectBadPayload, errors.New("reading the body failed")}
	}
	if int64(len(body)) > rc.maxBody {
		return nil, webhook.Delivery{}, tooLarge
	}
	d, err := rc.cfg.Verify(webhook.Request{Method: r.Method, URL: rc.signedURL(r), Header: r.Header, Body: body}, now)
	if err != nil {
		status, reason := verifyReason(err)
		return nil, webhook.Delivery{}, &rejection{status, reason, err}
	}
	webhookMetrics.verified.WithLabelValues(rc.source).Inc()
	return body, d, nil
}

// signedURL is the full URL the sender called (signed by HubSpot): the
// public URL if configured, else the request's scheme and host, with the
// path and query the client sent (before any rewrite).
func (rc *signedReceiver) signedURL(r *http.Request) string {
	uri := r.URL.RequestURI()
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		uri = orig.URL.RequestURI()
	}
	if rc.publicURL != "" {
		return rc.publicURL + uri
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + uri
}

// seen reports whether the delivery was already accepted (a replay). A
// delivery without a replay key (hmac without a timestamp header, static:
// a repeat of the same body cannot be told from a replay) is never a
// replay: a purge or a refetch done twice is harmless, one dropped is not.
//
// In a cluster a delivery another node accepted is a replay too (its
// refetch runs once cluster-wide); when the cluster cannot answer, the
// node's own store decides (a vendor's retry on another node is then
// processed again: idempotent work, not lost work).
func (rc *signedReceiver) seen(a *App, d webhook.Delivery, now time.Time) (bool, error) {
	if d.ID == "" {
		return false, nil
	}
	dup, err := a.replay.Seen(rc.source, d.ID, now)
	if dup || err != nil || a.cluster == nil {
		return dup, err
	}
	dup, cerr := a.cluster.node.DeliverySeen(a.ctx, rc.source, d.ID, now)
	if cerr != nil && !cluster.ErrNotConnected(cerr) {
		a.logger.Warn("asking the cluster whether a webhook delivery was accepted elsewhere; deciding locally",
			zap.String("source", rc.source), zap.Error(cerr))
	}
	return dup, nil
}

// remember records an accepted delivery, after its work is durable (a
// job enqueued, a purge done): a crash in between makes the sender's retry
// redo idempotent work rather than lose it. A failure is logged; the
// delivery was processed.
func (rc *signedReceiver) remember(a *App, d webhook.Delivery, now time.Time, logger *zap.Logger) {
	if d.ID == "" {
		return
	}
	if _, err := a.replay.Claim(rc.source, d.ID, now, rc.replayTTL); err != nil {
		logger.Error("remembering a webhook delivery (a replay of it will be processed again)", zap.String("source", rc.source), zap.Error(err))
	}
	if a.cluster != nil {
		if err := a.cluster.node.RememberDelivery(a.ctx, rc.source, d.ID, now, rc.replayTTL); err != nil && !cluster.ErrNotConnected(err) {
			logger.Warn("remembering a webhook delivery in the cluster (a replay on another node will be processed again)",
				zap.String("source", rc.source), zap.Error(err))
		}
	}
}

// reject logs, counts and answers a refused signed request. The log and
// the status page get the reason, the error (which names headers and
// fields, never values) and the sender's address: no secret, signature or
// body.
func reject(w http.ResponseWriter, r *http.Request, logger *zap.Logger, source string, rej *rejection, now time.Time) error {
	webhookMetrics.rejected.WithLabelValues(source, rej.reason).Inc()
	msg := rej.err.Error()
	webhookRejections.add(StatusWebhookRejection{
		At: now.UTC(), Source: source, Reason: rej.reason, Status: rej.status,
		Detail: vendors.Snippet([]byte(msg), nil, 200), RemoteIP: remoteIP(r), RequestID: requestID(r),
	})
	level := zap.WarnLevel
	if rej.reason == rejectReplay {
		level = zap.InfoLevel
	}
	logger.Log(level, "webhook rejected",
		zap.String("source", source), zap.String("reason", rej.reason), zap.Int("status", rej.status),
		zap.String("error", msg), zap.String("remote_ip", remoteIP(r)), zap.String("request_id", requestID(r)),
		zap.Int64("content_length", r.ContentLength))
	w.Header().Set("Cache-Control", "no-store")
	if rej.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	if rej.reason == rejectReplay {
		return writeJSON(w, http.StatusOK, map[string]string{"status": "duplicate"})
	}
	if rej.reason == rejectInternal {
		w.Header().Set("Retry-After", "5")
	}
	return WriteError(w, rej.status, ErrorBody{Error: msg, Reason: rej.reason})
}
