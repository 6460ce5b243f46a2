package main

import (
	"math/rand/v2"
	"strconv"
)

// The demo origin's content the URL set is built from.
var entrySlugs = []string{"hello-world", "caching", "snapshots", "circuit-breakers", "editors-first"}

// pageURLs returns the paths of n distinct pages of the demo origin in
// popularity order: the home page, the blog index, its entries, then
// products 1..n-7 (the origin must be a demoorigin.NewCatalog of at least
// that many products). n must be at least 8.
func pageURLs(n int) []string {
	urls := []string{"/", "/blog"}
	for _, s := range entrySlugs {
		urls = append(urls, "/blog/"+s)
	}
	for id := 1; len(urls) < n; id++ {
		urls = append(urls, "/products/"+strconv.Itoa(id))
	}
	return urls
}

// zipfPicker draws indexes 0..n-1 with a Zipf distribution: index 0 is the
// most popular, index k has weight proportional to 1/(v+k)^s.
type zipfPicker struct {
	z *rand.Zipf
}

// newZipfPicker returns a picker over n items with exponent s (> 1) and
// v = 1, seeded deterministically.
func newZipfPicker(n int, s float64, seed uint64) *zipfPicker {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &zipfPicker{z: rand.NewZipf(r, s, 1, uint64(n-1))}
}

// Next returns the next index. A picker is not safe for concurrent use.
func (p *zipfPicker) Next() int { return int(p.z.Uint64()) }
