package pagecache

import (
	"bytes"
	"fmt"

	"github.com/klauspost/compress/gzip"
)

// CompressGzip fills e.Gzip from e.Body, as CompressVariants does, leaving
// e.Zstd as it is: for an entry restored from a snapshot, which keeps its
// zstd variant (the warm start), so only the gzip one is computed again.
// The variant is dropped when it does not make the body smaller.
func CompressGzip(e *Entry) error {
	if len(e.Body) < MinCompressSize {
		return nil
	}
	var buf bytes.Buffer
	buf.Grow(len(e.Body) / 3)
	gw := gzipWriters.Get().(*gzip.Writer)
	gw.Reset(&buf)
	_, err := gw.Write(e.Body)
	if err == nil {
		err = gw.Close()
	}
	gzipWriters.Put(gw)
	if err != nil {
		return fmt.Errorf("gzip-compressing body: %w", err)
	}
	if buf.Len() < len(e.Body) {
		e.Gzip = buf.Bytes()
	}
	return nil
}
