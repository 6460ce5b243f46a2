package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// decodeGenericMAC decodes one "hmac" signature value after its prefix.
// base64 is accepted in the standard or URL alphabet, padded or not: the
// decoded bytes are what gets compared, so leniency here costs nothing.
func (c *Config) decodeGenericMAC(v string) ([]byte, bool) {
	if c.Encoding == "base64" {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if b, err := enc.DecodeString(v); err == nil {
				return b, len(b) == sha256.Size
			}
		}
		return nil, false
	}
	b, err := hex.DecodeString(v)
	return b, err == nil && len(b) == sha256.Size
}

func (c *Config) verifyHMAC(req Request, keys [][]byte, now time.Time, tol time.Duration) (Delivery, error) {
	vals := headerValues(req.Header, c.Header)
	if len(vals) == 0 {
		return Delivery{}, missing(c.Header)
	}
	if len(vals) > maxSignatures {
		return Delivery{}, malformed(c.Header, "too many values")
	}
	sigs := make([][]byte, 0, len(vals))
	for _, v := range vals {
		if len(v) > maxHeaderLen {
			return Delivery{}, malformed(c.Header, "too long")
		}
		v = strings.TrimSpace(v)
		if v == "" {
			return Delivery{}, malformed(c.Header, "empty")
		}
		rest, ok := strings.CutPrefix(v, c.Prefix)
		if !ok {
			return Delivery{}, malformed(c.Header, "missing the configured prefix")
		}
		b, ok := c.decodeGenericMAC(rest)
		if !ok {
			return Delivery{}, malformed(c.Header, "not a "+c.encodingName()+" SHA-256 MAC")
		}
		sigs = append(sigs, b)
	}
	if c.TimestampHeader == "" {
		if !anyMatch(keys, sigs, req.Body) {
			return Delivery{}, ErrBadSignature
		}
		// No timestamp: a repeat of the same body is indistinguishable
		// from a replay, and a legitimate one (the same purge or event
		// sent again later) must not be dropped, so no replay key.
		return Delivery{}, nil
	}
	tsRaw, err := requireHeader(req.Header, c.TimestampHeader, maxHeaderLen)
	if err != nil {
		return Delivery{}, err
	}
	ts, ok := parseDigits(tsRaw)
	if !ok {
		return Delivery{}, malformed(c.TimestampHeader, "not unix seconds")
	}
	if !anyMatch(keys, sigs, []byte(tsRaw), []byte("."), req.Body) {
		return Delivery{}, ErrBadSignature
	}
	t := time.Unix(ts, 0)
	if err := checkWindow(t, now, tol); err != nil {
		return Delivery{}, err
	}
	// The signed timestamp is part of the key: a sender's later delivery
	// of the same body is a new delivery, not a replay.
	return Delivery{ID: sha256Hex([]byte(tsRaw), []byte("."), req.Body), Timestamp: t}, nil
}

func (c *Config) encodingName() string {
	if c.Encoding == "" {
		return "hex"
	}
	return c.Encoding
}

func (c *Config) signHMAC(req *Request, key []byte, now time.Time) error {
	var mac []byte
	if c.TimestampHeader == "" {
		mac = macOf(key, req.Body)
	} else {
		ts := strconv.FormatInt(now.Unix(), 10)
		req.Header.Set(c.TimestampHeader, ts)
		mac = macOf(key, []byte(ts), []byte("."), req.Body)
	}
	enc := hex.EncodeToString(mac)
	if c.Encoding == "base64" {
		enc = base64.StdEncoding.EncodeToString(mac)
	}
	req.Header.Set(c.Header, c.Prefix+enc)
	return nil
}

func (c *Config) verifyStatic(req Request, keys [][]byte) (Delivery, error) {
	v, err := requireHeader(req.Header, c.Header, maxHeaderLen)
	if err != nil {
		return Delivery{}, err
	}
	// Hash both sides so the comparison is constant-time in the length too.
	got := sha256.Sum256([]byte(v))
	for _, k := range keys {
		want := sha256.Sum256(k)
		if hmac.Equal(got[:], want[:]) {
			// No timestamp and nothing signed: no replay key (see
			// verifyHMAC).
			return Delivery{}, nil
		}
	}
	return Delivery{}, ErrBadSignature
}
