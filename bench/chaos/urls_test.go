package main

import (
	"strings"
	"testing"
)

func TestPageURLs(t *testing.T) {
	urls := pageURLs(3000)
	if len(urls) != 3000 || urls[0] != "/" || urls[1] != "/blog" || urls[2] != "/blog/hello-world" ||
		urls[7] != "/products/1" || urls[2999] != "/products/2993" {
		t.Fatalf("urls: %d, %v ... %s", len(urls), urls[:8], urls[len(urls)-1])
	}
	seen := map[string]bool{}
	for _, u := range urls {
		if seen[u] || !strings.HasPrefix(u, "/") {
			t.Fatalf("duplicate or relative URL %q", u)
		}
		seen[u] = true
	}
}

func TestZipfPicker(t *testing.T) {
	const n, draws = 3000, 200000
	p := newZipfPicker(n, 1.1, 42)
	counts := make([]int, n)
	for range draws {
		i := p.Next()
		if i < 0 || i >= n {
			t.Fatalf("index %d out of 0..%d", i, n-1)
		}
		counts[i]++
	}
	// Zipf: popularity falls with rank, the head is heavy, the tail is
	// still visited.
	if !(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[1000]) {
		t.Fatalf("not decreasing: %d %d %d %d", counts[0], counts[1], counts[10], counts[1000])
	}
	// With s=1.1, v=1: P(0)/P(1) = 2^1.1 ≈ 2.14.
	if r := float64(counts[0]) / float64(counts[1]); r < 1.9 || r > 2.4 {
		t.Fatalf("count[0]/count[1] = %.2f, want about 2.14", r)
	}
	distinct := 0
	for _, c := range counts {
		if c > 0 {
			distinct++
		}
	}
	if distinct < n/3 {
		t.Fatalf("only %d of %d URLs drawn", distinct, n)
	}
	// Deterministic for a seed.
	a, b := newZipfPicker(n, 1.1, 7), newZipfPicker(n, 1.1, 7)
	for range 100 {
		if a.Next() != b.Next() {
			t.Fatal("same seed, different sequence")
		}
	}
}
