package httpcache

import "strings"

// This file reads request variable names the way PHP does, so bypass rules
// see the names Craft (through PHP's $_GET and $_COOKIE) will see.

// PHPVarName returns the name PHP registers for a decoded query parameter
// or cookie name (php_register_variable_ex): the name ends at a NUL byte,
// leading spaces are dropped, spaces and dots become "_", and an array
// suffix ("a[b]", "a[]") leaves the base name "a". A "[" without a closing
// "]" is not an array: it and every later space, dot or "[" become "_"
// ("a[b.c" is "a_b_c"), as PHP 8 does. "" means PHP ignores the variable.
func PHPVarName(name string) string {
	base, _ := phpVar(name)
	return base
}

// phpVar is PHPVarName, also reporting whether PHP registers the variable
// as an array element ("a[]", "a[x]": array true) rather than as a plain
// value that replaces whatever the name held. It allocates only when the
// base name has spaces or dots to replace.
func phpVar(name string) (base string, array bool) {
	if i := strings.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	name = strings.TrimLeft(name, " ")
	if name == "" {
		return "", false
	}
	if !strings.ContainsAny(name, " .[") {
		return name, false
	}
	if i := strings.IndexByte(name, '['); i > 0 && !strings.ContainsAny(name[:i], " .") &&
		strings.IndexByte(name[i+1:], ']') >= 0 {
		return name[:i], true
	}
	b := []byte(name)
	for i, c := range b {
		switch c {
		case ' ', '.':
			b[i] = '_'
		case '[':
			if i == 0 {
				// PHP ignores "[...]" without a base name.
				return "", false
			}
			if strings.IndexByte(name[i+1:], ']') >= 0 {
				return string(b[:i]), true
			}
			for j := i; j < len(b); j++ {
				if b[j] == ' ' || b[j] == '.' || b[j] == '[' {
					b[j] = '_'
				}
			}
			return string(b), false
		}
	}
	return string(b), false
}

// PHPCookieName returns the name PHP registers for one raw "name" piece of
// a Cookie header: leading white space trimmed (PHP's treat_data), then
// PHPVarName. PHP 8 does not percent-decode cookie names; callers that must
// also catch older PHP check the decoded form too.
func PHPCookieName(raw string) string {
	return PHPVarName(strings.TrimLeft(raw, " \t\n\v\f\r"))
}

// PHPQueryValues returns the decoded values of every parameter of rawQuery
// that PHP registers under name (see PHPVarName), in order.
func PHPQueryValues(rawQuery, name string) []string {
	var values []string
	for rawQuery != "" {
		var piece string
		piece, rawQuery, _ = cutByte(rawQuery, '&')
		n, v, _ := cutByte(piece, '=')
		if n == "" {
			continue
		}
		if PHPVarName(unescapeQuery(n)) == name {
			values = append(values, unescapeQuery(v))
		}
	}
	return values
}
