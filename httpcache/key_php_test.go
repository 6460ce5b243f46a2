package httpcache

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Key agrees with PHP: for random queries mixing one variable's spellings
// ("a", "a[]", "a[x]", "a.b", "a_b", "a b"...), repeated names and values,
// real PHP's parse_str (the same php_register_variable_ex as $_GET) reads
// the keyed query (what the upstream is sent) exactly as it reads the
// original (variables sorted, as keys always were; each variable's value,
// arrays in order, identical), so a key never stands for two queries PHP
// reads differently.
// Skipped without php (CI installs php-cli).
func TestKeyQueryReadAsPHPReadsTheOriginal(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		if os.Getenv("CRAFTEDGE_CI") != "" {
			t.Fatal("php not installed")
		}
		t.Skip("php not installed")
	}
	names := []string{"a", "a[]", "a[x]", "a[x][]", "a.b", "a_b", "a%20b", "a%5B%5D", "b", "b[]", "[x]", "a%00z", "a[", "a.", "utm_source"}
	values := []string{"1", "2", "", "x%20y"}
	rng := rand.New(rand.NewPCG(1, 2))
	var k KeyRules
	if err := k.Compile(); err != nil {
		t.Fatal(err)
	}
	pairs := make([][2]string, 3000)
	for i := range pairs {
		n := 1 + rng.IntN(6)
		parts := make([]string, n)
		for j := range parts {
			parts[j] = names[rng.IntN(len(names))]
			if rng.IntN(8) != 0 {
				parts[j] += "=" + values[rng.IntN(len(values))]
			}
		}
		q := strings.Join(parts, "&")
		// Tracking parameters are dropped by design: compare without them.
		pairs[i] = [2]string{dropParam(q, "utm_source"), k.Query(q)}
	}
	in, err := json.Marshal(pairs)
	if err != nil {
		t.Fatal(err)
	}
	const script = `$pairs = json_decode(stream_get_contents(STDIN), true);
$out = [];
foreach ($pairs as [$orig, $keyed]) {
    parse_str($orig, $a); parse_str($keyed, $b);
    ksort($a); ksort($b); // the key sorts variables; each one's own order is compared
    $out[] = $a === $b ? null : [json_encode($a), json_encode($b)];
}
echo json_encode($out);`
	cmd := exec.Command(php, "-r", script)
	cmd.Stdin = strings.NewReader(string(in))
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("php: %v", err)
	}
	var out []*[2]string
	if err := json.Unmarshal(outb, &out); err != nil {
		t.Fatalf("php output: %v: %.300s", err, outb)
	}
	bad := 0
	for i, d := range out {
		if d != nil {
			bad++
			if bad <= 10 {
				t.Errorf("?%s: PHP reads %s, but its keyed query ?%s reads %s", pairs[i][0], d[0], pairs[i][1], d[1])
			}
		}
	}
	if len(out) != len(pairs) {
		t.Fatalf("php answered %d of %d", len(out), len(pairs))
	}
}

// dropParam removes the parameters named name from a raw query.
func dropParam(q, name string) string {
	var kept []string
	for _, p := range strings.Split(q, "&") {
		if n, _, _ := strings.Cut(p, "="); n != name {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "&")
}
