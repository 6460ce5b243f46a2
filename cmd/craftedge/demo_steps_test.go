package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/craftedge/craftedge/demoorigin"
	"github.com/craftedge/craftedge/vendorsim"
)

var updateDemoDocs = flag.Bool("update-demo-docs", false, "rewrite the demo blocks of README.md and docs/guides/demo.md from demoSteps")

// The demo's steps are shown twice, both generated from demoSteps: README.md
// lists their titles, docs/guides/demo.md has every command with what it
// prints.
const (
	readmePath     = "../../README.md"
	demoDocPath    = "../../docs/guides/demo.md"
	demoStepsBegin = "<!-- demo-steps: generated from cmd/craftedge/demo_steps.go by `go test ./cmd/craftedge -run TestDemoStepsInDocs -update-demo-docs`; do not edit -->\n"
	demoStepsEnd   = "<!-- end of demo-steps -->\n"
)

// demoDocStepBlock is the guide's demo block: the steps with the default
// addresses, indented as a code block.
func demoDocStepBlock() string {
	var buf bytes.Buffer
	writeDemoSteps(&buf, defaultDemoAddrs())
	var b strings.Builder
	b.WriteString(demoStepsBegin + "\n")
	for _, l := range strings.SplitAfter(buf.String(), "\n") {
		if strings.TrimSpace(l) == "" {
			b.WriteString(l)
			continue
		}
		b.WriteString("    " + l)
	}
	b.WriteString("\n" + demoStepsEnd)
	return b.String()
}

// readmeStepBlock is README.md's demo block: the steps' titles, each
// linking to its place in the guide.
func readmeStepBlock() string {
	var b strings.Builder
	b.WriteString(demoStepsBegin + "\n")
	for i, s := range demoSteps {
		fmt.Fprintf(&b, "%d. %s\n", i+1, s.Title)
	}
	b.WriteString("\n" + demoStepsEnd)
	return b.String()
}

// TestDemoStepsInDocs checks that README.md lists exactly the demo's steps
// and docs/guides/demo.md shows them (demoSteps with the default
// addresses), and that the pages the steps point to exist.
func TestDemoStepsInDocs(t *testing.T) {
	// Pages the steps point to exist, with the heading they name.
	docRef := regexp.MustCompile(`docs/[a-z/_-]+\.md(?:#[a-z0-9-]+)?`)
	for _, s := range demoSteps {
		for _, ref := range docRef.FindAllString(strings.Join(s.Text, " "), -1) {
			path, anchor, _ := strings.Cut(ref, "#")
			b, err := os.ReadFile("../../" + path)
			if err != nil {
				t.Errorf("step %q points to %s: %v", s.Title, ref, err)
				continue
			}
			found := anchor == ""
			for _, l := range strings.Split(string(b), "\n") {
				if h, ok := strings.CutPrefix(l, "## "); ok && strings.ReplaceAll(strings.ToLower(h), " ", "-") == anchor {
					found = true
				}
			}
			if !found {
				t.Errorf("step %q points to %s: no such heading", s.Title, ref)
			}
		}
	}
	checkDemoBlock(t, readmePath, readmeStepBlock())
	checkDemoBlock(t, demoDocPath, demoDocStepBlock())
}

// checkDemoBlock compares the demo block of the file at path with want,
// rewriting it with -update-demo-docs.
func checkDemoBlock(t *testing.T, path, want string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	i := strings.Index(doc, demoStepsBegin)
	j := strings.Index(doc, demoStepsEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no demo-steps block (%q ... %q)", path, demoStepsBegin, demoStepsEnd)
	}
	if doc[i:j+len(demoStepsEnd)] == want {
		return
	}
	if *updateDemoDocs {
		if err := os.WriteFile(path, []byte(doc[:i]+want+doc[j+len(demoStepsEnd):]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's demo steps differ from demoSteps (run go test ./cmd/craftedge -run TestDemoStepsInDocs -update-demo-docs); want:\n%s", path, want)
}

// TestDemoSteps runs every step's commands, as printed, against a real demo
// and checks what they print. Between commands it lets background work the
// previous one started settle (snapshot writes, webhook deliveries), as the
// time a person takes to type the next command does; commands marked Later
// are rerun until their output appears.
func TestDemoSteps(t *testing.T) {
	opts := testDemoOptions(t, "", io.Discard)
	d := startTestDemo(t, opts)
	c := newDemoClient(t)
	// Like curl: no redirects followed, no Accept-Encoding added.
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	curl := &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	a := demoAddrs{
		Site:   "http://" + opts.Listen,
		Admin:  "http://" + opts.Admin,
		Origin: "http://" + d.origin,
		Shop:   d.vendor,
		Token:  recordsToken(),
	}
	// The demo syncs the shop at start; a person reads the instructions
	// first. (A sync purges product tags while step 1 runs otherwise.)
	waitDemoSynced(t, c, d)

	sh := &demoShell{client: curl, vars: map[string]string{}}
	for i, s := range demoSteps {
		for j, cmd := range s.Cmds {
			name := fmt.Sprintf("step %d.%d", i+1, j+1)
			line := a.fill(cmd.Curl)
			want := make([]string, len(cmd.Out))
			for k, o := range cmd.Out {
				want[k] = a.fill(o)
			}
			re := outputPattern(want)
			settle(t, c, d)
			out, err := sh.run(line)
			if err != nil {
				t.Fatalf("%s: %s: %v", name, line, err)
			}
			if cmd.Later {
				deadline := time.Now().Add(30 * time.Second)
				for !re.MatchString(out) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
					if out, err = sh.run(line); err != nil {
						t.Fatalf("%s: %s: %v", name, line, err)
					}
				}
			}
			if !re.MatchString(out) {
				t.Errorf("%s: %s\nprinted:\n%s\nwant:\n%s", name, line, out, strings.Join(want, "\n"))
			}
		}
	}

	// Every step puts back what it changed.
	if m := d.site.Mode(); m != demoorigin.ModeOK {
		t.Errorf("after the steps the origin's mode is %v, want ok", m)
	}
	if ch := d.sim.Chaos().Get(); !reflect.DeepEqual(ch, vendorsim.ChaosConfig{}) || d.sim.WebhookDropRate() != 0 {
		t.Errorf("after the steps the shop's chaos is %+v, webhook drop rate %v; want none", ch, d.sim.WebhookDropRate())
	}
	var h struct {
		SnapshotOnly struct {
			Overrides map[string]bool `json:"overrides"`
		} `json:"snapshot_only"`
	}
	if r := c.get(d.adminURL() + "/craftedge/health"); json.Unmarshal([]byte(r.body), &h) != nil || len(h.SnapshotOnly.Overrides) != 0 {
		t.Errorf("after the steps the kill switch overrides are %v (%s), want none", h.SnapshotOnly.Overrides, r.body)
	}
}

// settle waits until the snapshot write-behind is idle and every webhook
// the simulator sent has been answered.
func settle(t *testing.T, c *demoClient, d *demo) {
	t.Helper()
	d.sim.WaitWebhooks()
	waitFor(t, "the snapshot writes", func() bool {
		var h struct {
			Snapshots struct {
				Pending int `json:"pending"`
			} `json:"snapshots"`
		}
		r := c.get(d.adminURL() + "/craftedge/health")
		return json.Unmarshal([]byte(r.body), &h) == nil && h.Snapshots.Pending == 0
	})
}

func (d *demo) adminURL() string { return "http://" + d.admin }

// outputPattern turns expected output lines into a regular expression
// matching the whole output (see demoSteps for the placeholders).
func outputPattern(lines []string) *regexp.Regexp {
	placeholders := strings.NewReplacer(
		regexp.QuoteMeta("…"), `[^\n]*`,
		regexp.QuoteMeta("<n>"), `[0-9]+`,
		regexp.QuoteMeta("<id>"), `[0-9A-Za-z_-]+`,
		regexp.QuoteMeta("<time>"), `[^,\n]+`,
	)
	var b strings.Builder
	b.WriteString(`\A`)
	for _, l := range lines {
		if l == "…" {
			b.WriteString(`(?:[^\n]*\n)*?`)
			continue
		}
		b.WriteString(placeholders.Replace(regexp.QuoteMeta(l)) + `\n`)
	}
	b.WriteString(`\z`)
	return regexp.MustCompile(b.String())
}

// demoShell runs the steps' command lines as sh would, for the subset
// they use: curl, optionally piped into grep, made in Go; NAME=$(pipeline)
// keeps the pipeline's output (trailing newlines dropped, printing
// nothing) and $NAME outside single quotes expands to it.
type demoShell struct {
	client *http.Client
	vars   map[string]string
}

var assignment = regexp.MustCompile(`\A([A-Za-z_][A-Za-z0-9_]*)=\$\((.*)\)\z`)

// run runs one command line and returns what the shell would print.
func (sh *demoShell) run(line string) (string, error) {
	if m := assignment.FindStringSubmatch(line); m != nil {
		out, err := sh.pipeline(m[2])
		if err != nil {
			return "", err
		}
		sh.vars[m[1]] = strings.TrimRight(out, "\n")
		return "", nil
	}
	return sh.pipeline(line)
}

func (sh *demoShell) pipeline(line string) (string, error) {
	words, err := shellWords(line, sh.vars)
	if err != nil {
		return "", err
	}
	var stages [][]string
	cur := []string{}
	for _, w := range words {
		if w == "|" {
			stages = append(stages, cur)
			cur = []string{}
			continue
		}
		cur = append(cur, w)
	}
	stages = append(stages, cur)
	out, err := runCurl(sh.client, stages[0])
	if err != nil {
		return "", err
	}
	for _, st := range stages[1:] {
		if out, err = runGrep(st, out); err != nil {
			return "", err
		}
	}
	return out, nil
}

// shellWords splits a command line as sh does for the quoting the steps
// use: single quotes, backslash-newline, | as its own word, and $NAME
// (outside quotes) replaced by vars[NAME], which must be set; the steps'
// values hold no blank or glob character, so no field splitting happens.
func shellWords(line string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated quote in %q", line)
			}
			w.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case ch == '\\' && i+1 < len(line) && line[i+1] == '\n':
			i++
		case ch == '$' && i+1 < len(line) && (line[i+1] == '_' || unicode.IsLetter(rune(line[i+1]))):
			j := i + 1
			for j < len(line) && (line[j] == '_' || unicode.IsLetter(rune(line[j])) || unicode.IsDigit(rune(line[j]))) {
				j++
			}
			v, ok := vars[line[i+1:j]]
			if !ok {
				return nil, fmt.Errorf("$%s is not set in %q", line[i+1:j], line)
			}
			if strings.ContainsAny(v, " \t\n*?[") {
				return nil, fmt.Errorf("$%s holds %q: a blank or glob character would be split or expanded", line[i+1:j], v)
			}
			w.WriteString(v)
			inWord = true
			i = j - 1
		case ch == '"' || ch == '\\' || ch == '$' || ch == '`' || ch == ';' || ch == '&':
			return nil, fmt.Errorf("unsupported shell syntax %q in %q", ch, line)
		case ch == ' ' || ch == '\t' || ch == '\n':
			flush()
		case ch == '|':
			flush()
			words = append(words, "|")
		default:
			w.WriteByte(ch)
			inWord = true
		}
	}
	flush()
	return words, nil
}

// runCurl makes the request curl would make and returns what it prints.
func runCurl(client *http.Client, args []string) (string, error) {
	if len(args) == 0 || args[0] != "curl" {
		return "", fmt.Errorf("not a curl command: %q", args)
	}
	method, url, body := "", "", ""
	hasBody, include := false, false
	hdr := http.Header{}
	for i := 1; i < len(args); i++ {
		arg := args[i]
		next := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("curl %s needs a value", arg)
			}
			i++
			return args[i], nil
		}
		var err error
		switch arg {
		case "-s":
		case "-i", "-si":
			include = true
		case "-X":
			method, err = next()
		case "-H":
			var h string
			if h, err = next(); err == nil {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return "", fmt.Errorf("curl -H %q: no colon", h)
				}
				hdr.Add(k, strings.TrimSpace(v))
			}
		case "-d":
			var d string
			if d, err = next(); err == nil {
				if hasBody {
					body += "&" // curl joins several -d with &
				}
				body += d
				hasBody = true
			}
		case "-b":
			var ck string
			if ck, err = next(); err == nil {
				hdr.Set("Cookie", ck)
			}
		default:
			if strings.HasPrefix(arg, "-") || url != "" {
				return "", fmt.Errorf("curl argument %q is not supported", arg)
			}
			url = arg
		}
		if err != nil {
			return "", err
		}
	}
	if method == "" {
		method = http.MethodGet
		if hasBody {
			method = http.MethodPost
		}
	}
	var rd io.Reader
	if hasBody {
		rd = strings.NewReader(body)
		if hdr.Get("Content-Type") == "" {
			hdr.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return "", err
	}
	hdr.Set("User-Agent", "curl/8")
	hdr.Set("Accept", "*/*")
	req.Header = hdr
	res, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	if include {
		fmt.Fprintf(&out, "HTTP/%d.%d %s\n", res.ProtoMajor, res.ProtoMinor, res.Status)
		keys := make([]string, 0, len(res.Header))
		for k := range res.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, v := range res.Header[k] {
				fmt.Fprintf(&out, "%s: %s\n", k, v)
			}
		}
		out.WriteString("\n")
	}
	out.Write(b)
	s := out.String()
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n" // shown on a line of its own
	}
	return s, nil
}

// runGrep filters lines as grep [-i] [-o] [-e pattern]... [pattern] does for
// the patterns the steps use (regular expressions both agree on).
func runGrep(args []string, in string) (string, error) {
	if len(args) == 0 || args[0] != "grep" {
		return "", fmt.Errorf("not a grep command: %q", args)
	}
	fold, only := false, false
	var pats []string
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-i":
			fold = true
		case a == "-o":
			only = true
		case a == "-e" && i+1 < len(args):
			i++
			pats = append(pats, args[i])
		case strings.HasPrefix(a, "-"):
			return "", fmt.Errorf("grep option %q is not supported", a)
		default:
			pats = append(pats, a)
		}
	}
	var res []*regexp.Regexp
	for _, p := range pats {
		if fold {
			p = "(?i)" + p
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return "", err
		}
		res = append(res, re)
	}
	var out strings.Builder
	for _, l := range strings.SplitAfter(in, "\n") {
		l = strings.TrimSuffix(l, "\n")
		if l == "" {
			continue
		}
		for _, re := range res {
			if only {
				for _, m := range re.FindAllString(l, -1) {
					out.WriteString(m + "\n")
				}
				continue
			}
			if re.MatchString(l) {
				out.WriteString(l + "\n")
				break
			}
		}
	}
	return out.String(), nil
}

func TestShellWordsAndGrep(t *testing.T) {
	w, err := shellWords("curl -si -X PUT 'http://a/b' -H 'A: b c' \\\n  -d '{\"x\":1}' | grep -i -e '^HTTP' -e loc", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"curl", "-si", "-X", "PUT", "http://a/b", "-H", "A: b c", "-d", `{"x":1}`, "|", "grep", "-i", "-e", "^HTTP", "-e", "loc"}
	if strings.Join(w, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("shellWords: %q, want %q", w, want)
	}
	if _, err := shellWords(`curl "x"`, nil); err == nil {
		t.Error("double quotes accepted")
	}
	vars := map[string]string{"A": "CRAFT_CSRF_TOKEN=abc", "SP": "a b"}
	w, err = shellWords(`curl -b $A -d 'x=$A' -d y=$A`, vars)
	if err != nil || strings.Join(w, "\x00") != strings.Join([]string{"curl", "-b", "CRAFT_CSRF_TOKEN=abc", "-d", "x=$A", "-d", "y=CRAFT_CSRF_TOKEN=abc"}, "\x00") {
		t.Errorf("shellWords with $A: %q, %v", w, err)
	}
	for _, bad := range []string{`curl $B`, `curl $SP`, `curl $(x)`} {
		if _, err := shellWords(bad, vars); err == nil {
			t.Errorf("shellWords(%q) accepted", bad)
		}
	}
	if m := assignment.FindStringSubmatch(`TA=$(curl -s x | grep -o 'a"[^"]*')`); m == nil || m[1] != "TA" || m[2] != `curl -s x | grep -o 'a"[^"]*'` {
		t.Errorf("assignment: %q", m)
	}
	out, err := runGrep([]string{"grep", "-i", "-e", "^http", "-e", "cache-status"}, "HTTP/1.1 200 OK\nA: b\nCache-Status: hit\n\nbody\n")
	if err != nil || out != "HTTP/1.1 200 OK\nCache-Status: hit\n" {
		t.Errorf("grep: %q, %v", out, err)
	}
	re := outputPattern([]string{`{"purged":<n>}`, "…", "end …"})
	for s, ok := range map[string]bool{
		"{\"purged\":3}\nend x\n":       true,
		"{\"purged\":3}\na\nb\nend x\n": true,
		"{\"purged\":x}\nend x\n":       false,
		"{\"purged\":3}\n":              false,
	} {
		if re.MatchString(s) != ok {
			t.Errorf("outputPattern on %q: %v, want %v", s, !ok, ok)
		}
	}
}
