// Package sealed encrypts small values at rest with AES-256-GCM (the
// standard library's crypto/aes and crypto/cipher) under a Keyring of named
// keys, so keys can be rotated: new values are sealed with the current key,
// values sealed with any other key of the ring still open, and a value whose
// key has left the ring fails to open with an error naming the key, never
// garbage.
//
// A sealed value is text, safe to store in JSON:
//
//	enc:v1:<key id>:<base64 of nonce(12) ‖ ciphertext ‖ tag(16)>
//
// The key id is authenticated with the value (it is part of the additional
// data), and so is a caller-chosen context such as "vendor/resource/id/field":
// a sealed value copied to another record, or a key id edited by hand, fails
// to open (ErrTampered) instead of decrypting.
//
// The package knows nothing of Caddy or of craftedge's stores.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Prefix starts every sealed value.
const Prefix = "enc:v1:"

// KeySize is the length of a key: AES-256.
const KeySize = 32

var (
	// ErrUnknownKey is returned by Open for a value sealed with a key that
	// is not in the ring (removed too early: re-add it, re-encrypt, then
	// remove it).
	ErrUnknownKey = errors.New("sealed: the value's key is not configured")
	// ErrTampered is returned by Open when authentication fails: the value
	// was altered, moved to another context, or sealed with another key of
	// the same id.
	ErrTampered = errors.New("sealed: authentication failed (value altered, moved, or a different key under the same id)")
	// ErrMalformed is returned by Open for a value that is not a sealed
	// value.
	ErrMalformed = errors.New("sealed: malformed sealed value")
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidID reports whether id may name a key: 1 to 64 letters, digits, '_',
// '.' or '-'.
func ValidID(id string) bool { return idRE.MatchString(id) }

// ParseKey decodes a 32-byte key written as 64 hex digits or as base64
// (standard or URL alphabet, padded or not). Surrounding spaces are ignored.
// The error never contains the key.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("empty key")
	}
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		k, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(k) != KeySize {
			return nil, fmt.Errorf("key decodes to %d bytes, want %d (AES-256; e.g. `openssl rand -base64 32`)", len(k), KeySize)
		}
		return k, nil
	}
	return nil, fmt.Errorf("key is neither %d hex digits nor base64 of %d bytes (e.g. `openssl rand -base64 32`)", 2*KeySize, KeySize)
}

// Key is one named key.
type Key struct {
	// ID names the key in every value it seals; see ValidID.
	ID string
	// Secret is the 32-byte AES-256 key.
	Secret []byte
}

// Keyring holds named keys and the current one. It is immutable and safe
// for concurrent use.
type Keyring struct {
	aeads   map[string]cipher.AEAD
	current string
}

// NewKeyring returns a ring of keys sealing with current, which must be
// one of them; an empty current selects the last key given (the newest).
func NewKeyring(keys []Key, current string) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("sealed: no keys")
	}
	kr := &Keyring{aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, k := range keys {
		if !ValidID(k.ID) {
			return nil, fmt.Errorf("sealed: key id %q: want 1 to 64 letters, digits, '_', '.' or '-'", k.ID)
		}
		if _, dup := kr.aeads[k.ID]; dup {
			return nil, fmt.Errorf("sealed: key id %q given twice", k.ID)
		}
		if len(k.Secret) != KeySize {
			return nil, fmt.Errorf("sealed: key %q is %d bytes, want %d", k.ID, len(k.Secret), KeySize)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("sealed: key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("sealed: key %q: %w", k.ID, err)
		}
		kr.aeads[k.ID] = aead
	}
	if current == "" {
		current = keys[len(keys)-1].ID
	}
	if _, ok := kr.aeads[current]; !ok {
		return nil, fmt.Errorf("sealed: current key %q is not one of the keys", current)
	}
	kr.current = current
	return kr, nil
}

// Current returns the id of the key new values are sealed with.
func (kr *Keyring) Current() string { return kr.current }

// IDs returns the ids of the ring's keys, sorted.
func (kr *Keyring) IDs() []string {
	ids := make([]string, 0, len(kr.aeads))
	for id := range kr.aeads {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// IsSealed reports whether s looks like a sealed value.
func IsSealed(s string) bool { return strings.HasPrefix(s, Prefix) }

// KeyID returns the id of the key a sealed value names.
func KeyID(s string) (string, error) {
	id, _, err := split(s)
	return id, err
}

func split(s string) (id, payload string, err error) {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return "", "", ErrMalformed
	}
	id, payload, ok = strings.Cut(rest, ":")
	if !ok || !ValidID(id) {
		return "", "", ErrMalformed
	}
	return id, payload, nil
}

func additionalData(id, context string) []byte {
	return []byte(Prefix + id + ":" + context)
}

// Seal encrypts plaintext with the current key, binding it to context (the
// same context must be given to Open).
func (kr *Keyring) Seal(plaintext []byte, context string) (string, error) {
	aead := kr.aeads[kr.current]
	buf := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("sealed: reading a nonce: %w", err)
	}
	buf = aead.Seal(buf, buf, plaintext, additionalData(kr.current, context))
	return Prefix + kr.current + ":" + base64.RawStdEncoding.EncodeToString(buf), nil
}

// Open decrypts a value sealed with any key of the ring under context.
// Errors wrap ErrMalformed, ErrUnknownKey (naming the key) or ErrTampered;
// they never contain the plaintext. A nil ring opens nothing: every sealed
// value is ErrUnknownKey.
func (kr *Keyring) Open(s, context string) ([]byte, error) {
	id, payload, err := split(s)
	if err != nil {
		return nil, err
	}
	var aead cipher.AEAD
	if kr != nil {
		aead = kr.aeads[id]
	}
	if aead == nil {
		return nil, fmt.Errorf("%w: key %q", ErrUnknownKey, id)
	}
	raw, err := base64.RawStdEncoding.DecodeString(payload)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return nil, ErrMalformed
	}
	n := aead.NonceSize()
	out, err := aead.Open(nil, raw[:n], raw[n:], additionalData(id, context))
	if err != nil {
		return nil, fmt.Errorf("%w (key %q)", ErrTampered, id)
	}
	return out, nil
}

// NeedsReseal reports whether a sealed value is sealed with another key than
// the current one (a re-encryption pass should seal it again).
func (kr *Keyring) NeedsReseal(s string) bool {
	id, _, err := split(s)
	return err == nil && (kr == nil || id != kr.current)
}
