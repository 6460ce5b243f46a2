package httpcache

import (
	"fmt"
	"strings"
)

// This file holds the name matcher behind every configurable list of
// "exact name, or prefix when ending in *" rules.

// matcher matches names against exact values and prefixes. The zero value
// matches nothing.
type matcher struct {
	exact  []string
	prefix []string
	fold   bool // ASCII case-insensitive
}

// newMatcher compiles names (exact, or a prefix when ending in "*"). valid
// checks each name with its "*" removed and returns a description of the
// problem, or "". With fold, names match ignoring ASCII case.
func newMatcher(what string, names []string, fold bool, valid func(string) string) (matcher, error) {
	m := matcher{fold: fold}
	for i, name := range names {
		base, isPrefix := strings.CutSuffix(name, "*")
		if name == "" {
			return matcher{}, fmt.Errorf("%s[%d]: empty name", what, i)
		}
		if strings.Contains(base, "*") {
			return matcher{}, fmt.Errorf("%s[%d] %q: \"*\" is only allowed at the end", what, i, name)
		}
		if problem := valid(base); problem != "" {
			return matcher{}, fmt.Errorf("%s[%d] %q: %s", what, i, name, problem)
		}
		if fold {
			base = strings.ToLower(base)
		}
		if isPrefix {
			m.prefix = append(m.prefix, base)
		} else {
			m.exact = append(m.exact, base)
		}
	}
	return m, nil
}

// empty reports whether m can match nothing.
func (m *matcher) empty() bool { return len(m.exact) == 0 && len(m.prefix) == 0 }

// match reports whether s equals one of m's exact names or starts with one
// of its prefixes.
func (m *matcher) match(s string) bool {
	if m.fold {
		for _, e := range m.exact {
			if equalFold(s, e) {
				return true
			}
		}
		for _, p := range m.prefix {
			if hasPrefixFold(s, p) {
				return true
			}
		}
		return false
	}
	for _, e := range m.exact {
		if s == e {
			return true
		}
	}
	for _, p := range m.prefix {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// PathRules matches request paths against rules: exact paths, or prefixes
// when ending in "*" ("/products/*"). Matching is case-sensitive.
type PathRules struct{ m matcher }

// CompilePathRules validates and compiles path rules; each must start
// with "/" and hold no query, fragment or space.
func CompilePathRules(rules []string) (PathRules, error) {
	m, err := newMatcher("paths", rules, false, validPathRule)
	if err != nil {
		return PathRules{}, fmt.Errorf("httpcache: %w", err)
	}
	return PathRules{m: m}, nil
}

// Match reports whether path matches one of the rules.
func (p *PathRules) Match(path string) bool { return p.m.match(path) }
