package sealed

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func ring(t *testing.T, current string, keys ...Key) *Keyring {
	t.Helper()
	kr, err := NewKeyring(keys, current)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestSealOpenRoundTrip(t *testing.T) {
	kr := ring(t, "", Key{"k1", key(1)})
	s, err := kr.Seal([]byte("alice@example.com"), "crm/customer/7/email")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, "enc:v1:k1:") || strings.Contains(s, "alice") {
		t.Fatalf("sealed = %q", s)
	}
	if id, err := KeyID(s); err != nil || id != "k1" {
		t.Fatalf("KeyID = %q, %v", id, err)
	}
	got, err := kr.Open(s, "crm/customer/7/email")
	if err != nil || string(got) != "alice@example.com" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Two seals of the same value differ (random nonce).
	s2, _ := kr.Seal([]byte("alice@example.com"), "crm/customer/7/email")
	if s2 == s {
		t.Fatal("two seals of one value are identical")
	}
}

func TestOpenDetectsTampering(t *testing.T) {
	kr := ring(t, "", Key{"k1", key(1)}, Key{"k2", key(2)})
	s, _ := kr.Seal([]byte("secret"), "ctx")

	// A flipped bit anywhere in the payload.
	id, payload, _ := split(s)
	raw, _ := base64.RawStdEncoding.DecodeString(payload)
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 1
		_, err := kr.Open(Prefix+id+":"+base64.RawStdEncoding.EncodeToString(bad), "ctx")
		if !errors.Is(err, ErrTampered) {
			t.Fatalf("byte %d flipped: err = %v, want ErrTampered", i, err)
		}
	}
	// Moved to another context (another record or field).
	if _, err := kr.Open(s, "other"); !errors.Is(err, ErrTampered) {
		t.Fatalf("other context: err = %v", err)
	}
	// The key id edited to another key of the ring.
	if _, err := kr.Open(strings.Replace(s, ":k2:", ":k1:", 1), "ctx"); !errors.Is(err, ErrTampered) {
		t.Fatalf("edited key id: err = %v", err)
	}
	// Truncated, not sealed, bad base64.
	for _, bad := range []string{s[:len(Prefix)+5], "plain", Prefix + "k2:!!!", Prefix + "k2", Prefix + "bad id:AAAA"} {
		if _, err := kr.Open(bad, "ctx"); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTampered) {
			t.Fatalf("Open(%q) err = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestOpenWrongOrMissingKey(t *testing.T) {
	s, _ := ring(t, "", Key{"k1", key(1)}).Seal([]byte("secret"), "ctx")

	// Another secret under the same id: authentication fails, no garbage.
	got, err := ring(t, "", Key{"k1", key(9)}).Open(s, "ctx")
	if !errors.Is(err, ErrTampered) || got != nil {
		t.Fatalf("wrong key: %q, %v", got, err)
	}
	// The key is gone from the ring: the error names it.
	_, err = ring(t, "", Key{"k2", key(2)}).Open(s, "ctx")
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("missing key: %v", err)
	}
	var none *Keyring
	if _, err := none.Open(s, "ctx"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("nil ring: %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatal("error contains the plaintext")
	}
}

func TestRotation(t *testing.T) {
	old := ring(t, "", Key{"k1", key(1)})
	s1, _ := old.Seal([]byte("v"), "ctx")

	// Key 2 added: the newest seals by default, key 1 still opens.
	both := ring(t, "", Key{"k1", key(1)}, Key{"k2", key(2)})
	if both.Current() != "k2" {
		t.Fatalf("current = %q", both.Current())
	}
	if !both.NeedsReseal(s1) {
		t.Fatal("a k1 value does not need resealing under k2")
	}
	p, err := both.Open(s1, "ctx")
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := both.Seal(p, "ctx")
	if id, _ := KeyID(s2); id != "k2" || both.NeedsReseal(s2) {
		t.Fatalf("resealed with %q", id)
	}
	// Key 1 removed: the resealed value opens, the old one does not.
	only2 := ring(t, "", Key{"k2", key(2)})
	if p, err := only2.Open(s2, "ctx"); err != nil || string(p) != "v" {
		t.Fatalf("Open after rotation = %q, %v", p, err)
	}
	if _, err := only2.Open(s1, "ctx"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old value after rotation: %v", err)
	}
	// A designated current key that is not the newest.
	pinned := ring(t, "k1", Key{"k1", key(1)}, Key{"k2", key(2)})
	if s, _ := pinned.Seal([]byte("v"), "ctx"); !strings.HasPrefix(s, Prefix+"k1:") {
		t.Fatalf("pinned current sealed %q", s)
	}
}

func TestParseKeyAndRingErrors(t *testing.T) {
	raw := key(7)
	for _, s := range []string{hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw),
		base64.RawURLEncoding.EncodeToString(raw), " " + base64.StdEncoding.EncodeToString(raw) + "\n"} {
		k, err := ParseKey(s)
		if err != nil || !bytes.Equal(k, raw) {
			t.Fatalf("ParseKey(%q) = %x, %v", s, k, err)
		}
	}
	short := base64.StdEncoding.EncodeToString(raw[:16])
	if _, err := ParseKey(short); err == nil || !strings.Contains(err.Error(), "16 bytes") || strings.Contains(err.Error(), short) {
		t.Fatalf("short key: %v", err)
	}
	for _, s := range []string{"", "not a key!", hex.EncodeToString(raw[:31])} {
		if _, err := ParseKey(s); err == nil {
			t.Fatalf("ParseKey(%q) accepted", s)
		}
	}
	for name, tc := range map[string]struct {
		keys    []Key
		current string
	}{
		"none":            {nil, ""},
		"bad id":          {[]Key{{"a b", raw}}, ""},
		"duplicate":       {[]Key{{"k", raw}, {"k", raw}}, ""},
		"short":           {[]Key{{"k", raw[:16]}}, ""},
		"unknown current": {[]Key{{"k", raw}}, "other"},
	} {
		if _, err := NewKeyring(tc.keys, tc.current); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzOpen: whatever is stored in place of a sealed value, Open never
// panics, and the only plaintext it ever returns is one Seal sealed under
// that key and context.
func FuzzOpen(f *testing.F) {
	kr, _ := NewKeyring([]Key{{"k1", key(1)}}, "")
	good, _ := kr.Seal([]byte("secret"), "ctx")
	f.Add(good)
	f.Add(good[:len(good)-1] + "A")
	f.Add(Prefix + "k1:")
	f.Add(Prefix + "k1:" + strings.Repeat("A", 40))
	f.Add("plain")
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := kr.Open(s, "ctx"); err == nil && string(p) != "secret" {
			t.Fatalf("Open(%q) = %q without error", s, p)
		}
	})
}
