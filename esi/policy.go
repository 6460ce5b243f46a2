package esi

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Policy decides where an include may point: only to the page's own site,
// fetched through the same upstream. It is built per page from the
// request's scheme and host, so a fragment can never be fetched from
// another host (no SSRF through a reflected or injected include).
type Policy struct {
	// Scheme and Host are the page's own ("https", "example.com" or
	// "example.com:8443"); an absolute src must name exactly these.
	Scheme, Host string
	// Reserved are path prefixes no include may reach, compared after
	// percent-decoding and case-insensitively (Caddy's path matcher and
	// PHP routing ignore case): the admin-like "/craftedge/" routes, the
	// vendor proxy "/vendors/", the control panel.
	Reserved []string
	// Check, when set, is asked last about every path the policy would
	// accept (path and query, as Resolve returns it) and refuses it with
	// an error: the handler plugs in its bypass rules here, so an include
	// can never be a control panel, action or token request that Reserved
	// cannot express (Craft's "?p=admin/…" path parameter).
	Check func(path string) error
}

// ErrRefused wraps every reason Resolve gives for refusing a reference.
var ErrRefused = errors.New("esi: include refused")

// Resolve returns the same-site path (path and query, fragment dropped) a
// src or alt reference designates, or an error wrapping ErrRefused. It
// accepts a path-absolute reference ("/a?b", not "//host/a") or an absolute
// URL whose scheme and host equal the page's (reduced to its path). It
// refuses other hosts, scheme changes, userinfo, relative references,
// backslashes, control characters, spaces and non-ASCII bytes, dot
// segments and empty segments (raw or percent-encoded), invalid percent
// escapes and the Reserved prefixes.
func (p *Policy) Resolve(ref string) (string, error) {
	refuse := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
	}
	if ref == "" {
		return refuse("empty reference")
	}
	for i := 0; i < len(ref); i++ {
		switch c := ref[i]; {
		case c < 0x20 || c == 0x7f:
			return refuse("control character %#02x at %d", c, i)
		case c == ' ':
			return refuse("space at %d", i)
		case c >= 0x80:
			return refuse("non-ASCII byte at %d (percent-encode it)", i)
		case c == '\\':
			return refuse("backslash at %d", i)
		}
	}
	if i := strings.IndexByte(ref, '#'); i >= 0 {
		ref = ref[:i]
	}
	var path string
	switch {
	case strings.HasPrefix(ref, "//"):
		return refuse("network-path reference %q (another host)", truncate(ref, 64))
	case strings.HasPrefix(ref, "/"):
		path = ref
	default:
		scheme, rest, ok := cutScheme(ref)
		if !ok {
			return refuse("relative reference %q (use a path starting with /)", truncate(ref, 64))
		}
		if !strings.HasPrefix(rest, "//") {
			return refuse("absolute URL %q without an authority", truncate(ref, 64))
		}
		rest = rest[2:]
		end := strings.IndexAny(rest, "/?")
		if end < 0 {
			end = len(rest)
		}
		authority := rest[:end]
		path = rest[end:]
		if strings.Contains(authority, "@") {
			return refuse("userinfo in %q", truncate(ref, 64))
		}
		if !strings.EqualFold(scheme, p.Scheme) {
			return refuse("scheme %q is not the page's %q", scheme, p.Scheme)
		}
		if normHost(authority, scheme) != normHost(p.Host, p.Scheme) || authority == "" {
			return refuse("host %q is not the page's %q", truncate(authority, 64), p.Host)
		}
		if path == "" || path[0] == '?' {
			path = "/" + path
		}
	}
	if err := checkPath(path); err != nil {
		return refuse("%v", err)
	}
	decoded, _ := percentDecode(pathOnly(path)) // checked by checkPath
	low := strings.ToLower(decoded)
	for _, r := range p.Reserved {
		r = strings.ToLower(r)
		if r == "" {
			continue
		}
		if strings.HasPrefix(low, r) || low == strings.TrimSuffix(r, "/") || strings.HasPrefix(low+"/", r) {
			return refuse("path %q is under the reserved prefix %q", truncate(path, 64), r)
		}
	}
	if p.Check != nil {
		if err := p.Check(path); err != nil {
			return refuse("%v", err)
		}
	}
	return path, nil
}

// checkPath validates a resolved include path (also on templates loaded
// from storage): it starts with one "/", holds only printable ASCII without
// backslash, and its path part, percent-decoded, has no control character,
// backslash, NUL, empty segment or dot segment.
func checkPath(path string) error {
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
		return fmt.Errorf("path %q is not path-absolute", truncate(path, 64))
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= 0x20 || c >= 0x7f || c == '\\' || c == '#' {
			return fmt.Errorf("byte %#02x at %d in path", c, i)
		}
	}
	decoded, err := percentDecode(pathOnly(path))
	if err != nil {
		return err
	}
	for i := 0; i < len(decoded); i++ {
		if c := decoded[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("encoded byte %#02x in path", c)
		}
	}
	for rest := decoded[1:]; ; {
		seg, after, more := strings.Cut(rest, "/")
		switch {
		case seg == "." || seg == "..":
			return fmt.Errorf("dot segment %q in path", seg)
		case seg == "" && more:
			return errors.New("empty segment (//) in path")
		}
		if !more {
			return nil
		}
		rest = after
	}
}

// pathOnly strips the query.
func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// percentDecode decodes %XX escapes, refusing invalid ones.
func percentDecode(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
			return "", fmt.Errorf("invalid percent escape at %d", i)
		}
		out = append(out, byte(unhex(s[i+1])<<4|unhex(s[i+2])))
		i += 2
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// cutScheme splits "scheme:rest" (RFC 3986 §3.1 scheme syntax).
func cutScheme(ref string) (scheme, rest string, ok bool) {
	i := strings.IndexByte(ref, ':')
	if i <= 0 {
		return "", "", false
	}
	for j := 0; j < i; j++ {
		c := ref[j]
		alpha := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !alpha && (j == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", "", false
		}
	}
	return ref[:i], ref[i+1:], true
}

// normHost lower-cases a host[:port] and drops the scheme's default port.
func normHost(hostport, scheme string) string {
	h := strings.ToLower(hostport)
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		return h
	}
	if port == "" || port == "80" && strings.EqualFold(scheme, "http") || port == "443" && strings.EqualFold(scheme, "https") {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return h
}
