// Package webhook verifies signed webhook deliveries from vendors, exactly as
// each vendor signs them. It is deliberately free of Caddy and storage types:
// a handler passes in the raw request (method, full URL, headers, raw body)
// and the current time, and gets back either a Delivery — whose ID is the
// replay key to remember — or an error that says why the request was refused.
//
// # Schemes
//
// "standard" — Standard Webhooks (https://www.standardwebhooks.com/).
// Headers webhook-id, webhook-timestamp (unix seconds) and webhook-signature
// (one or more space-separated "v1,<base64>" entries; other versions such as
// the asymmetric "v1a" are ignored). Signed content is
// "{id}.{timestamp}.{body}", HMAC-SHA256, standard base64. The secret is
// "whsec_<base64>" and the HMAC key is the base64-decoded part. A secret
// without the prefix is base64-decoded as well, which is what the official
// Go, Python and JavaScript libraries do; like them, a secret that is not
// valid base64 is refused (Validate reports it) rather than used as raw
// bytes. Unpadded base64 is accepted, as the Python library does.
// Replay key: webhook-id.
//
// "shopify" — X-Shopify-Hmac-Sha256 is base64(HMAC-SHA256(secret, body)),
// the secret being the app's client secret used as raw bytes. Replay key:
// X-Shopify-Webhook-Id. Shopify signs no timestamp: it sends
// X-Shopify-Triggered-At, but that header is not covered by the HMAC, so a
// freshness window cannot be enforced cryptographically and Delivery.Timestamp
// is zero. X-Shopify-Webhook-Id is not signed either: a party that captured a
// delivery can resend it under a new id. Dedupe by id stops Shopify's own
// retries; since a verified webhook only triggers an idempotent refetch, a
// hostile replay costs at most an extra refetch.
//
// "stripe" — Stripe-Signature: "t=<unix>,v1=<hex>[,v1=<hex>...]"; v0 and
// unknown keys are ignored; several v1 entries are allowed (Stripe sends one
// per active secret while a secret is being rolled). Signed content is
// "{t}.{body}", HMAC-SHA256, hex. The key is the whole signing secret string
// ("whsec_..." included) as raw bytes — unlike Standard Webhooks, Stripe does
// not base64-decode it. Replay key: hex SHA-256 of the body (the event id is
// only in the body).
//
// "hubspot" — HubSpot signature v3. X-HubSpot-Signature-v3 is
// base64(HMAC-SHA256(client secret, method + uri + body + timestamp)) where
// timestamp is X-HubSpot-Request-Timestamp verbatim (unix milliseconds) and
// uri is the full URL HubSpot called (scheme://host/path?query), passed in
// Request.URL. HubSpot's documentation says to URL-decode the characters
// %3A : %2F / %3F ? %40 @ %21 ! %24 $ %27 ' %28 ( %29 ) %2A * %2C , %3B ; in
// the URI before signing; the documentation makes no exception for the query
// string, so those twelve sequences are decoded everywhere in the URI, in a
// single left-to-right pass (so "%253A" stays "%253A"), matching upper- and
// lower-case hex digits. Every other escape (%20, %26, %3D, %2B, ...) is left
// as it is. Replay key: hex SHA-256 of timestamp + body.
//
// "hmac" — a generic HMAC-SHA256 header (GitHub style and the like): header
// Config.Header carries Config.Prefix (optional, e.g. "sha256=") followed by
// the MAC in Config.Encoding ("hex", the default, or "base64"; base64 may be
// standard or URL alphabet, padded or not). Signed content is the raw body.
// If Config.TimestampHeader is set, that header must hold unix seconds, the
// signed content becomes "{timestamp}.{body}" (the header value verbatim, a
// dot, the raw body — the same shape as Stripe) and the window is enforced.
// Each value of a repeated signature header is a candidate signature.
// Replay key: hex SHA-256 of "{timestamp}.{body}" with a timestamp header;
// none (Delivery.ID empty) without one, since a legitimate repeat of the
// same body cannot be told from a replay.
//
// "static" — a static shared secret in header Config.Header (what Craft's
// Webhooks plugin can send as a custom header). The value is compared with
// each secret in constant time (both sides are hashed first, so not even the
// length leaks). This authenticates the sender only: the body is not
// protected and there is no timestamp. Replay key: none (Delivery.ID
// empty), as for "hmac" without a timestamp.
//
// # Common behaviour
//
// Several secrets may be configured at once for rotation; any match passes.
// All comparisons are constant-time (hmac.Equal). Where a scheme signs a
// timestamp, the signature is checked first and then the timestamp, against a
// window of Config.Tolerance (default five minutes) in both directions, so
// ErrTimestampTooOld and ErrTimestampInFuture always describe a genuine but
// stale (or replayed) or early delivery, never a forgery. Error messages name
// headers and config fields but never contain a secret, a signature or the
// body.
package webhook
