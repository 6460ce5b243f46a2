package webhook

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// ParseStandardSignature parses a Standard Webhooks webhook-signature header:
// space-separated "<version>,<signature>" entries. It returns the decoded
// "v1" (HMAC-SHA256) signatures; other versions (such as the asymmetric
// "v1a") are skipped, so the result may be empty. An entry without a comma,
// a v1 signature that is not 32 bytes of standard base64, an empty or
// oversized header, or too many entries is an ErrMalformedHeader.
func ParseStandardSignature(h string) ([][]byte, error) {
	const name = HeaderStandardSignature
	if len(h) > maxHeaderLen {
		return nil, malformed(name, "too long")
	}
	entries := strings.Fields(h)
	if len(entries) == 0 {
		return nil, malformed(name, "empty")
	}
	if len(entries) > maxSignatures {
		return nil, malformed(name, "too many signatures")
	}
	var sigs [][]byte
	for _, e := range entries {
		version, sig, ok := strings.Cut(e, ",")
		if !ok || !validVersion(version) {
			return nil, malformed(name, "entry is not version,signature")
		}
		if version != "v1" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			return nil, malformed(name, "v1 signature is not base64")
		}
		if len(b) != 32 {
			return nil, malformed(name, "v1 signature is not 32 bytes")
		}
		sigs = append(sigs, b)
	}
	return sigs, nil
}

func verifyStandard(req Request, keys [][]byte, now time.Time, tol time.Duration) (Delivery, error) {
	id, err := requireHeader(req.Header, HeaderStandardID, maxIDLen)
	if err != nil {
		return Delivery{}, err
	}
	tsRaw, err := requireHeader(req.Header, HeaderStandardTimestamp, maxHeaderLen)
	if err != nil {
		return Delivery{}, err
	}
	sigRaw, err := requireHeader(req.Header, HeaderStandardSignature, maxHeaderLen)
	if err != nil {
		return Delivery{}, err
	}
	ts, ok := parseDigits(tsRaw)
	if !ok {
		return Delivery{}, malformed(HeaderStandardTimestamp, "not unix seconds")
	}
	sigs, err := ParseStandardSignature(sigRaw)
	if err != nil {
		return Delivery{}, err
	}
	// Like the reference libraries, sign the canonical decimal timestamp.
	if !anyMatch(keys, sigs, standardContent(id, ts, req.Body)...) {
		return Delivery{}, ErrBadSignature
	}
	t := time.Unix(ts, 0)
	if err := checkWindow(t, now, tol); err != nil {
		return Delivery{}, err
	}
	return Delivery{ID: id, Timestamp: t}, nil
}

func standardContent(id string, ts int64, body []byte) [][]byte {
	return [][]byte{[]byte(id), []byte("."), []byte(strconv.FormatInt(ts, 10)), []byte("."), body}
}

func signStandard(req *Request, key []byte, id string, now time.Time) error {
	if id == "" {
		return errors.New("webhook: Sign: the standard scheme needs a delivery id")
	}
	ts := now.Unix()
	mac := macOf(key, standardContent(id, ts, req.Body)...)
	req.Header.Set(HeaderStandardID, id)
	req.Header.Set(HeaderStandardTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderStandardSignature, "v1,"+base64.StdEncoding.EncodeToString(mac))
	return nil
}

// validVersion reports whether v looks like a signature version ("v1",
// "v1a"): a short run of ASCII letters and digits.
func validVersion(v string) bool {
	if v == "" || len(v) > 16 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
