package httpcache

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// DefaultTrackingParams are marketing and click-tracking query parameters
// that never change a page, dropped from every cache key: exact names, or
// prefixes when ending in "*". Changing it after package initialization
// affects only KeyRules compiled afterwards, not KeyForURL or uncompiled
// rules.
var DefaultTrackingParams = []string{"utm_*", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "fbclid", "msclkid", "mc_cid", "mc_eid", "_ga", "_gl", "yclid", "igshid", "twclid", "ttclid", "li_fat_id", "_hsenc", "_hsmi", "mkt_tok", "srsltid"}

// defaultKeyRules are the compiled DefaultTrackingParams, used by KeyForURL
// and by KeyRules that were never compiled.
var defaultKeyRules = mustCompileKeyRules()

// mustCompileKeyRules compiles the default key rules; the defaults are
// constant, so failing is a programming error.
func mustCompileKeyRules() KeyRules {
	var k KeyRules
	if err := k.Compile(); err != nil {
		panic(err)
	}
	return k
}

// KeyRules builds cache keys. Configure IgnoreQuery, call Compile once,
// then Key is safe for concurrent use. A KeyRules that was never compiled
// drops only DefaultTrackingParams.
type KeyRules struct {
	// IgnoreQuery are extra query parameter names dropped from keys: exact,
	// or a prefix when ending in "*" ("*" alone drops every parameter).
	// Matched against the percent-decoded name, case-sensitively.
	IgnoreQuery []string

	ignore   matcher
	compiled bool
}

// Compile validates IgnoreQuery and prepares the matcher of dropped
// parameters (DefaultTrackingParams plus IgnoreQuery).
func (k *KeyRules) Compile() error {
	defaults, err := newMatcher("default tracking params", DefaultTrackingParams, false, validQueryRule)
	if err != nil {
		return fmt.Errorf("httpcache: invalid key rules: %w", err)
	}
	extra, err := newMatcher("ignore query", k.IgnoreQuery, false, validQueryRule)
	if err != nil {
		return fmt.Errorf("httpcache: invalid key rules: %w", err)
	}
	k.ignore = matcher{
		exact:  slices.Concat(defaults.exact, extra.exact),
		prefix: slices.Concat(defaults.prefix, extra.prefix),
	}
	k.compiled = true
	return nil
}

// queryParam is one parsed, percent-decoded query parameter.
type queryParam struct {
	name, value string
	hasEq       bool   // "a=" rather than "a"
	php         string // the variable PHP registers it under (phpVar)
	array       bool   // registered as an array element ("a[]", "a[x]")
	dead        bool   // replaced by a later parameter of php (phpDead)
}

// Key returns the cache key of a request:
//
//	scheme "://" host path ["?" normalized query]
//
// scheme and host are lower-cased, and the host's default port for the
// scheme (":80", ":443") is dropped; an empty path is "/". Otherwise path is
// used as given: callers pass r.URL.EscapedPath(). The query is normalized
// so that two queries share a key exactly when PHP's $_GET reads them
// alike (as far as it can tell without PHP's input limits): empty
// parameters and dropped ones (see KeyRules) removed; the rest sorted by
// the variable PHP registers them under (PHPVarName: "a.b", "a b" and
// "a_b" are one variable, "a[]" and "a[x]" belong to "a"), stable, so the
// parameters of one variable keep their order, since PHP lets the last
// plain value win and builds arrays in order; parameters PHP would
// overwrite dropped (a plain "a=" or "a" replaces everything "a" held
// before it, and a later "a[...]" replaces a plain value: "a=1&a=2" is
// "a=2", "a[]=1&a=2" is "a=2", "a=2&a[]=1" is "a[]=1"); each name and value
// percent-decoded then re-encoded as url.QueryEscape does. Names are kept
// as sent ("a.b" stays "a.b"). A parameter without "=" ("?a") stays "a",
// distinct from "a=". The "?" is omitted when nothing remains. With an
// empty rawQuery, Key allocates only the result.
func (k *KeyRules) Key(scheme, host, path, rawQuery string) string {
	if rawQuery == "" {
		return PathKey(scheme, host, path)
	}
	ignore := &defaultKeyRules.ignore
	if k.compiled {
		ignore = &k.ignore
	}
	var buf [16]queryParam
	params := buf[:0]
	for rawQuery != "" {
		var piece string
		piece, rawQuery, _ = cutByte(rawQuery, '&')
		if piece == "" {
			continue
		}
		name, value, hasEq := cutByte(piece, '=')
		name = unescapeQuery(name)
		if ignore.match(name) {
			continue
		}
		php, array := phpVar(name)
		params = append(params, queryParam{name: name, value: unescapeQuery(value), hasEq: hasEq, php: php, array: array})
	}
	if len(params) == 0 {
		return PathKey(scheme, host, path)
	}
	slices.SortStableFunc(params, func(a, b queryParam) int { return strings.Compare(a.php, b.php) })
	phpDead(params)
	n := 0
	for _, p := range params {
		if !p.dead {
			n += queryEscapedLen(p.name) + queryEscapedLen(p.value) + 2 // "=" and "&"
		}
	}
	var b strings.Builder
	writeBase(&b, scheme, host, path, n)
	first := true
	for _, p := range params {
		if p.dead {
			continue
		}
		if first {
			b.WriteByte('?')
			first = false
		} else {
			b.WriteByte('&')
		}
		writeQueryEscaped(&b, p.name)
		if p.hasEq {
			b.WriteByte('=')
			writeQueryEscaped(&b, p.value)
		}
	}
	return b.String()
}

// phpDead marks the parameters PHP overwrites (see Key), in params sorted
// stably by PHP variable: walking each variable's parameters from the
// last, a plain one is kept unless a later parameter of the variable
// already was (an array element after it replaces it), and everything
// before a plain one is dead. Parameters PHP ignores (no variable name)
// are kept as they are.
func phpDead(params []queryParam) {
	var (
		cur               string
		plainSeen, arrays bool
	)
	for i := len(params) - 1; i >= 0; i-- {
		p := &params[i]
		if i == len(params)-1 || p.php != cur {
			cur, plainSeen, arrays = p.php, false, false
		}
		switch {
		case p.php == "":
		case plainSeen:
			p.dead = true
		case !p.array:
			p.dead = arrays
			plainSeen = true
		default:
			arrays = true
		}
	}
}

// Query returns the normalized form of rawQuery that Key puts after "?"
// ("" when nothing remains): what the upstream is sent for a keyed request.
func (k *KeyRules) Query(rawQuery string) string {
	full := k.Key("http", "", "/", rawQuery)
	if i := strings.IndexByte(full, '?'); i >= 0 {
		return full[i+1:]
	}
	return ""
}

// PathKey is Key without the query: scheme "://" host path, normalized as
// Key does. It is the URL identity purges use. It allocates only the result.
func PathKey(scheme, host, path string) string {
	var b strings.Builder
	writeBase(&b, scheme, host, path, 0)
	return b.String()
}

// writeBase grows b for the base key plus extra bytes and writes the
// lower-cased scheme, "://", the lower-cased host without its default port,
// and the path ("/" when empty).
func writeBase(b *strings.Builder, scheme, host, path string, extra int) {
	host = stripDefaultPort(scheme, host)
	if path == "" {
		path = "/"
	}
	b.Grow(len(scheme) + len("://") + len(host) + len(path) + extra)
	writeLower(b, scheme)
	b.WriteString("://")
	writeLower(b, host)
	b.WriteString(path)
}

// writeLower writes the ASCII lower-case form of s to b.
func writeLower(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		b.WriteByte(lowerASCII(s[i]))
	}
}

// stripDefaultPort removes ":80" from an http host and ":443" from an https
// one, so "example.com:443" and "example.com" share entries.
func stripDefaultPort(scheme, host string) string {
	switch {
	case equalFold(scheme, "http"):
		return strings.TrimSuffix(host, ":80")
	case equalFold(scheme, "https"):
		return strings.TrimSuffix(host, ":443")
	}
	return host
}

// KeyForURL parses an absolute http(s) URL ("https://example.com/a?b=1"),
// as given to a purge, and returns its PathKey and its full Key under the
// default tracking parameters. The fragment and any user info are ignored.
// The error names the problem for invalid or relative URLs and other
// schemes.
func KeyForURL(raw string) (pathKey, fullKey string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("httpcache: invalid URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme == "" || u.Host == "" && u.Opaque == "":
		return "", "", fmt.Errorf("httpcache: URL %q: %w", raw, errRelativeURL)
	case !equalFold(u.Scheme, "http") && !equalFold(u.Scheme, "https"):
		return "", "", fmt.Errorf("httpcache: URL %q: scheme %q is not http or https", raw, u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return "", "", fmt.Errorf("httpcache: URL %q: %w", raw, errRelativeURL)
	}
	path := u.EscapedPath()
	return PathKey(u.Scheme, u.Host, path), defaultKeyRules.Key(u.Scheme, u.Host, path, u.RawQuery), nil
}

// errRelativeURL is wrapped by KeyForURL for URLs without scheme or host.
var errRelativeURL = errors.New("not an absolute URL with scheme and host")
