package webhook

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func FuzzParseStripeSignature(f *testing.F) {
	good := "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
	for _, s := range []string{
		"t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
		"t=1700000000,v1=" + good + ",v1=" + strings.Repeat("0", 64),
		"t=1700000000",
		"v1=" + good,
		"t=,v1=",
		"t=1,t=2",
		"t=-1,v1=" + good,
		"t=99999999999999999999,v1=" + good,
		",,,",
		"=",
		"",
		"t=1, v1=" + strings.ToUpper(good),
		strings.Repeat("v0=0,", maxSignatures+2) + "t=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, v1, err := ParseStripeSignature(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("error %v is not ErrMalformedHeader", err)
			}
			if ts != 0 || v1 != nil {
				t.Fatalf("error with results %d %d", ts, len(v1))
			}
			return
		}
		if ts < 0 || len(v1) > maxSignatures+1 {
			t.Fatalf("accepted t=%d with %d signatures", ts, len(v1))
		}
		// Round trip: re-serialize what was parsed and parse it again.
		var b strings.Builder
		fmt.Fprintf(&b, "t=%d", ts)
		for _, sig := range v1 {
			if len(sig) != 32 {
				t.Fatalf("v1 of %d bytes", len(sig))
			}
			b.WriteString(",v1=" + hex.EncodeToString(sig))
		}
		ts2, v12, err := ParseStripeSignature(b.String())
		if err != nil || ts2 != ts || len(v12) != len(v1) {
			t.Fatalf("round trip of %q: %d %d %v", b.String(), ts2, len(v12), err)
		}
		for i := range v1 {
			if !bytes.Equal(v1[i], v12[i]) {
				t.Fatalf("round trip changed signature %d", i)
			}
		}
	})
}

func FuzzParseStandardSignature(f *testing.F) {
	sig := "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	for _, s := range []string{
		"v1," + sig,
		"v1," + sig + " v1a,c2lnbmF0dXJl v1," + sig,
		"v1a,abc",
		"v1,",
		",",
		"v1",
		"",
		"  ",
		"v1,abc=",
		"t=1,v1=zz",
		"v1," + sig + "\tv1," + sig,
		strings.Repeat("v1a,x ", maxSignatures+1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sigs, err := ParseStandardSignature(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("error %v is not ErrMalformedHeader", err)
			}
			if sigs != nil {
				t.Fatal("error with results")
			}
			return
		}
		if len(sigs) > maxSignatures {
			t.Fatalf("%d signatures", len(sigs))
		}
		parts := make([]string, len(sigs))
		for i, b := range sigs {
			if len(b) != 32 {
				t.Fatalf("signature of %d bytes", len(b))
			}
			parts[i] = "v1," + base64.StdEncoding.EncodeToString(b)
		}
		if len(parts) == 0 {
			return
		}
		again, err := ParseStandardSignature(strings.Join(parts, " "))
		if err != nil || len(again) != len(sigs) {
			t.Fatalf("round trip: %d %v", len(again), err)
		}
	})
}

// fuzzConfigs are the verifiers FuzzVerify attacks, one per scheme shape.
// Their secrets never appear in the seed corpus.
var fuzzConfigs = []struct {
	cfg            Config
	sigH, tsH, idH string
}{
	{Config{Scheme: SchemeStandard, Secrets: []string{"whsec_Zm96enktc2VjcmV0LWZvci12ZXJpZnk="}}, HeaderStandardSignature, HeaderStandardTimestamp, HeaderStandardID},
	{Config{Scheme: SchemeShopify, Secrets: []string{"fuzzy-shopify-secret"}}, HeaderShopifyHMAC, HeaderShopifyTriggeredAt, HeaderShopifyWebhookID},
	{Config{Scheme: SchemeStripe, Secrets: []string{"whsec_fuzzy_stripe_secret"}}, HeaderStripeSignature, "", ""},
	{Config{Scheme: SchemeHubSpot, Secrets: []string{"fuzzy-hubspot-secret"}}, HeaderHubSpotSignatureV3, HeaderHubSpotTimestamp, ""},
	{Config{Scheme: SchemeHMAC, Secrets: []string{"fuzzy-hmac-secret"}, Header: "X-Hub-Signature-256", Prefix: "sha256="}, "X-Hub-Signature-256", "", ""},
	{Config{Scheme: SchemeHMAC, Secrets: []string{"fuzzy-hmac-secret"}, Header: "X-Sig", Encoding: "base64", TimestampHeader: "X-Ts"}, "X-Sig", "X-Ts", ""},
	{Config{Scheme: SchemeStatic, Secrets: []string{"fuzzy-static-secret-value"}, Header: "X-Token"}, "X-Token", "", ""},
}

func FuzzVerify(f *testing.F) {
	// Seeds: well-formed deliveries for every scheme, signed with a secret
	// the verifier does not have, plus garbage.
	for i, fc := range fuzzConfigs {
		other := fc.cfg
		switch other.Scheme {
		case SchemeStandard:
			other.Secrets = []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
		default:
			other.Secrets = []string{"attacker-guess"}
		}
		r := Request{Method: "POST", URL: testURL, Body: []byte(testBody)}
		if err := other.Sign(&r, "msg_seed", testNow); err != nil {
			f.Fatal(err)
		}
		get := func(h string) string {
			if h == "" {
				return ""
			}
			return r.Header.Get(h)
		}
		f.Add(uint8(i), get(fc.sigH), get(fc.tsH), get(fc.idH), testURL, []byte(testBody))
		f.Add(uint8(i), "", "", "", "", []byte{})
		f.Add(uint8(i), "garbage", "not-a-time", "\x00", "%%", []byte("x"))
		f.Add(uint8(i), strings.Repeat("v1,A= ", 40), "1700000000", strings.Repeat("i", 64), testURL+"%3A%2f%25", []byte(testBody))
	}
	f.Fuzz(func(t *testing.T, which uint8, sig, ts, id, url string, body []byte) {
		fc := fuzzConfigs[int(which)%len(fuzzConfigs)]
		cfg := fc.cfg
		r := Request{Method: "POST", URL: url, Header: http.Header{}, Body: body}
		r.Header.Set(fc.sigH, sig)
		if fc.tsH != "" {
			r.Header.Set(fc.tsH, ts)
		}
		if fc.idH != "" {
			r.Header.Set(fc.idH, id)
		}
		for _, now := range []time.Time{testNow, timeFrom(ts)} {
			d, err := cfg.Verify(r, now)
			if err == nil {
				// Only the static scheme can be passed by the bare secret.
				if cfg.Scheme == SchemeStatic && sig == cfg.Secrets[0] {
					continue
				}
				t.Fatalf("%s: accepted without the secret: %+v", cfg.Scheme, d)
			}
			if d != (Delivery{}) {
				t.Fatalf("rejected delivery returned %+v", d)
			}
			if !isKnownError(err) {
				t.Fatalf("unexpected error %v", err)
			}
			if strings.Contains(err.Error(), cfg.Secrets[0]) {
				t.Fatalf("error leaks the secret: %v", err)
			}
		}

		// Positive control: the same body, URL and id, properly signed,
		// must verify and yield the right replay key.
		good := Request{Method: "POST", URL: url, Body: body}
		if good.URL == "" {
			good.URL = testURL
		}
		gid := id
		if strings.TrimSpace(gid) == "" || len(gid) > maxIDLen || gid != strings.TrimSpace(gid) {
			gid = "msg_fuzz"
		}
		if err := cfg.Sign(&good, gid, testNow); err != nil {
			t.Fatalf("Sign: %v", err)
		}
		d, err := cfg.Verify(good, testNow)
		if err != nil {
			t.Fatalf("%s: signed request rejected: %v", cfg.Scheme, err)
		}
		if keyed := cfg.Scheme != SchemeStatic && (cfg.Scheme != SchemeHMAC || cfg.TimestampHeader != ""); keyed && d.ID == "" {
			t.Fatal("empty replay key")
		} else if !keyed && d.ID != "" {
			t.Fatalf("replay key %q for a scheme that signs no timestamp", d.ID)
		}
		if (cfg.Scheme == SchemeStandard || cfg.Scheme == SchemeShopify) && d.ID != gid {
			t.Fatalf("ID %q, want %q", d.ID, gid)
		}
	})
}

// timeFrom turns a fuzzed timestamp into a clock reading that puts it inside
// the window, so the window check cannot mask a signature acceptance.
func timeFrom(ts string) time.Time {
	if n, ok := parseDigits(ts); ok {
		if n > 1e12 { // milliseconds (HubSpot)
			return time.UnixMilli(n)
		}
		return time.Unix(n, 0)
	}
	return testNow
}

func isKnownError(err error) bool {
	for _, e := range []error{ErrMissingHeader, ErrMalformedHeader, ErrBadSignature, ErrTimestampTooOld, ErrTimestampInFuture, ErrIncompleteRequest} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
