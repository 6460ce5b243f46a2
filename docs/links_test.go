// Package docs holds craftedge's documentation (Markdown). Its test checks
// that every relative link and anchor of README.md, docs/, bench/ and craft/
// resolves.
package docs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = ".."

// docFiles are the Markdown files whose links are checked.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md"}
	for _, dir := range []string{"docs", "bench", "craft"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() && strings.HasSuffix(p, ".md") {
				rel, err := filepath.Rel(repoRoot, p)
				if err != nil {
					return err
				}
				files = append(files, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

var (
	linkRE     = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	codeSpanRE = regexp.MustCompile("`+[^`]*`+")
	headingRE  = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
)

// markdownLines returns the lines of a Markdown file that are prose: code
// blocks (fenced or indented by four spaces outside lists) are dropped.
func markdownLines(text string) []string {
	var out []string
	fence := ""
	prevBlank := true
	inIndented := false
	for _, l := range strings.Split(text, "\n") {
		trim := strings.TrimSpace(l)
		if fence != "" {
			if strings.HasPrefix(trim, fence) {
				fence = ""
			}
			out = append(out, "")
			continue
		}
		if strings.HasPrefix(trim, "```") || strings.HasPrefix(trim, "~~~") {
			fence = trim[:3]
			out = append(out, "")
			continue
		}
		indented := strings.HasPrefix(l, "    ") || strings.HasPrefix(l, "\t")
		if indented && (prevBlank || inIndented) && !inList(out) {
			inIndented = true
			out = append(out, "")
			continue
		}
		if trim != "" {
			inIndented = false
		}
		prevBlank = trim == ""
		out = append(out, l)
	}
	return out
}

// inList reports whether the last prose line before a blank run is a list
// item or its continuation (an indented line there continues the item).
func inList(lines []string) bool {
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if strings.TrimSpace(l) == "" {
			continue
		}
		t := strings.TrimLeft(l, " ")
		return strings.HasPrefix(t, "- ") || strings.HasPrefix(t, "* ") || regexp.MustCompile(`^\d+\. `).MatchString(t) || strings.HasPrefix(l, "  ")
	}
	return false
}

// slug is GitHub's anchor for a heading: lower case, punctuation other
// than - and _ dropped, spaces turned into -.
func slug(heading string) string {
	heading = codeSpanRE.ReplaceAllStringFunc(heading, func(s string) string { return strings.Trim(s, "`") })
	heading = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the heading anchors of a Markdown file, with GitHub's
// -1, -2 suffixes for repeated headings.
func anchors(text string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, l := range markdownLines(text) {
		m := headingRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		s := slug(m[2])
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// TestDocLinks fails on a relative link to a missing file, or an anchor
// missing from its Markdown target.
func TestDocLinks(t *testing.T) {
	cache := map[string]map[string]bool{}
	anchorsOf := func(rel string) (map[string]bool, error) {
		if a, ok := cache[rel]; ok {
			return a, nil
		}
		b, err := os.ReadFile(filepath.Join(repoRoot, rel))
		if err != nil {
			return nil, err
		}
		cache[rel] = anchors(string(b))
		return cache[rel], nil
	}
	checked := 0
	for _, file := range docFiles(t) {
		b, err := os.ReadFile(filepath.Join(repoRoot, file))
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range markdownLines(string(b)) {
			l = codeSpanRE.ReplaceAllString(l, "")
			for _, m := range linkRE.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				where := fmt.Sprintf("%s:%d: link %q", file, i+1, target)
				path, frag, _ := strings.Cut(target, "#")
				rel := file
				if path != "" {
					rel = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
					if strings.HasPrefix(rel, "..") {
						t.Errorf("%s leaves the repository", where)
						continue
					}
					if _, err := os.Stat(filepath.Join(repoRoot, rel)); err != nil {
						t.Errorf("%s: no such file %s", where, rel)
						continue
					}
				}
				if frag == "" {
					continue
				}
				if !strings.HasSuffix(rel, ".md") {
					t.Errorf("%s: an anchor into a file that is not Markdown", where)
					continue
				}
				a, err := anchorsOf(rel)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				if !a[frag] {
					t.Errorf("%s: %s has no heading with anchor #%s", where, rel, frag)
				}
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d relative links found: is the link pattern broken?", checked)
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Kill switch (snapshot-only)":                                "kill-switch-snapshot-only",
		"Live read-through: `craftedge { vendor <name> [<path…>] }`": "live-read-through-craftedge--vendor-name-path-",
		"Global option `craftedge { cdn }`":                          "global-option-craftedge--cdn-",
		"What is keyed and what reaches Craft":                       "what-is-keyed-and-what-reaches-craft",
		"`webhook` block":                                            "webhook-block",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAdminAPIDocumented checks that every admin route craftedge registers
// (a Pattern "/craftedge/..." in the Go code of caddymodule) is on the admin
// API page.
func TestAdminAPIDocumented(t *testing.T) {
	page, err := os.ReadFile(filepath.Join(repoRoot, "docs", "reference", "admin-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	patternRE := regexp.MustCompile(`Pattern:\s*"(/craftedge/[^"]*)"`)
	found := 0
	err = filepath.WalkDir(filepath.Join(repoRoot, "caddymodule"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range patternRE.FindAllStringSubmatch(string(b), -1) {
			found++
			route := strings.TrimSuffix(m[1], "/")
			if !strings.Contains(string(page), "`GET "+route) && !strings.Contains(string(page), "`POST "+route) &&
				!strings.Contains(string(page), "`PUT "+route) && !strings.Contains(string(page), "`DELETE "+route) {
				t.Errorf("admin route %s (%s) is not on docs/reference/admin-api.md", m[1], p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatal("no admin routes found in caddymodule: has the registration moved?")
	}
}

// TestAlertRunbooks checks that every runbook_url of the alert rules that
// points into docs/operations/runbooks.md names an anchor it has, and
// that every alert has an entry there.
func TestAlertRunbooks(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(repoRoot, "docs", "operations", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	a := anchors(string(page))
	for _, m := range regexp.MustCompile(`runbook_url:\s*"?\S*docs/operations/runbooks\.md#([^"\s]+)`).FindAllStringSubmatch(string(rules), -1) {
		if !a[m[1]] {
			t.Errorf("alerts.yml: runbook_url anchor #%s is not a heading of docs/operations/runbooks.md", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert:\s*(\S+)`).FindAllStringSubmatch(string(rules), -1) {
		if !a[strings.ToLower(m[1])] {
			t.Errorf("alert %s has no entry (### %s) in docs/operations/runbooks.md", m[1], m[1])
		}
	}
}
