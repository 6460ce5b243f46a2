package caddymodule

import "testing"

// NoteServed is on the hit path: a random number for the 1-in-8 sample,
// and for a sampled hit a hash and an atomic store; no allocation.
func BenchmarkNoteServed(b *testing.B) {
	a := &App{}
	key := "https://www.example.com/blog/2026/a-fairly-long-entry-slug?page=2"
	defer func(m uint32) { servedSampleMask = m }(servedSampleMask)
	for _, c := range []struct {
		name string
		mask uint32
	}{{"sampled-1-in-8", 7}, {"every-hit", 0}} {
		servedSampleMask = c.mask
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					a.NoteServed(key)
				}
			})
		})
	}
}
