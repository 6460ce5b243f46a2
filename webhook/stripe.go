package webhook

import (
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// ParseStripeSignature parses a Stripe-Signature header,
// "t=<unix>,v1=<hex>[,v1=<hex>...][,v0=<hex>]". It returns the timestamp and
// the decoded v1 signatures (possibly none); v0 and unknown keys are
// ignored. A missing, repeated or non-numeric t, an item without "=", a v1
// that is not 32 bytes of hex, an empty or oversized header, or too many
// items is an ErrMalformedHeader.
func ParseStripeSignature(h string) (t int64, v1 [][]byte, err error) {
	const name = HeaderStripeSignature
	if len(h) > maxHeaderLen {
		return 0, nil, malformed(name, "too long")
	}
	if strings.TrimSpace(h) == "" {
		return 0, nil, malformed(name, "empty")
	}
	items := strings.Split(h, ",")
	if len(items) > maxSignatures+2 {
		return 0, nil, malformed(name, "too many items")
	}
	seenT := false
	for _, item := range items {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || k == "" {
			return 0, nil, malformed(name, "item is not key=value")
		}
		switch k {
		case "t":
			if seenT {
				return 0, nil, malformed(name, "repeated t")
			}
			n, ok := parseDigits(v)
			if !ok {
				return 0, nil, malformed(name, "t is not unix seconds")
			}
			t, seenT = n, true
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != 32 {
				return 0, nil, malformed(name, "v1 is not a hex SHA-256 MAC")
			}
			v1 = append(v1, b)
		}
	}
	if !seenT {
		return 0, nil, malformed(name, "no t")
	}
	return t, v1, nil
}

func verifyStripe(req Request, keys [][]byte, now time.Time, tol time.Duration) (Delivery, error) {
	raw, err := requireHeader(req.Header, HeaderStripeSignature, maxHeaderLen)
	if err != nil {
		return Delivery{}, err
	}
	ts, sigs, err := ParseStripeSignature(raw)
	if err != nil {
		return Delivery{}, err
	}
	if !anyMatch(keys, sigs, stripeContent(ts, req.Body)...) {
		return Delivery{}, ErrBadSignature
	}
	t := time.Unix(ts, 0)
	if err := checkWindow(t, now, tol); err != nil {
		return Delivery{}, err
	}
	return Delivery{ID: sha256Hex(req.Body), Timestamp: t}, nil
}

func stripeContent(ts int64, body []byte) [][]byte {
	return [][]byte{[]byte(strconv.FormatInt(ts, 10)), []byte("."), body}
}

func signStripe(req *Request, key []byte, now time.Time) error {
	ts := now.Unix()
	mac := macOf(key, stripeContent(ts, req.Body)...)
	req.Header.Set(HeaderStripeSignature, "t="+strconv.FormatInt(ts, 10)+",v1="+hex.EncodeToString(mac))
	return nil
}
