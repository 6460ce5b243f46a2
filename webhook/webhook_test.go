package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

var testNow = time.Unix(1700000000, 0)

const (
	testBody       = `{"id":"evt_123","object":"event","data":{"secret_looking":"BODY-MARKER"}}`
	testURL        = "https://shop.example.com/webhooks/hubspot?portal=42"
	oldStdSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	newStdSecret   = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdA=="
	otherStdSecret = "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA=="
)

// schemeFixture describes one scheme for the cross-scheme matrix.
type schemeFixture struct {
	name      string
	cfg       func(secrets ...string) Config
	secrets   [3]string // old, new, wrong
	timed     bool      // signs a timestamp
	required  []string  // headers Verify requires
	sigHeader string    // header carrying the signature
	bodyBound bool      // whether the body is covered
	wantID    func(r Request) string
}

func bodyHash(r Request) string { return sha256Hex(r.Body) }

// noID is the replay key of schemes that sign no timestamp: none.
func noID(Request) string { return "" }

func fixtures() []schemeFixture {
	return []schemeFixture{
		{
			name:      "standard",
			cfg:       func(s ...string) Config { return Config{Scheme: SchemeStandard, Secrets: s} },
			secrets:   [3]string{oldStdSecret, newStdSecret, otherStdSecret},
			timed:     true,
			required:  []string{HeaderStandardID, HeaderStandardTimestamp, HeaderStandardSignature},
			sigHeader: HeaderStandardSignature,
			bodyBound: true,
			wantID:    func(Request) string { return "msg_test" },
		},
		{
			name:      "shopify",
			cfg:       func(s ...string) Config { return Config{Scheme: SchemeShopify, Secrets: s} },
			secrets:   [3]string{"shpss_old", "shpss_new", "shpss_wrong"},
			required:  []string{HeaderShopifyHMAC, HeaderShopifyWebhookID},
			sigHeader: HeaderShopifyHMAC,
			bodyBound: true,
			wantID:    func(Request) string { return "msg_test" },
		},
		{
			name:      "stripe",
			cfg:       func(s ...string) Config { return Config{Scheme: SchemeStripe, Secrets: s} },
			secrets:   [3]string{"whsec_old", "whsec_new", "whsec_wrong"},
			timed:     true,
			required:  []string{HeaderStripeSignature},
			sigHeader: HeaderStripeSignature,
			bodyBound: true,
			wantID:    bodyHash,
		},
		{
			name:      "hubspot",
			cfg:       func(s ...string) Config { return Config{Scheme: SchemeHubSpot, Secrets: s} },
			secrets:   [3]string{"hs-old", "hs-new", "hs-wrong"},
			timed:     true,
			required:  []string{HeaderHubSpotSignatureV3, HeaderHubSpotTimestamp},
			sigHeader: HeaderHubSpotSignatureV3,
			bodyBound: true,
			wantID: func(r Request) string {
				return sha256Hex([]byte(r.Header.Get(HeaderHubSpotTimestamp)), r.Body)
			},
		},
		{
			name: "hmac-hex-prefix",
			cfg: func(s ...string) Config {
				return Config{Scheme: SchemeHMAC, Secrets: s, Header: "X-Hub-Signature-256", Prefix: "sha256="}
			},
			secrets:   [3]string{"gh-old", "gh-new", "gh-wrong"},
			required:  []string{"X-Hub-Signature-256"},
			sigHeader: "X-Hub-Signature-256",
			bodyBound: true,
			wantID:    noID,
		},
		{
			name: "hmac-base64-timestamp",
			cfg: func(s ...string) Config {
				return Config{Scheme: SchemeHMAC, Secrets: s, Header: "X-Signature", Encoding: "base64", TimestampHeader: "X-Timestamp"}
			},
			secrets:   [3]string{"gen-old", "gen-new", "gen-wrong"},
			timed:     true,
			required:  []string{"X-Signature", "X-Timestamp"},
			sigHeader: "X-Signature",
			bodyBound: true,
			wantID: func(r Request) string {
				return sha256Hex([]byte(r.Header.Get("X-Timestamp")+"."), r.Body)
			},
		},
		{
			name: "static",
			cfg: func(s ...string) Config {
				return Config{Scheme: SchemeStatic, Secrets: s, Header: "X-Craft-Webhook-Secret"}
			},
			secrets:   [3]string{"static-old-0123456789", "static-new-0123456789", "static-wrong-012345678"},
			required:  []string{"X-Craft-Webhook-Secret"},
			sigHeader: "X-Craft-Webhook-Secret",
			wantID:    noID,
		},
	}
}

func newReq() Request {
	return Request{Method: http.MethodPost, URL: testURL, Header: http.Header{}, Body: []byte(testBody)}
}

func signed(t *testing.T, cfg Config, at time.Time) Request {
	t.Helper()
	r := newReq()
	if err := cfg.Sign(&r, "msg_test", at); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return r
}

// checkErrorHygiene fails if err's message leaks a secret, the body or a
// signature value.
func checkErrorHygiene(t *testing.T, err error, r Request, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			t.Errorf("error %q leaks a secret", msg)
		}
	}
	if strings.Contains(msg, "BODY-MARKER") {
		t.Errorf("error %q leaks the body", msg)
	}
	for name, vals := range r.Header {
		for _, v := range vals {
			if len(v) >= 8 && strings.Contains(msg, v) {
				t.Errorf("error %q leaks the value of %s", msg, name)
			}
		}
	}
}

func TestVerifyMatrix(t *testing.T) {
	for _, fx := range fixtures() {
		old, nw, wrong := fx.secrets[0], fx.secrets[1], fx.secrets[2]
		verifier := fx.cfg(nw, old) // rotation: new first, old still accepted
		type tc struct {
			name    string
			req     func(t *testing.T) Request
			now     time.Time
			wantErr error  // nil = accept
			header  string // for header errors: which header
		}
		cases := []tc{
			{name: "valid new secret", req: func(t *testing.T) Request { return signed(t, fx.cfg(nw), testNow) }},
			{name: "rotated: old secret still valid", req: func(t *testing.T) Request { return signed(t, fx.cfg(old), testNow) }},
			{name: "wrong secret", req: func(t *testing.T) Request { return signed(t, fx.cfg(wrong), testNow) }, wantErr: ErrBadSignature},
			{name: "tampered body", req: func(t *testing.T) Request {
				r := signed(t, fx.cfg(nw), testNow)
				r.Body = bytes.Replace(r.Body, []byte("evt_123"), []byte("evt_124"), 1)
				return r
			}, wantErr: func() error {
				if fx.bodyBound {
					return ErrBadSignature
				}
				return nil // static secrets do not cover the body
			}()},
			{name: "empty body signed", req: func(t *testing.T) Request {
				r := newReq()
				r.Body = nil
				c := fx.cfg(nw)
				if err := c.Sign(&r, "msg_test", testNow); err != nil {
					t.Fatal(err)
				}
				return r
			}},
		}
		if fx.timed {
			cases = append(cases,
				tc{name: "stale", req: func(t *testing.T) Request { return signed(t, fx.cfg(nw), testNow.Add(-6*time.Minute)) }, wantErr: ErrTimestampTooOld},
				tc{name: "future", req: func(t *testing.T) Request { return signed(t, fx.cfg(nw), testNow.Add(6*time.Minute)) }, wantErr: ErrTimestampInFuture},
				tc{name: "edge old", req: func(t *testing.T) Request { return signed(t, fx.cfg(nw), testNow.Add(-5*time.Minute)) }},
				tc{name: "edge future", req: func(t *testing.T) Request { return signed(t, fx.cfg(nw), testNow.Add(5*time.Minute)) }},
				tc{name: "stale and wrong secret is a bad signature", req: func(t *testing.T) Request { return signed(t, fx.cfg(wrong), testNow.Add(-time.Hour)) }, wantErr: ErrBadSignature},
				tc{name: "much later clock", req: func(t *testing.T) Request { return signed(t, fx.cfg(nw), testNow) }, now: testNow.Add(24 * time.Hour), wantErr: ErrTimestampTooOld},
			)
		} else {
			cases = append(cases,
				tc{name: "no timestamp: old delivery still accepted", req: func(t *testing.T) Request { return signed(t, fx.cfg(nw), testNow.Add(-time.Hour)) }},
			)
		}
		for _, h := range fx.required {
			cases = append(cases, tc{name: "missing " + h, req: func(t *testing.T) Request {
				r := signed(t, fx.cfg(nw), testNow)
				r.Header.Del(h)
				return r
			}, wantErr: ErrMissingHeader, header: h})
		}
		for name, v := range map[string]string{
			"empty":      "",
			"blank":      "   ",
			"huge":       strings.Repeat("A", maxHeaderLen+1),
			"huge+valid": "",
		} {
			if fx.name == "static" && name != "empty" && name != "blank" && name != "huge" {
				continue
			}
			cases = append(cases, tc{name: "malformed " + name + " " + fx.sigHeader, req: func(t *testing.T) Request {
				r := signed(t, fx.cfg(nw), testNow)
				if name == "huge+valid" {
					v = r.Header.Get(fx.sigHeader) + strings.Repeat(" ", maxHeaderLen)
				}
				r.Header.Set(fx.sigHeader, v)
				return r
			}, wantErr: ErrMalformedHeader, header: fx.sigHeader})
		}
		if fx.name != "static" {
			for _, g := range []string{"garbage!!", "v1,=,t=", "t=1,v1=zz", "sha256=" + strings.Repeat("0", 63), "\x00\xff"} {
				cases = append(cases, tc{name: "garbage " + g, req: func(t *testing.T) Request {
					r := signed(t, fx.cfg(nw), testNow)
					r.Header.Set(fx.sigHeader, g)
					return r
				}, wantErr: ErrMalformedHeader, header: fx.sigHeader})
			}
		} else {
			cases = append(cases, tc{name: "garbage value", req: func(t *testing.T) Request {
				r := signed(t, fx.cfg(nw), testNow)
				r.Header.Set(fx.sigHeader, "garbage")
				return r
			}, wantErr: ErrBadSignature})
		}

		for _, c := range cases {
			t.Run(fx.name+"/"+c.name, func(t *testing.T) {
				r := c.req(t)
				now := c.now
				if now.IsZero() {
					now = testNow
				}
				d, err := verifier.Verify(r, now)
				checkErrorHygiene(t, err, r, old, nw, wrong)
				if c.wantErr == nil {
					if err != nil {
						t.Fatalf("Verify: unexpected error %v", err)
					}
					if want := fx.wantID(r); d.ID != want {
						t.Errorf("ID = %q, want %q", d.ID, want)
					}
					if fx.timed == d.Timestamp.IsZero() {
						t.Errorf("Timestamp = %v, timed scheme = %v", d.Timestamp, fx.timed)
					}
					return
				}
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("Verify error = %v, want %v", err, c.wantErr)
				}
				if d != (Delivery{}) {
					t.Errorf("rejected delivery returned %+v", d)
				}
				if c.header != "" {
					var he *HeaderError
					if !errors.As(err, &he) || http.CanonicalHeaderKey(he.Header) != http.CanonicalHeaderKey(c.header) {
						t.Errorf("error %v does not name header %s", err, c.header)
					}
				}
			})
		}
	}
}

func TestSignThenVerifyCustomTolerance(t *testing.T) {
	for _, fx := range fixtures() {
		if !fx.timed {
			continue
		}
		cfg := fx.cfg(fx.secrets[0])
		cfg.Tolerance = 30 * time.Second
		r := signed(t, cfg, testNow.Add(-31*time.Second))
		if _, err := cfg.Verify(r, testNow); !errors.Is(err, ErrTimestampTooOld) {
			t.Errorf("%s: 31s old with 30s tolerance: %v", fx.name, err)
		}
		r = signed(t, cfg, testNow.Add(29*time.Second))
		if _, err := cfg.Verify(r, testNow); err != nil {
			t.Errorf("%s: 29s ahead with 30s tolerance: %v", fx.name, err)
		}
	}
}

// Standard Webhooks' published example (spec and reference libraries).
func TestStandardPublishedVector(t *testing.T) {
	cfg := Config{Scheme: SchemeStandard, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
	r := Request{
		Header: http.Header{
			"Webhook-Id":        {"msg_p5jXN8AQM9LWM0D4loKWxJek"},
			"Webhook-Timestamp": {"1614265330"},
			"Webhook-Signature": {"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
		},
		Body: []byte(`{"test": 2432232314}`),
	}
	now := time.Unix(1614265330, 0)
	d, err := cfg.Verify(r, now)
	if err != nil {
		t.Fatalf("published vector rejected: %v", err)
	}
	if d.ID != "msg_p5jXN8AQM9LWM0D4loKWxJek" || !d.Timestamp.Equal(now) {
		t.Errorf("delivery = %+v", d)
	}
	// Sign reproduces the published header.
	s := Request{Body: r.Body}
	if err := cfg.Sign(&s, "msg_p5jXN8AQM9LWM0D4loKWxJek", now); err != nil {
		t.Fatal(err)
	}
	if got := s.Header.Get(HeaderStandardSignature); got != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Errorf("Sign = %q", got)
	}
	// The same key given without the prefix, and unpadded, also verifies.
	for _, sec := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"} {
		c := Config{Scheme: SchemeStandard, Secrets: []string{sec}}
		if _, err := c.Verify(r, now); err != nil {
			t.Errorf("secret form %q: %v", sec[:6], err)
		}
	}
	// Multiple signatures, one valid, others of other versions or wrong.
	r.Header.Set(HeaderStandardSignature, "v1a,c2lnbmF0dXJl v1,"+strings.Repeat("A", 43)+"= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v2,xyz")
	if _, err := cfg.Verify(r, now); err != nil {
		t.Errorf("multiple signatures, one valid: %v", err)
	}
	// Tampered id / timestamp.
	for h, v := range map[string]string{"Webhook-Id": "msg_other", "Webhook-Timestamp": "1614265331"} {
		r2 := r
		r2.Header = r.Header.Clone()
		r2.Header.Set(h, v)
		if _, err := cfg.Verify(r2, now); !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampered %s: %v", h, err)
		}
	}
	// Only non-v1 signatures: nothing to check against.
	r.Header.Set(HeaderStandardSignature, "v1a,c2lnbmF0dXJl")
	if _, err := cfg.Verify(r, now); !errors.Is(err, ErrBadSignature) {
		t.Errorf("only v1a: %v", err)
	}
	// Non-canonical header keys, as a hand-built map might have.
	r.Header = http.Header{
		"webhook-id":        {"msg_p5jXN8AQM9LWM0D4loKWxJek"},
		"webhook-timestamp": {"1614265330"},
		"webhook-signature": {"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
	}
	if _, err := cfg.Verify(r, now); err != nil {
		t.Errorf("lower-case header keys: %v", err)
	}
}

func TestStandardTimestampFormats(t *testing.T) {
	cfg := Config{Scheme: SchemeStandard, Secrets: []string{oldStdSecret}}
	for _, ts := range []string{"+1700000000", "-1", "1700000000.5", "1e9", " 1700000000", "0x10", "99999999999999999999"} {
		r := signed(t, cfg, testNow)
		r.Header.Set(HeaderStandardTimestamp, ts)
		if _, err := cfg.Verify(r, testNow); !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("timestamp %q: %v, want malformed", ts, err)
		}
	}
	// Leading zeros parse; the canonical number is what is signed, as in
	// the reference libraries.
	r := signed(t, cfg, testNow)
	r.Header.Set(HeaderStandardTimestamp, "01700000000")
	if _, err := cfg.Verify(r, testNow); err != nil {
		t.Errorf("leading zero: %v", err)
	}
}

func TestStandardSecrets(t *testing.T) {
	for _, c := range []struct {
		secret string
		ok     bool
	}{
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"whsec_c2VjcmV0", true},   // padded-free length
		{"whsec_c2VjcmV0MQ", true}, // unpadded, as the Python library accepts
		{"whsec_c2VjcmV0MQ==", true},
		{"whsec_not base64!", false},
		{"plain-text-secret!", false},
		{"whsec_", false},
		{"whsec_====", false},
	} {
		cfg := Config{Scheme: SchemeStandard, Secrets: []string{c.secret}}
		err := cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("secret %q: Validate = %v, want ok=%v", c.secret, err, c.ok)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "Secrets[0]") {
				t.Errorf("error %q should wrap ErrInvalidConfig and name Secrets[0]", err)
			}
			if len(c.secret) > len("whsec_") && strings.Contains(err.Error(), strings.TrimPrefix(c.secret, "whsec_")) {
				t.Errorf("error %q leaks the secret", err)
			}
		}
	}
}

// Known-answer tests; expected values computed independently with Python's
// hmac module (and, for GitHub, taken from GitHub's documentation).
func TestKnownAnswers(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		req    Request
		now    time.Time
		wantID string
	}{
		{
			// GitHub's published example ("Validating webhook deliveries").
			name: "github",
			cfg:  Config{Scheme: SchemeHMAC, Secrets: []string{"It's a Secret to Everybody"}, Header: "X-Hub-Signature-256", Prefix: "sha256="},
			req: Request{Header: http.Header{"X-Hub-Signature-256": {"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}},
				Body: []byte("Hello, World!")},
			now:    testNow,
			wantID: "-", // no timestamp: no replay key
		},
		{
			name: "shopify",
			cfg:  Config{Scheme: SchemeShopify, Secrets: []string{"hush"}},
			req: Request{Header: http.Header{
				"X-Shopify-Hmac-Sha256": {"D0UMXmhjwBRi4y66TmhJrDlhQABD7zI2fm3p6/QLMo8="},
				"X-Shopify-Webhook-Id":  {"b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"},
			}, Body: []byte(`{"id":820982911946154508,"email":"jon@example.com"}`)},
			now:    testNow,
			wantID: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
		},
		{
			name: "stripe",
			cfg:  Config{Scheme: SchemeStripe, Secrets: []string{"whsec_test_secret"}},
			req: Request{Header: http.Header{
				"Stripe-Signature": {"t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"},
			}, Body: []byte(`{"id":"evt_test_webhook","object":"event"}`)},
			now: testNow.Add(time.Minute),
		},
		{
			name: "hubspot",
			cfg:  Config{Scheme: SchemeHubSpot, Secrets: []string{"yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"}},
			req: Request{Method: "POST", URL: "https://www.example.com/webhook_uri?a=b%3Ac%20d%253A&e=%28f%29",
				Header: http.Header{
					"X-Hubspot-Signature-V3":      {"jBBFSjae83JDJSF216A5cUNSBcQgBrBT//DRsxFMEcs="},
					"X-Hubspot-Request-Timestamp": {"1700000000000"},
				}, Body: []byte(`[{"eventId":1}]`)},
			now:    testNow.Add(-time.Minute),
			wantID: "e1abfb8d6e3377a0aabd9450947f9aaa9e857e722de93b9ed1ce24669361822c",
		},
		{
			name: "hmac base64 with timestamp",
			cfg:  Config{Scheme: SchemeHMAC, Secrets: []string{"s3cr3t"}, Header: "X-Signature", Encoding: "base64", TimestampHeader: "X-Timestamp"},
			req: Request{Header: http.Header{
				"X-Signature": {"g0E7/rjgK3EzKhf1RI2WGIdvZPr66VaWCcHW3onYCCY="},
				"X-Timestamp": {"1700000000"},
			}, Body: []byte("hello")},
			now:    testNow,
			wantID: "fe6b3e5b37f45249d985c83d2aa59ec8fe1cd64e7ed77b0b0744629f73554435", // SHA-256 of "1700000000.hello"
		},
		{
			name: "hmac base64url unpadded",
			cfg:  Config{Scheme: SchemeHMAC, Secrets: []string{"s3cr3t"}, Header: "X-Signature", Encoding: "base64", TimestampHeader: "X-Timestamp"},
			req: Request{Header: http.Header{
				"X-Signature": {"g0E7_rjgK3EzKhf1RI2WGIdvZPr66VaWCcHW3onYCCY"},
				"X-Timestamp": {"1700000000"},
			}, Body: []byte("hello")},
			now:    testNow,
			wantID: "fe6b3e5b37f45249d985c83d2aa59ec8fe1cd64e7ed77b0b0744629f73554435", // SHA-256 of "1700000000.hello"
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := c.cfg.Verify(c.req, c.now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := c.wantID
			switch want {
			case "":
				sum := sha256.Sum256(c.req.Body)
				want = hex.EncodeToString(sum[:])
			case "-":
				want = ""
			}
			if d.ID != want {
				t.Errorf("ID = %q, want %q", d.ID, want)
			}
			// Sign must reproduce the same signature header at the same time.
			if c.cfg.Scheme == SchemeShopify || c.cfg.Scheme == SchemeHMAC || c.cfg.Scheme == SchemeHubSpot {
				ts := c.now
				if !d.Timestamp.IsZero() {
					ts = d.Timestamp
				}
				s := Request{Method: c.req.Method, URL: c.req.URL, Body: c.req.Body}
				if err := c.cfg.Sign(&s, d.ID, ts); err != nil {
					t.Fatal(err)
				}
				for k, v := range c.req.Header {
					if strings.Contains(v[0], "_") { // the url-safe variant
						continue
					}
					if got := s.Header.Get(k); got != v[0] {
						t.Errorf("Sign %s = %q, want %q", k, got, v[0])
					}
				}
			}
		})
	}
}

func TestStripeMultipleSignatures(t *testing.T) {
	cfg := Config{Scheme: SchemeStripe, Secrets: []string{"whsec_test_secret"}}
	body := []byte(`{"id":"evt_test_webhook","object":"event"}`)
	good := "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
	bad := strings.Repeat("ab", 32)
	for _, c := range []struct {
		header string
		want   error
	}{
		{"t=1700000000,v1=" + bad + ",v1=" + good, nil},
		{"t=1700000000, v1=" + good + ", v1=" + bad, nil},
		{"v1=" + good + ",t=1700000000", nil},
		{"t=1700000000,v1=" + good + ",v0=" + bad + ",foo=bar", nil},
		{"t=1700000000,v0=" + good, ErrBadSignature}, // v0 ignored
		{"t=1700000000,v1=" + bad, ErrBadSignature},
		{"t=1700000001,v1=" + good, ErrBadSignature},
		{"t=1700000000", ErrBadSignature},
		{"v1=" + good, ErrMalformedHeader},
		{"t=1700000000,t=1700000000,v1=" + good, ErrMalformedHeader},
		{"t=1700000000,v1=" + good[:62], ErrMalformedHeader},
		{"t=1700000000,v1=" + good + ",", ErrMalformedHeader},
		{"t=abc,v1=" + good, ErrMalformedHeader},
	} {
		r := Request{Header: http.Header{"Stripe-Signature": {c.header}}, Body: body}
		_, err := cfg.Verify(r, testNow)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%q: %v, want %v", c.header, err, c.want)
		}
	}
}

// The example header in Stripe's "verify manually" documentation.
func TestParseStripeDocumentedHeader(t *testing.T) {
	ts, v1, err := ParseStripeSignature("t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39")
	if err != nil || ts != 1492774577 || len(v1) != 1 || hex.EncodeToString(v1[0]) != "5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd" {
		t.Fatalf("got %d %x %v", ts, v1, err)
	}
}

func TestParseStandardSignature(t *testing.T) {
	sig := "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	for _, c := range []struct {
		in   string
		n    int
		fail bool
	}{
		{"v1," + sig, 1, false},
		{"v1," + sig + " v1," + sig, 2, false},
		{"  v1," + sig + "   v1a,abc  ", 1, false},
		{"v1a,abc", 0, false},
		{"", 0, true},
		{"   ", 0, true},
		{"v1", 0, true},
		{",abc", 0, true},
		{"t=1,v1=zz", 0, true},
		{"v1,abc", 0, true},      // not base64 of 32 bytes
		{"v1,c2hvcnQ=", 0, true}, // base64 but too short
		{"v1," + sig + "x", 0, true},
		{strings.Repeat("v1a,x ", maxSignatures+1), 0, true},
		{strings.Repeat("x", maxHeaderLen+1), 0, true},
	} {
		got, err := ParseStandardSignature(c.in)
		if (err != nil) != c.fail || len(got) != c.n {
			t.Errorf("%.40q: %d sigs, err %v", c.in, len(got), err)
		}
		if err != nil && !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("%.40q: error %v is not ErrMalformedHeader", c.in, err)
		}
	}
}

func TestHubSpotSignatureURI(t *testing.T) {
	for in, want := range map[string]string{
		"https://example.com/hook": "https://example.com/hook",
		"https://example.com/a%2Fb?x=%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B": "https://example.com/a/b?x=:/?@!$'()*,;",
		"https://example.com/?q=%3a%2f":                                    "https://example.com/?q=:/",
		"https://example.com/?q=%20%26%3D%2B%23%5B":                        "https://example.com/?q=%20%26%3D%2B%23%5B",
		"https://example.com/?q=%253A":                                     "https://example.com/?q=%253A",
		"https://example.com/?q=%3":                                        "https://example.com/?q=%3",
		"https://example.com/?q=%":                                         "https://example.com/?q=%",
		"https://example.com/?q=%%3A":                                      "https://example.com/?q=%:",
	} {
		if got := HubSpotSignatureURI(in); got != want {
			t.Errorf("HubSpotSignatureURI(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHubSpotRequestParts(t *testing.T) {
	cfg := Config{Scheme: SchemeHubSpot, Secrets: []string{"hs"}}
	r := signed(t, cfg, testNow)
	// Method and URL are signed.
	for name, mut := range map[string]func(*Request){
		"method": func(r *Request) { r.Method = "PUT" },
		"url":    func(r *Request) { r.URL = "https://shop.example.com/webhooks/hubspot?portal=43" },
		"ts":     func(r *Request) { r.Header.Set(HeaderHubSpotTimestamp, "1700000000001") },
	} {
		r2 := r
		r2.Header = r.Header.Clone()
		mut(&r2)
		if _, err := cfg.Verify(r2, testNow); !errors.Is(err, ErrBadSignature) {
			t.Errorf("changed %s: %v", name, err)
		}
	}
	// An encoded form of the same URL verifies (HubSpot decodes before signing).
	r2 := r
	r2.URL = "https%3A%2F%2Fshop.example.com%2Fwebhooks%2Fhubspot%3Fportal=42"
	if _, err := cfg.Verify(r2, testNow); err != nil {
		t.Errorf("encoded URL: %v", err)
	}
	for _, mut := range []func(*Request){func(r *Request) { r.URL = "" }, func(r *Request) { r.Method = "" }} {
		r2 := r
		mut(&r2)
		if _, err := cfg.Verify(r2, testNow); !errors.Is(err, ErrIncompleteRequest) {
			t.Errorf("incomplete request: %v", err)
		}
		if err := cfg.Sign(&r2, "", testNow); err == nil {
			t.Error("Sign accepted an incomplete request")
		}
	}
	// Seconds instead of milliseconds: signed fine, but far in the past.
	r3 := newReq()
	r3.Header.Set(HeaderHubSpotTimestamp, "1700000000")
	r3.Header.Set(HeaderHubSpotSignatureV3, strings.Repeat("A", 43)+"=")
	if _, err := cfg.Verify(r3, testNow); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged: %v", err)
	}
}

func TestHMACSchemeDetails(t *testing.T) {
	cfg := Config{Scheme: SchemeHMAC, Secrets: []string{"It's a Secret to Everybody"}, Header: "X-Hub-Signature-256", Prefix: "sha256="}
	good := "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	body := []byte("Hello, World!")
	for _, c := range []struct {
		vals []string
		want error
	}{
		{[]string{"sha256=" + good}, nil},
		{[]string{"sha256=" + strings.ToUpper(good)}, nil},
		{[]string{"sha256=" + strings.Repeat("0", 64), "sha256=" + good}, nil}, // multiple values, one valid
		{[]string{good}, ErrMalformedHeader},                                   // prefix missing
		{[]string{"sha1=" + good}, ErrMalformedHeader},
		{[]string{"sha256=" + good[:40]}, ErrMalformedHeader},
		{[]string{"sha256=" + strings.Repeat("0", 64)}, ErrBadSignature},
		{[]string{"sha256=" + good, ""}, ErrMalformedHeader},
	} {
		r := Request{Header: http.Header{"X-Hub-Signature-256": c.vals}, Body: body}
		_, err := cfg.Verify(r, testNow)
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%v: %v, want %v", c.vals, err, c.want)
		}
	}
	// With a timestamp header the timestamp is signed, and required.
	tcfg := Config{Scheme: SchemeHMAC, Secrets: []string{"k"}, Header: "X-Sig", TimestampHeader: "X-Ts"}
	r := signed(t, tcfg, testNow)
	r.Header.Set("X-Ts", "1700000001")
	if _, err := tcfg.Verify(r, testNow); !errors.Is(err, ErrBadSignature) {
		t.Errorf("changed timestamp: %v", err)
	}
	r.Header.Set("X-Ts", "soon")
	if _, err := tcfg.Verify(r, testNow); !errors.Is(err, ErrMalformedHeader) {
		t.Errorf("bad timestamp: %v", err)
	}
}

func TestShopifyIgnoresUnsignedTriggeredAt(t *testing.T) {
	cfg := Config{Scheme: SchemeShopify, Secrets: []string{"hush"}}
	r := signed(t, cfg, testNow)
	if r.Header.Get(HeaderShopifyTriggeredAt) == "" {
		t.Fatal("Sign did not set X-Shopify-Triggered-At")
	}
	r.Header.Set(HeaderShopifyTriggeredAt, "1999-01-01T00:00:00Z")
	d, err := cfg.Verify(r, testNow)
	if err != nil || !d.Timestamp.IsZero() {
		t.Fatalf("got %+v, %v", d, err)
	}
}

func TestStaticScheme(t *testing.T) {
	cfg := Config{Scheme: SchemeStatic, Secrets: []string{"new-secret", "old-secret"}, Header: "Authorization"}
	for v, want := range map[string]error{
		"new-secret":        nil,
		"old-secret":        nil,
		"old-secret-x":      ErrBadSignature,
		"old-secre":         ErrBadSignature,
		"Bearer new-secret": ErrBadSignature,
	} {
		r := Request{Header: http.Header{"Authorization": {v}}, Body: []byte("x")}
		_, err := cfg.Verify(r, testNow)
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("%q: %v, want %v", v, err, want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name  string
		cfg   Config
		field string // "" = valid
	}{
		{"ok standard", Config{Scheme: SchemeStandard, Secrets: []string{oldStdSecret}}, ""},
		{"ok hmac default encoding", Config{Scheme: SchemeHMAC, Secrets: []string{"s"}, Header: "X-Sig"}, ""},
		{"ok static", Config{Scheme: SchemeStatic, Secrets: []string{"s"}, Header: "X-Token"}, ""},
		{"no scheme", Config{Secrets: []string{"s"}}, "Scheme"},
		{"unknown scheme", Config{Scheme: "github", Secrets: []string{"s"}}, "Scheme"},
		{"no secrets", Config{Scheme: SchemeStripe}, "Secrets"},
		{"empty secret", Config{Scheme: SchemeStripe, Secrets: []string{"a", ""}}, "Secrets[1]"},
		{"bad whsec", Config{Scheme: SchemeStandard, Secrets: []string{oldStdSecret, "whsec_!!"}}, "Secrets[1]"},
		{"negative tolerance", Config{Scheme: SchemeStripe, Secrets: []string{"s"}, Tolerance: -1}, "Tolerance"},
		{"hmac without header", Config{Scheme: SchemeHMAC, Secrets: []string{"s"}}, "Header"},
		{"hmac bad header", Config{Scheme: SchemeHMAC, Secrets: []string{"s"}, Header: "X Sig"}, "Header"},
		{"hmac bad encoding", Config{Scheme: SchemeHMAC, Secrets: []string{"s"}, Header: "X-Sig", Encoding: "base32"}, "Encoding"},
		{"hmac same ts header", Config{Scheme: SchemeHMAC, Secrets: []string{"s"}, Header: "X-Sig", TimestampHeader: "x-sig"}, "TimestampHeader"},
		{"static without header", Config{Scheme: SchemeStatic, Secrets: []string{"s"}}, "Header"},
		{"static with prefix", Config{Scheme: SchemeStatic, Secrets: []string{"s"}, Header: "X-T", Prefix: "p"}, "Prefix"},
		{"static secret with newline", Config{Scheme: SchemeStatic, Secrets: []string{"se\ncret"}, Header: "X-T"}, "Secrets[0]"},
		{"static secret too long", Config{Scheme: SchemeStatic, Secrets: []string{strings.Repeat("s", maxHeaderLen+1)}, Header: "X-T"}, "Secrets[0]"},
		{"stripe with header", Config{Scheme: SchemeStripe, Secrets: []string{"s"}, Header: "X-Sig"}, "Header"},
		{"shopify with encoding", Config{Scheme: SchemeShopify, Secrets: []string{"s"}, Encoding: "hex"}, "Encoding"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted")
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.field+":") {
				t.Errorf("error %q should wrap ErrInvalidConfig and name %s", err, c.field)
			}
			for _, s := range c.cfg.Secrets {
				if len(s) > 2 && strings.Contains(err.Error(), s) {
					t.Errorf("error %q leaks a secret", err)
				}
			}
			// Verify and Sign refuse an invalid config the same way.
			if _, verr := c.cfg.Verify(newReq(), testNow); !errors.Is(verr, ErrInvalidConfig) {
				t.Errorf("Verify with invalid config: %v", verr)
			}
			r := newReq()
			if serr := c.cfg.Sign(&r, "id", testNow); !errors.Is(serr, ErrInvalidConfig) {
				t.Errorf("Sign with invalid config: %v", serr)
			}
		})
	}
	var nilCfg *Config
	if err := nilCfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil config: %v", err)
	}
}

func TestSignNeedsID(t *testing.T) {
	for _, s := range []Scheme{SchemeStandard, SchemeShopify} {
		cfg := Config{Scheme: s, Secrets: []string{oldStdSecret}}
		r := newReq()
		if err := cfg.Sign(&r, "", testNow); err == nil {
			t.Errorf("%s: Sign without id accepted", s)
		}
	}
}

func TestOversizedID(t *testing.T) {
	for _, s := range []Scheme{SchemeStandard, SchemeShopify} {
		cfg := Config{Scheme: s, Secrets: []string{oldStdSecret}}
		r := newReq()
		if err := cfg.Sign(&r, strings.Repeat("i", maxIDLen+1), testNow); err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.Verify(r, testNow); !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("%s: oversized id: %v", s, err)
		}
	}
}
