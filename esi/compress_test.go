package esi

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func TestCRC32Combine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		a := make([]byte, rng.IntN(5000))
		b := make([]byte, rng.IntN(5000))
		for j := range a {
			a[j] = byte(rng.Uint32())
		}
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		want := crc32.ChecksumIEEE(append(append([]byte(nil), a...), b...))
		if got := crc32Combine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), int64(len(b))); got != want {
			t.Fatalf("combine(%d, %d bytes) = %08x, want %08x", len(a), len(b), got, want)
		}
	}
}

// segmented encodes body's pieces as one stream of coding, half of them
// precompressed (Template.Compress) and half compressed on the fly.
func segmented(t testing.TB, coding string, pieces ...string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	enc, err := newEncoder(&buf, coding)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range pieces {
		body := []byte(s)
		tmpl := Static(body)
		if i%2 == 0 {
			if err := tmpl.Compress(body); err != nil {
				t.Fatal(err)
			}
		}
		for j := range tmpl.Parts {
			enc.part(body, &tmpl.Parts[j])
		}
	}
	if err := enc.close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), strings.Join(pieces, "")
}

func testPieces() []string {
	return []string{
		"<html><head><title>Page</title></head><body>" + strings.Repeat("<p>static part one</p>\n", 200),
		"<form><input type=hidden name=CRAFT_CSRF_TOKEN value=abc></form>",
		"", // an empty fragment
		strings.Repeat("<li>more static text</li>\n", 300),
		"x",
		"</body></html>\n",
	}
}

// TestGzipSegmentsSingleMember: the segmented gzip stream is one member
// (browsers do not all read several) that Go's, klauspost's and the gzip
// tool's decoders read, CRC and ISIZE checked.
func TestGzipSegmentsSingleMember(t *testing.T) {
	gz, want := segmented(t, CodingGzip, testPieces()...)
	zr, err := stdgzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("compress/gzip: %v", err)
	}
	if string(got) != want {
		t.Fatalf("compress/gzip: body differs (%d vs %d bytes)", len(got), len(want))
	}
	// Nothing follows the first member.
	if err := zr.Reset(bytes.NewReader(gz[len(gz):])); err != io.EOF {
		t.Fatalf("after the member: %v, want EOF", err)
	}
	kr, err := kgzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	kr.Multistream(false)
	got, err = io.ReadAll(kr)
	if err != nil || string(got) != want {
		t.Fatalf("klauspost gzip: %v (equal %v)", err, string(got) == want)
	}
	// Trailer damage is detected (the CRC is real).
	bad := append([]byte(nil), gz...)
	bad[len(bad)-8] ^= 1
	zr, _ = stdgzip.NewReader(bytes.NewReader(bad))
	if _, err := io.ReadAll(zr); err == nil {
		t.Fatal("a wrong CRC went unnoticed")
	}
	if gzipTool, err := exec.LookPath("gzip"); err == nil {
		cmd := exec.Command(gzipTool, "-dc")
		cmd.Stdin = bytes.NewReader(gz)
		out, err := cmd.Output()
		if err != nil || string(out) != want {
			t.Fatalf("gzip -dc: %v (equal %v)", err, string(out) == want)
		}
	}
}

// TestZstdFramesConcatenated: concatenated frames are one zstd stream
// (RFC 8878 §3.1), read by klauspost's decoder and the zstd tool.
func TestZstdFramesConcatenated(t *testing.T) {
	zs, want := segmented(t, CodingZstd, testPieces()...)
	dec, err := zstd.NewReader(bytes.NewReader(zs))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	got, err := io.ReadAll(dec)
	if err != nil || string(got) != want {
		t.Fatalf("zstd stream: %v (equal %v)", err, string(got) == want)
	}
	got, err = zstdDecoderForTest.DecodeAll(zs, nil)
	if err != nil || string(got) != want {
		t.Fatalf("zstd DecodeAll: %v", err)
	}
	if tool, err := exec.LookPath("zstd"); err == nil {
		cmd := exec.Command(tool, "-dc")
		cmd.Stdin = bytes.NewReader(zs)
		out, err := cmd.Output()
		if err != nil || string(out) != want {
			t.Fatalf("zstd -dc: %v (equal %v)", err, string(out) == want)
		}
	}
}

var zstdDecoderForTest, _ = zstd.NewReader(nil)

// TestEmptyPage: an empty page is a valid empty stream in every coding.
func TestEmptyPage(t *testing.T) {
	gz, _ := segmented(t, CodingGzip)
	zr, err := stdgzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(zr); err != nil || len(b) != 0 {
		t.Fatalf("gzip: %q %v", b, err)
	}
	zs, _ := segmented(t, CodingZstd)
	if len(zs) == 0 {
		t.Fatal("zstd: no frame")
	}
	if b, err := zstdDecoderForTest.DecodeAll(zs, nil); err != nil || len(b) != 0 {
		t.Fatalf("zstd: %q %v", b, err)
	}
	if tool, err := exec.LookPath("zstd"); err == nil {
		cmd := exec.Command(tool, "-dc")
		cmd.Stdin = bytes.NewReader(zs)
		if out, err := cmd.Output(); err != nil || len(out) != 0 {
			t.Fatalf("zstd -dc: %q %v", out, err)
		}
	}
}

// TestIdentityPieces: identity output is the pieces as they are.
func TestIdentityPieces(t *testing.T) {
	got, want := segmented(t, CodingIdentity, testPieces()...)
	if string(got) != want {
		t.Fatal("identity output differs")
	}
	if _, err := newEncoder(io.Discard, "br"); err == nil {
		t.Fatal("unknown coding accepted")
	}
}

// TestCompressionRatio logs what compressing in segments costs against
// compressing the page in one piece.
func TestCompressionRatio(t *testing.T) {
	pieces := testPieces()
	gz, page := segmented(t, CodingGzip, pieces...)
	zs, _ := segmented(t, CodingZstd, pieces...)
	var whole bytes.Buffer
	w, _ := kgzip.NewWriterLevel(&whole, kgzip.DefaultCompression)
	w.Write([]byte(page))
	w.Close()
	wholeZ := zstdEncoder.EncodeAll([]byte(page), nil)
	t.Logf("page %d bytes: gzip segmented %d vs whole %d; zstd segmented %d vs whole %d",
		len(page), len(gz), whole.Len(), len(zs), len(wholeZ))
	bp := newBenchPage(t)
	var bgz, bzs, bwhole bytes.Buffer
	bp.serve(t, &bgz, CodingGzip)
	bp.serve(t, &bzs, CodingZstd)
	w.Reset(&bwhole)
	w.Write(bp.assembled)
	w.Close()
	t.Logf("benchmark page %d bytes: gzip segmented %d vs whole %d; zstd segmented %d vs whole %d",
		len(bp.assembled), bgz.Len(), bwhole.Len(), bzs.Len(), len(zstdEncoder.EncodeAll(bp.assembled, nil)))
	if len(gz) > whole.Len()*2+200 || len(zs) > len(wholeZ)*2+200 {
		t.Error(fmt.Sprintf("segments much larger than whole: gzip %d/%d zstd %d/%d", len(gz), whole.Len(), len(zs), len(wholeZ)))
	}
}

// newEncoder is an encoder of its own for the tests.
func newEncoder(w io.Writer, coding string) (*encoder, error) {
	e := new(encoder)
	if err := e.init(w, coding); err != nil {
		return nil, err
	}
	return e, nil
}

// TestUncompressedSegments: parts without precompressed forms up to
// maxStoredSegment go out as stored deflate blocks and raw zstd blocks (no
// compression per request), larger ones compressed; every size around the
// framing's boundaries decodes with Go's and klauspost's readers and the
// gzip and zstd tools, between precompressed parts.
func TestUncompressedSegments(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 255, 256, 257, 1000, maxStoredSegment - 1, maxStoredSegment, maxStoredSegment + 1} {
		// Compressible (a repeated word), with a random byte here and
		// there so the framing's every length is tried.
		piece := []byte(strings.Repeat("token ", n/6+1)[:n])
		for i := 0; i < n; i += 97 {
			piece[i] = byte('a' + rng.IntN(26))
		}
		pieces := []string{"<p>before</p>", string(piece), "<p>after</p>"}
		gz, want := segmented(t, CodingGzip, pieces...)
		zr, err := stdgzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		if got, err := io.ReadAll(zr); err != nil || string(got) != want {
			t.Fatalf("%d bytes, gzip: %v (equal %v)", n, err, string(got) == want)
		}
		zs, _ := segmented(t, CodingZstd, pieces...)
		if got, err := zstdDecoderForTest.DecodeAll(zs, nil); err != nil || string(got) != want {
			t.Fatalf("%d bytes, zstd: %v (equal %v)", n, err, string(got) == want)
		}
		for _, tc := range []struct {
			tool string
			in   []byte
		}{{"gzip", gz}, {"zstd", zs}} {
			path, err := exec.LookPath(tc.tool)
			if err != nil {
				continue
			}
			cmd := exec.Command(path, "-dc")
			cmd.Stdin = bytes.NewReader(tc.in)
			if out, err := cmd.Output(); err != nil || string(out) != want {
				t.Fatalf("%d bytes, %s -dc: %v (equal %v)", n, tc.tool, err, string(out) == want)
			}
		}
		// Stored, not compressed, up to the limit: the piece's bytes are
		// in the stream as they are.
		if stored := n <= maxStoredSegment; stored != bytes.Contains(gz, piece) || stored != bytes.Contains(zs, piece) {
			t.Fatalf("%d bytes: stored as is in gzip %v, zstd %v; want %v", n, bytes.Contains(gz, piece), bytes.Contains(zs, piece), stored)
		}
	}
}

// TestCRCShiftKept: a decoded template's parts carry the CRC operator of
// their length, as Compress set it.
func TestCRCShiftKept(t *testing.T) {
	body := []byte(strings.Repeat("<p>static</p>", 100))
	tmpl := Static(body)
	if err := tmpl.Compress(body); err != nil {
		t.Fatal(err)
	}
	b, err := tmpl.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalTemplate(b)
	if err != nil {
		t.Fatal(err)
	}
	want := crcShift(len(body))
	if tmpl.Parts[0].crcOp != want || got.Parts[0].crcOp != want {
		t.Fatalf("crcOp %08x (compressed), %08x (decoded), want %08x", tmpl.Parts[0].crcOp, got.Parts[0].crcOp, want)
	}
}
