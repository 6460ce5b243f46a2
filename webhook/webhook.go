package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Scheme selects how a vendor signs its webhooks.
type Scheme string

// The supported schemes; see the package documentation for each.
const (
	SchemeStandard Scheme = "standard"
	SchemeShopify  Scheme = "shopify"
	SchemeStripe   Scheme = "stripe"
	SchemeHubSpot  Scheme = "hubspot"
	SchemeHMAC     Scheme = "hmac"
	SchemeStatic   Scheme = "static"
)

// Header names used by the vendor schemes.
const (
	HeaderStandardID        = "webhook-id"
	HeaderStandardTimestamp = "webhook-timestamp"
	HeaderStandardSignature = "webhook-signature"

	HeaderShopifyHMAC        = "X-Shopify-Hmac-Sha256"
	HeaderShopifyWebhookID   = "X-Shopify-Webhook-Id"
	HeaderShopifyTriggeredAt = "X-Shopify-Triggered-At"

	HeaderStripeSignature = "Stripe-Signature"

	HeaderHubSpotSignatureV3 = "X-HubSpot-Signature-v3"
	HeaderHubSpotTimestamp   = "X-HubSpot-Request-Timestamp"
)

// DefaultTolerance is the timestamp window used when Config.Tolerance is zero.
const DefaultTolerance = 5 * time.Minute

// Input limits. Anything larger is refused as malformed before any MAC work.
const (
	maxHeaderLen  = 8 << 10 // bytes in one signature/id/timestamp header value
	maxSignatures = 32      // signatures considered per request
	maxIDLen      = 1024    // bytes in a delivery id header
)

// Config describes how one vendor signs its webhooks.
type Config struct {
	// Scheme is one of "standard", "shopify", "stripe", "hubspot", "hmac"
	// or "static".
	Scheme Scheme
	// Secrets are the shared secrets; a signature made with any of them is
	// accepted, so a new secret can be added before the old one is removed.
	// Sign uses Secrets[0]. For "standard" each secret is "whsec_<base64>"
	// (or bare base64); for the other schemes the string's bytes are the key.
	Secrets []string
	// Tolerance is the accepted distance between a signed timestamp and now,
	// in both directions. Zero means DefaultTolerance. Used by "standard",
	// "stripe", "hubspot" and by "hmac" when TimestampHeader is set.
	Tolerance time.Duration
	// Header is the header carrying the signature ("hmac") or the shared
	// secret ("static"). Required by those schemes, refused by the others.
	Header string
	// Encoding is how the "hmac" MAC is written: "hex" (default) or "base64".
	Encoding string
	// Prefix is an optional literal in front of the "hmac" MAC, such as
	// GitHub's "sha256=". When set, a signature without it is malformed.
	Prefix string
	// TimestampHeader optionally names a header holding unix seconds for
	// "hmac". When set, the signed content is "{timestamp}.{body}" and the
	// tolerance window is enforced.
	TimestampHeader string
}

// Request is what Verify needs from an incoming HTTP request.
type Request struct {
	// Method and URL are signed by HubSpot only. URL must be the full URL
	// the vendor called (scheme://host/path?query) as the vendor knows it;
	// behind a proxy, build it from the public base URL rather than from
	// what the backend saw.
	Method, URL string
	Header      http.Header
	// Body is the raw, unparsed request body.
	Body []byte
}

// Delivery describes a verified webhook.
type Delivery struct {
	// ID is the replay key to remember: webhook-id (standard),
	// X-Shopify-Webhook-Id (shopify), hex SHA-256 of timestamp+body
	// (hubspot), of timestamp "." body (hmac with a timestamp header) or
	// of the body (stripe, whose body carries the event id). Empty for
	// hmac without a timestamp and static: nothing tells a replay from a
	// legitimate repeat of the same body, so the caller must not dedupe.
	ID string
	// Timestamp is the signed timestamp, zero if the scheme signs none.
	Timestamp time.Time
}

// Validate reports the first problem with the configuration. Errors name
// the field (never a secret's value) and wrap ErrInvalidConfig.
func (c *Config) Validate() error {
	_, err := c.keys()
	return err
}

// keys validates c and returns the HMAC keys (or, for static, the expected
// header values) in the order of Secrets.
func (c *Config) keys() ([][]byte, error) {
	if c == nil {
		return nil, cfgErr("Config", "nil")
	}
	switch c.Scheme {
	case SchemeStandard, SchemeShopify, SchemeStripe, SchemeHubSpot:
		for _, f := range [...]struct{ name, v string }{{"Header", c.Header}, {"Encoding", c.Encoding}, {"Prefix", c.Prefix}, {"TimestampHeader", c.TimestampHeader}} {
			if f.v != "" {
				return nil, cfgErr(f.name, "only used by the hmac and static schemes, not %q", string(c.Scheme))
			}
		}
	case SchemeHMAC:
		if c.Header == "" {
			return nil, cfgErr("Header", "required for the hmac scheme")
		}
		if !validHeaderName(c.Header) {
			return nil, cfgErr("Header", "not a valid header name")
		}
		if c.Encoding != "" && c.Encoding != "hex" && c.Encoding != "base64" {
			return nil, cfgErr("Encoding", "must be \"hex\" or \"base64\", got %q", c.Encoding)
		}
		if c.TimestampHeader != "" {
			if !validHeaderName(c.TimestampHeader) {
				return nil, cfgErr("TimestampHeader", "not a valid header name")
			}
			if http.CanonicalHeaderKey(c.TimestampHeader) == http.CanonicalHeaderKey(c.Header) {
				return nil, cfgErr("TimestampHeader", "must differ from Header")
			}
		}
	case SchemeStatic:
		if c.Header == "" {
			return nil, cfgErr("Header", "required for the static scheme")
		}
		if !validHeaderName(c.Header) {
			return nil, cfgErr("Header", "not a valid header name")
		}
		for _, f := range [...]struct{ name, v string }{{"Encoding", c.Encoding}, {"Prefix", c.Prefix}, {"TimestampHeader", c.TimestampHeader}} {
			if f.v != "" {
				return nil, cfgErr(f.name, "not used by the static scheme")
			}
		}
	case "":
		return nil, cfgErr("Scheme", "required (standard, shopify, stripe, hubspot, hmac or static)")
	default:
		return nil, cfgErr("Scheme", "unknown scheme %q (want standard, shopify, stripe, hubspot, hmac or static)", string(c.Scheme))
	}
	if c.Tolerance < 0 {
		return nil, cfgErr("Tolerance", "must not be negative")
	}
	if len(c.Secrets) == 0 {
		return nil, cfgErr("Secrets", "at least one secret is required")
	}
	keys := make([][]byte, len(c.Secrets))
	for i, s := range c.Secrets {
		field := "Secrets[" + strconv.Itoa(i) + "]"
		if s == "" {
			return nil, cfgErr(field, "empty")
		}
		if c.Scheme == SchemeStandard {
			k, err := decodeStandardSecret(s)
			if err != nil {
				return nil, cfgErr(field, "%v", err)
			}
			keys[i] = k
			continue
		}
		if c.Scheme == SchemeStatic {
			if !validHeaderValue(s) {
				return nil, cfgErr(field, "cannot be sent as a header value (control characters or surrounding spaces)")
			}
			if len(s) > maxHeaderLen {
				return nil, cfgErr(field, "longer than %d bytes", maxHeaderLen)
			}
		}
		keys[i] = []byte(s)
	}
	return keys, nil
}

// standardSecretPrefix marks a Standard Webhooks symmetric secret.
const standardSecretPrefix = "whsec_"

// decodeStandardSecret follows the official Standard Webhooks libraries
// (Go, Python, JavaScript): strip an optional "whsec_" prefix and
// base64-decode the rest; a secret that is not base64 is an error, not a raw
// key. Unpadded base64 is accepted as the Python library does.
func decodeStandardSecret(s string) ([]byte, error) {
	b64 := strings.TrimPrefix(s, standardSecretPrefix)
	k, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		k, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil {
		return nil, errors.New("not a Standard Webhooks secret (want whsec_ followed by base64)")
	}
	if len(k) == 0 {
		return nil, errors.New("decodes to an empty key")
	}
	return k, nil
}

func (c *Config) tolerance() time.Duration {
	if c.Tolerance == 0 {
		return DefaultTolerance
	}
	return c.Tolerance
}

// Verify checks req against c at time now. On success it returns the
// delivery's replay key and signed timestamp. The errors are described in
// errors.go; configuration problems wrap ErrInvalidConfig.
func (c *Config) Verify(req Request, now time.Time) (Delivery, error) {
	keys, err := c.keys()
	if err != nil {
		return Delivery{}, err
	}
	tol := c.tolerance()
	switch c.Scheme {
	case SchemeStandard:
		return verifyStandard(req, keys, now, tol)
	case SchemeShopify:
		return verifyShopify(req, keys)
	case SchemeStripe:
		return verifyStripe(req, keys, now, tol)
	case SchemeHubSpot:
		return verifyHubSpot(req, keys, now, tol)
	case SchemeHMAC:
		return c.verifyHMAC(req, keys, now, tol)
	default: // SchemeStatic; keys() rejected everything else
		return c.verifyStatic(req, keys)
	}
}

// Sign sets on req the headers a sender using this scheme would send, signed
// with Secrets[0] at time now. id is the delivery id for the schemes that
// send one (standard, shopify) and is ignored by the others. HubSpot needs
// req.Method and req.URL. Sign is meant for simulators and tests.
func (c *Config) Sign(req *Request, id string, now time.Time) error {
	keys, err := c.keys()
	if err != nil {
		return err
	}
	if req == nil {
		return errors.New("webhook: Sign: nil request")
	}
	if req.Header == nil {
		req.Header = make(http.Header)
	}
	key := keys[0]
	switch c.Scheme {
	case SchemeStandard:
		return signStandard(req, key, id, now)
	case SchemeShopify:
		return signShopify(req, key, id, now)
	case SchemeStripe:
		return signStripe(req, key, now)
	case SchemeHubSpot:
		return signHubSpot(req, key, now)
	case SchemeHMAC:
		return c.signHMAC(req, key, now)
	default:
		req.Header.Set(c.Header, c.Secrets[0])
		return nil
	}
}

// headerValues returns the values of name. It accepts non-canonical map keys
// too, since callers may build http.Header by hand.
func headerValues(h http.Header, name string) []string {
	if v := h.Values(name); len(v) > 0 {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v
		}
	}
	return nil
}

// requireHeader returns the first value of a required header, refusing
// empty and oversized values.
func requireHeader(h http.Header, name string, maxLen int) (string, error) {
	vals := headerValues(h, name)
	if len(vals) == 0 {
		return "", missing(name)
	}
	v := vals[0]
	if strings.TrimSpace(v) == "" {
		return "", malformed(name, "empty")
	}
	if len(v) > maxLen {
		return "", malformed(name, "too long")
	}
	return v, nil
}

// parseDigits parses an unsigned decimal integer of at most 19 digits with
// no sign, spaces or other characters.
func parseDigits(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// checkWindow enforces |now - ts| <= tol, with distinct errors per side.
func checkWindow(ts, now time.Time, tol time.Duration) error {
	if now.Sub(ts) > tol {
		return ErrTimestampTooOld
	}
	if ts.Sub(now) > tol {
		return ErrTimestampInFuture
	}
	return nil
}

// macOf returns HMAC-SHA256(key, parts...).
func macOf(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// anyMatch reports whether any candidate equals the MAC computed for any
// key. Each comparison is constant-time; the MAC is computed once per key.
func anyMatch(keys [][]byte, candidates [][]byte, parts ...[]byte) bool {
	for _, k := range keys {
		want := macOf(k, parts...)
		for _, got := range candidates {
			if hmac.Equal(want, got) {
				return true
			}
		}
	}
	return false
}

func sha256Hex(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s survives a trip through an HTTP header
// unchanged: visible ASCII, spaces and tabs inside, none at the ends.
func validHeaderValue(s string) bool {
	if s != strings.TrimSpace(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
