package vendors

import (
	"fmt"
	"net/url"
	"strings"
)

// placeholders returns the names of the {name} placeholders in tmpl, or an
// error for an unbalanced or empty brace.
func placeholders(tmpl string) ([]string, error) {
	var names []string
	for rest := tmpl; ; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			return names, nil
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("template %q: unbalanced '}'", tmpl)
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] != '}' {
			return nil, fmt.Errorf("template %q: unclosed '{'", tmpl)
		}
		name := rest[open+1 : open+1+end]
		if name == "" {
			return nil, fmt.Errorf("template %q: empty placeholder {}", tmpl)
		}
		names = append(names, name)
		rest = rest[open+1+end+1:]
	}
}

// expandURL fills a path template: values in the path part are
// path-escaped, values after '?' query-escaped. Templates were validated,
// so unknown placeholders cannot occur; they expand to "".
func expandURL(tmpl string, values map[string]string) string {
	var b strings.Builder
	inQuery := false
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c == '?' {
			inQuery = true
		}
		if c != '{' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(tmpl[i:], '}')
		if end < 0 {
			b.WriteString(tmpl[i:])
			break
		}
		v := values[tmpl[i+1:i+end]]
		if inQuery {
			b.WriteString(url.QueryEscape(v))
		} else {
			b.WriteString(url.PathEscape(v))
		}
		i += end
	}
	return b.String()
}

// expandText fills a text template (a cache tag) without escaping. It
// reports false when a placeholder has no value, so the tag is skipped.
func expandText(tmpl string, lookup func(name string) (string, bool)) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c != '{' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(tmpl[i:], '}')
		if end < 0 {
			b.WriteString(tmpl[i:])
			break
		}
		v, ok := lookup(tmpl[i+1 : i+end])
		if !ok {
			return "", false
		}
		b.WriteString(v)
		i += end
	}
	return b.String(), true
}
