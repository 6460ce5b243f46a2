package pagecache

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// fastGzipWriters compress at gzip's best speed (level 1): about three
// times faster than the store path's default level on Craft-like pages,
// for an answer about a tenth larger, until the page is stored again.
var fastGzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

// The warm start refills the memory tier from snapshots, which keep the
// zstd variant only: it restores the identity body and compresses the
// gzip variant again, into buffers it reuses from one entry to the next
// (Cache.Set copies what it stores), so a refill of thousands of entries
// leaves little garbage to collect while requests are served.

// RestoreBodyInto is RestoreBody decompressing into buf (reused: its
// contents are replaced); it returns the buffer, grown if needed, which
// e.Body aliases until the next use.
func RestoreBodyInto(e *Entry, buf []byte) ([]byte, error) {
	if e.Flags&FlagBodyInZstd == 0 || e.Body != nil {
		return buf, nil
	}
	b, err := zstdDecoder.DecodeAll(e.Zstd, buf[:0])
	if err != nil {
		return buf, fmt.Errorf("pagecache: restoring body: %w", err)
	}
	e.Body = b
	return b, nil
}

// CompressGzip fills e.Gzip from e.Body, as CompressVariants does but at
// gzip's best speed (see fastGzipWriters), leaving e.Zstd as it is (a
// snapshot's), writing into buf (reset first): e.Gzip aliases buf until
// its next use. The variant is dropped when it does not make the body
// smaller.
func CompressGzip(e *Entry, buf *bytes.Buffer) error {
	if len(e.Body) < MinCompressSize {
		return nil
	}
	return gzipVariant(e, &fastGzipWriters, buf)
}
