package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// hubspotDecoded maps the two hex digits (upper case) of each escape that
// HubSpot's v3 documentation says to decode in the request URI.
var hubspotDecoded = map[string]byte{
	"3A": ':', "2F": '/', "3F": '?', "40": '@', "21": '!', "24": '$',
	"27": '\'', "28": '(', "29": ')', "2A": '*', "2C": ',', "3B": ';',
}

// HubSpotSignatureURI returns uri with the escapes listed in HubSpot's
// signature v3 documentation decoded — %3A %2F %3F %40 %21 %24 %27 %28 %29
// %2A %2C %3B, hex digits in either case — everywhere in the URI (the
// documentation makes no exception for the query string), in one pass, so
// decoded output is never decoded again. Other escapes are kept as they are.
func HubSpotSignatureURI(uri string) string {
	if !strings.Contains(uri, "%") {
		return uri
	}
	var b strings.Builder
	b.Grow(len(uri))
	for i := 0; i < len(uri); i++ {
		if uri[i] == '%' && i+2 < len(uri) {
			if c, ok := hubspotDecoded[strings.ToUpper(uri[i+1:i+3])]; ok {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(uri[i])
	}
	return b.String()
}

func hubspotContent(method, uri string, body []byte, ts string) [][]byte {
	return [][]byte{[]byte(method), []byte(HubSpotSignatureURI(uri)), body, []byte(ts)}
}

func verifyHubSpot(req Request, keys [][]byte, now time.Time, tol time.Duration) (Delivery, error) {
	if req.Method == "" || req.URL == "" {
		return Delivery{}, fmt.Errorf("%w: hubspot signs the method and full URL; set Request.Method and Request.URL", ErrIncompleteRequest)
	}
	sigRaw, err := requireHeader(req.Header, HeaderHubSpotSignatureV3, maxHeaderLen)
	if err != nil {
		return Delivery{}, err
	}
	tsRaw, err := requireHeader(req.Header, HeaderHubSpotTimestamp, maxHeaderLen)
	if err != nil {
		return Delivery{}, err
	}
	ms, ok := parseDigits(tsRaw)
	if !ok {
		return Delivery{}, malformed(HeaderHubSpotTimestamp, "not unix milliseconds")
	}
	sig, err := base64.StdEncoding.DecodeString(sigRaw)
	if err != nil {
		return Delivery{}, malformed(HeaderHubSpotSignatureV3, "not base64")
	}
	if len(sig) != 32 {
		return Delivery{}, malformed(HeaderHubSpotSignatureV3, "not 32 bytes")
	}
	// HubSpot signs the timestamp header verbatim.
	if !anyMatch(keys, [][]byte{sig}, hubspotContent(req.Method, req.URL, req.Body, tsRaw)...) {
		return Delivery{}, ErrBadSignature
	}
	t := time.UnixMilli(ms)
	if err := checkWindow(t, now, tol); err != nil {
		return Delivery{}, err
	}
	return Delivery{ID: sha256Hex([]byte(tsRaw), req.Body), Timestamp: t}, nil
}

func signHubSpot(req *Request, key []byte, now time.Time) error {
	if req.Method == "" || req.URL == "" {
		return errors.New("webhook: Sign: the hubspot scheme needs Request.Method and Request.URL")
	}
	ts := strconv.FormatInt(now.UnixMilli(), 10)
	mac := macOf(key, hubspotContent(req.Method, req.URL, req.Body, ts)...)
	req.Header.Set(HeaderHubSpotSignatureV3, base64.StdEncoding.EncodeToString(mac))
	req.Header.Set(HeaderHubSpotTimestamp, ts)
	return nil
}
