package vendorsim

import (
	"bytes"
	"crypto/sha256"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// RouteMedia is the route of the simulator's media files (on every
// endpoint, under the chaos knobs like the APIs):
//
//	GET /media/<name>.png          a small PNG, the same bytes for the same name
//	GET /media/fake.png            HTML sent as Content-Type: image/png
//	GET /media/large.bin?bytes=N   N bytes (a PNG signature, then zeros),
//	                               streamed without Content-Length and
//	                               never held in memory
//	GET /media/missing.png         404
const RouteMedia = "GET /media/{name}"

// MaxMediaStream bounds large.bin's bytes parameter (4 GiB).
const MaxMediaStream = 4 << 30

// MediaPNG returns the PNG the simulator serves as /media/<name>.
func MediaPNG(name string) []byte {
	sum := sha256.Sum256([]byte(name))
	img := image.NewRGBA(image.Rect(0, 0, 16, 8))
	for y := range 8 {
		for x := range 16 {
			img.Set(x, y, color.RGBA{sum[x%32], sum[(x+y)%32], sum[y], 255})
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// zeroReader reads zeros.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func (e *Endpoint) serveMedia(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	switch {
	case name == "missing.png":
		http.NotFound(w, r)
	case name == "fake.png":
		w.Header().Set("Content-Type", "image/png")
		_, _ = io.WriteString(w, "<!DOCTYPE html><html><body><script>alert(1)</script></body></html>")
	case name == "large.bin":
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n < int64(len(pngSignature)) || n > MaxMediaStream {
			http.Error(w, "bytes must be an integer in 8..4GiB", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		// No Content-Length: the client learns the size only by reading.
		if _, err := w.Write(pngSignature); err != nil {
			return
		}
		_, _ = io.CopyN(w, zeroReader{}, n-int64(len(pngSignature)))
	case strings.HasSuffix(name, ".png"):
		b := MediaPNG(name)
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	default:
		http.NotFound(w, r)
	}
}
