package pagecache

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// MinCompressSize is the smallest body worth storing compressed variants
// for; below it the identity body is served to everyone.
const MinCompressSize = 256

var (
	zstdEncoder, _ = zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true))
	zstdDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(256<<20))
	gzipWriters    = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
		return w
	}}
)

// Compressible reports whether a response with this Content-Type and
// Content-Encoding is worth compressing: textual types, JSON, XML, JS, SVG.
func Compressible(contentType, contentEncoding string) bool {
	if contentEncoding != "" && !strings.EqualFold(contentEncoding, "identity") {
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"):
		return true
	case mt == "application/json", mt == "application/ld+json", mt == "application/graphql-response+json",
		mt == "application/javascript", mt == "application/xml", mt == "application/rss+xml",
		mt == "application/atom+xml", mt == "application/xhtml+xml", mt == "image/svg+xml",
		mt == "application/manifest+json", mt == "application/vnd.api+json":
		return true
	case strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		return true
	}
	return false
}

// CompressVariants fills e.Gzip and e.Zstd from e.Body, once, at store time.
// Variants that do not make the body smaller are dropped.
func CompressVariants(e *Entry) error {
	if len(e.Body) < MinCompressSize {
		return nil
	}
	z := zstdEncoder.EncodeAll(e.Body, make([]byte, 0, len(e.Body)/3))
	if len(z) < len(e.Body) {
		e.Zstd = z
	}
	return gzipVariant(e, &gzipWriters, new(bytes.Buffer))
}

// gzipVariant compresses e.Body into buf (reset first) with a writer from
// writers (a pool of *gzip.Writer at the level wanted) and sets e.Gzip to
// buf's bytes when that makes the body smaller.
func gzipVariant(e *Entry, writers *sync.Pool, buf *bytes.Buffer) error {
	buf.Reset()
	buf.Grow(len(e.Body) / 3)
	gw := writers.Get().(*gzip.Writer)
	gw.Reset(buf)
	_, err := gw.Write(e.Body)
	if err == nil {
		err = gw.Close()
	}
	writers.Put(gw)
	if err != nil {
		return fmt.Errorf("gzip-compressing body: %w", err)
	}
	if buf.Len() < len(e.Body) {
		e.Gzip = buf.Bytes()
	}
	return nil
}

// Decode decompresses an upstream body in the given content coding ("gzip",
// "x-gzip" or "zstd"), refusing to grow past limit bytes. ok is false for
// codings it does not know.
func Decode(coding string, body []byte, limit int) (out []byte, ok bool, err error) {
	switch strings.ToLower(strings.TrimSpace(coding)) {
	case "", "identity":
		return body, true, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, true, fmt.Errorf("reading gzip body: %w", err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
		if err != nil {
			return nil, true, fmt.Errorf("reading gzip body: %w", err)
		}
		if len(out) > limit {
			return nil, true, fmt.Errorf("decoded body exceeds %d bytes", limit)
		}
		return out, true, nil
	case "zstd":
		out, err := zstdDecoder.DecodeAll(body, nil)
		if err != nil {
			return nil, true, fmt.Errorf("reading zstd body: %w", err)
		}
		if len(out) > limit {
			return nil, true, fmt.Errorf("decoded body exceeds %d bytes", limit)
		}
		return out, true, nil
	}
	return nil, false, nil
}
