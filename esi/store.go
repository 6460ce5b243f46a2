package esi

import "strings"

// OptedIn reports whether a response's Surrogate-Control header values ask
// for ESI processing: a content directive listing the ESI/1.0 capability
// (W3C Edge Architecture 1.0: `content="ESI/1.0"`, possibly among other
// capabilities, possibly targeted with ";name", which is ignored: the
// header comes from the trusted upstream and is removed before the
// response leaves).
func OptedIn(surrogateControl []string) bool {
	for _, v := range surrogateControl {
		for v != "" {
			var d string
			d, v, _ = strings.Cut(v, ",")
			name, value, ok := strings.Cut(d, "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "content") {
				continue
			}
			value = strings.TrimSpace(value)
			if len(value) >= 2 && value[0] == '"' {
				if end := strings.IndexByte(value[1:], '"'); end >= 0 {
					value = value[1 : 1+end]
				}
			} else if i := strings.IndexByte(value, ';'); i >= 0 {
				value = value[:i]
			}
			for _, c := range strings.Fields(value) {
				if strings.EqualFold(c, "ESI/1.0") {
					return true
				}
			}
		}
	}
	return false
}

// Compile is the store-time step for a body that opted in: Parse, then
// Compress, then MarshalBinary. It returns the bytes to keep beside the
// body and the template (whose Refused the caller logs).
func Compile(body []byte, pol *Policy, lim Limits) ([]byte, *Template, error) {
	t, err := Parse(body, pol, lim)
	if err != nil {
		return nil, nil, err
	}
	b, err := compile(t, body)
	return b, t, err
}

// CompileStatic is the store-time step for a fragment that did not opt in:
// one static part, compressed as segments.
func CompileStatic(body []byte) ([]byte, error) {
	return compile(Static(body), body)
}

func compile(t *Template, body []byte) ([]byte, error) {
	if err := t.Compress(body); err != nil {
		return nil, err
	}
	return t.MarshalBinary()
}
