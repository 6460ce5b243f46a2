package media

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"strings"

	"golang.org/x/image/draw"
)

// MaxDerivePixels bounds the pixels of an image Derive decodes (a small
// file may declare a huge canvas: a decompression bomb).
const MaxDerivePixels = 40_000_000

// Derive stores scaled-down copies of the stored image src, one per width
// below src's own (same aspect ratio, Catmull-Rom), as JPEG for a JPEG
// source and PNG otherwise. It returns them by width. An image larger than
// MaxDerivePixels is an error matching ErrType; ErrStoreFull and
// ErrNoSpace come from Put.
func Derive(s *Store, src Object, widths []int) (map[int]Object, error) {
	if !strings.HasPrefix(src.Type, "image/") || len(widths) == 0 {
		return nil, nil
	}
	f, _, err := s.Open(src.Hash)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrType, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > MaxDerivePixels {
		return nil, fmt.Errorf("%w: %dx%d image: too many pixels to resize (at most %d)", ErrType, cfg.Width, cfg.Height, MaxDerivePixels)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	img, _, err := image.Decode(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%w: decoding: %v", ErrType, err)
	}
	out := map[int]Object{}
	b := img.Bounds()
	for _, w := range widths {
		if w <= 0 || w >= b.Dx() {
			continue
		}
		h := max(1, b.Dy()*w/b.Dx())
		dst := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.CatmullRom.Scale(dst, dst.Bounds(), img, b, draw.Over, nil)
		var buf bytes.Buffer
		typ := "image/png"
		if src.Type == "image/jpeg" {
			typ = "image/jpeg"
			err = jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 85})
		} else {
			err = png.Encode(&buf, dst)
		}
		if err != nil {
			return nil, fmt.Errorf("media: encoding the %dpx copy of %s: %w", w, src.Hash, err)
		}
		obj, err := s.Put(&buf, int64(buf.Len()), []string{typ})
		if err != nil {
			return nil, fmt.Errorf("media: storing the %dpx copy of %s: %w", w, src.Hash, err)
		}
		out[w] = obj
	}
	return out, nil
}
