package esi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
)

// benchPage is a ~24 KB page with two cached fragments (~1 KB each), all
// stored as the handler would store them: body plus serialized template
// with precompressed segments.
type benchPage struct {
	body, tmpl []byte
	frags      map[string][2][]byte // path -> body, serialized template
	assembled  []byte
}

func newBenchPage(b testing.TB) *benchPage {
	var sb strings.Builder
	sb.WriteString("<!doctype html><html><head><title>Bench</title></head><body>")
	sb.WriteString(`<esi:include src="/_fragments/nav"/>`)
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&sb, "<p class=\"entry-%d\">Paragraph %d of the article body, with some words in it.</p>\n", i%7, i)
	}
	sb.WriteString(`<esi:include src="/_fragments/footer"/></body></html>`)
	page := []byte(sb.String())
	bp := &benchPage{body: page, frags: map[string][2][]byte{}}
	store := func(body []byte) []byte {
		t, err := Parse(body, testPolicy, DefaultLimits())
		if err != nil {
			b.Fatal(err)
		}
		if err := t.Compress(body); err != nil {
			b.Fatal(err)
		}
		enc, err := t.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		return enc
	}
	bp.tmpl = store(page)
	for _, name := range []string{"nav", "footer"} {
		body := []byte("<div class=\"" + name + "\">" + strings.Repeat("<a href=\"/section\">Section</a> ", 30) + "</div>")
		bp.frags["/_fragments/"+name] = [2][]byte{body, store(body)}
	}
	var out bytes.Buffer
	bp.serve(b, &out, CodingIdentity)
	bp.assembled = out.Bytes()
	return bp
}

// serve is the hit path: decode the stored template, assemble with
// fragments decoded from their stored form, write in coding.
func (bp *benchPage) serve(b testing.TB, w io.Writer, coding string) { bp.serveVia(b, w, coding, true) }

// serveVia serves with the fragments found by Lookup (in the caller's
// goroutine) or, lookup false, by Fetch (one goroutine per include).
func (bp *benchPage) serveVia(b testing.TB, w io.Writer, coding string, lookup bool) {
	t, err := UnmarshalTemplate(bp.tmpl)
	if err != nil {
		b.Fatal(err)
	}
	get := func(path string) (Fragment, error) {
		f := bp.frags[path]
		ft, err := UnmarshalTemplate(f[1])
		if err != nil {
			return Fragment{}, err
		}
		return Fragment{Body: f[0], Template: ft, Outcome: OutcomeHit}, nil
	}
	src := Sources{Fetch: func(ctx context.Context, path string, depth int) (Fragment, error) { return get(path) }}
	if lookup {
		src.Lookup = func(path string, depth int) (Fragment, bool) {
			f, err := get(path)
			return f, err == nil
		}
	}
	a, err := NewAssembly(context.Background(), t, bp.body, src, DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Prepare(WaitAll); err != nil {
		b.Fatal(err)
	}
	if _, err := a.Write(w, coding); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAssemble: a hit on a page with two cached fragments, assembled
// and written in each coding from stored segments.
func BenchmarkAssemble(b *testing.B) {
	bp := newBenchPage(b)
	for _, coding := range []string{CodingIdentity, CodingGzip, CodingZstd} {
		b.Run("coding="+name(coding), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bp.assembled)))
			var sink bytes.Buffer
			for b.Loop() {
				sink.Reset()
				bp.serve(b, &sink, coding)
			}
		})
	}
}

// BenchmarkAssembleUnstored: the same page with its two fragments given
// without a template (as private fragments are: fetched for one request,
// never stored, so without precompressed segments), written in each coding:
// their bytes go out as stored deflate blocks and raw zstd blocks, not
// compressed per request.
func BenchmarkAssembleUnstored(b *testing.B) {
	bp := newBenchPage(b)
	t, err := UnmarshalTemplate(bp.tmpl)
	if err != nil {
		b.Fatal(err)
	}
	src := Sources{Fetch: func(ctx context.Context, path string, depth int) (Fragment, error) {
		return Fragment{Body: bp.frags[path][0]}, nil
	}}
	src.Lookup = func(path string, depth int) (Fragment, bool) {
		f, err := src.Fetch(context.Background(), path, depth)
		return f, err == nil
	}
	for _, coding := range []string{CodingIdentity, CodingGzip, CodingZstd} {
		b.Run("coding="+name(coding), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bp.assembled)))
			var sink bytes.Buffer
			for b.Loop() {
				sink.Reset()
				a, err := NewAssembly(context.Background(), t, bp.body, src, DefaultLimits())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := a.Prepare(WaitAll); err != nil {
					b.Fatal(err)
				}
				if _, err := a.Write(&sink, coding); err != nil {
					b.Fatal(err)
				}
				a.Close()
			}
		})
	}
}

// BenchmarkAssembleViaFetch: the same with the fragments returned by
// Fetch (a goroutine per include), as for fragments not in memory.
func BenchmarkAssembleViaFetch(b *testing.B) {
	bp := newBenchPage(b)
	b.Run("coding=gzip", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(bp.assembled)))
		var sink bytes.Buffer
		for b.Loop() {
			sink.Reset()
			bp.serveVia(b, &sink, CodingGzip, false)
		}
	})
}

// BenchmarkPrecompressed: the same assembled bytes served as a plain hit
// serves them, precompressed once (the body write of a plain hit). Both
// benchmarks copy their output into a buffer, as a write to the
// connection's buffer does.
func BenchmarkPrecompressed(b *testing.B) {
	bp := newBenchPage(b)
	var gz bytes.Buffer
	w, _ := kgzip.NewWriterLevel(&gz, kgzip.DefaultCompression)
	w.Write(bp.assembled)
	w.Close()
	variants := map[string][]byte{
		CodingIdentity: bp.assembled,
		CodingGzip:     gz.Bytes(),
		CodingZstd:     zstdEncoder.EncodeAll(bp.assembled, nil),
	}
	for _, coding := range []string{CodingIdentity, CodingGzip, CodingZstd} {
		body := variants[coding]
		b.Run("coding="+name(coding), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bp.assembled)))
			var sink bytes.Buffer
			for b.Loop() {
				sink.Reset()
				sink.Write(body)
			}
		})
	}
}

// BenchmarkAssembleRecompress: the alternative design, assembling in
// identity and compressing the whole page per request.
func BenchmarkAssembleRecompress(b *testing.B) {
	bp := newBenchPage(b)
	b.Run("coding=gzip", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(bp.assembled)))
		zw, _ := kgzip.NewWriterLevel(io.Discard, kgzip.DefaultCompression)
		for b.Loop() {
			zw.Reset(io.Discard)
			bp.serve(b, zw, CodingIdentity)
			zw.Close()
		}
	})
	b.Run("coding=zstd", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(bp.assembled)))
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			bp.serve(b, &buf, CodingIdentity)
			zstdEncoder.EncodeAll(buf.Bytes(), nil)
		}
	})
}

func name(coding string) string {
	if coding == "" {
		return "identity"
	}
	return coding
}
