package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func pngBytes(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCheckAddressRefusesNonPublic(t *testing.T) {
	for _, a := range []string{"127.0.0.1:80", "10.1.2.3:443", "172.16.0.1:80", "192.168.1.1:80", "169.254.169.254:80",
		"100.64.0.1:80", "0.0.0.0:80", "[::1]:80", "[fd00::1]:80", "[fe80::1]:80", "[::ffff:127.0.0.1]:80", "224.0.0.1:80"} {
		if err := checkAddress(a); !errors.Is(err, ErrRefused) {
			t.Errorf("checkAddress(%s) = %v, want refused", a, err)
		}
	}
	for _, a := range []string{"93.184.216.34:443", "[2606:4700::1]:443"} {
		if err := checkAddress(a); err != nil {
			t.Errorf("checkAddress(%s) = %v, want allowed", a, err)
		}
	}
	for _, u := range []string{"file:///etc/passwd", "gopher://x/", "http://user:pw@host/x.png", "http:///x", "://"} {
		if err := CheckURL(u); !errors.Is(err, ErrRefused) {
			t.Errorf("CheckURL(%s) = %v, want refused", u, err)
		}
	}
}

func TestStorePutDedupesBoundsAndRecovers(t *testing.T) {
	dir := t.TempDir()
	img := pngBytes(t)
	s, err := OpenStore(dir, int64(len(img))+10)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Put(bytes.NewReader(img), 1<<20, DefaultTypes)
	if err != nil || obj.Type != "image/png" || obj.Size != int64(len(img)) {
		t.Fatalf("Put = %+v, %v", obj, err)
	}
	// The same content again: one file.
	if again, err := s.Put(bytes.NewReader(img), 1<<20, DefaultTypes); err != nil || again != obj || s.Total() != obj.Size {
		t.Fatalf("second Put = %+v, %v; total %d", again, err, s.Total())
	}
	// Refusals leave no temporary file.
	for _, tc := range []struct {
		body []byte
		want error
	}{
		{[]byte("<html><script>alert(1)</script></html>"), ErrType},
		{append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 100)...), ErrType}, // PNG signature, no image
		{append(append([]byte(nil), img...), make([]byte, 2<<20)...), ErrTooLarge},
	} {
		if _, err := s.Put(bytes.NewReader(tc.body), 1<<20, DefaultTypes); !errors.Is(err, tc.want) {
			t.Fatalf("Put = %v, want %v", err, tc.want)
		}
	}
	other := pngBytes(t)
	other = append(other, 0) // trailing byte: another hash, still a PNG
	if _, err := s.Put(bytes.NewReader(other), 1<<20, DefaultTypes); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("Put past the bound = %v, want ErrStoreFull", err)
	}
	if n, _ := s.Temporaries(); n != 0 {
		t.Fatalf("%d temporary files left", n)
	}
	// A crash's leftover temporary file is removed at open; the total is
	// counted again.
	if err := os.WriteFile(filepath.Join(dir, "tmp", "put-crash"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenStore(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := s2.Temporaries(); n != 0 || s2.Total() != obj.Size {
		t.Fatalf("reopened: %d temporaries, total %d", n, s2.Total())
	}
	// Damage is found on open and the file removed.
	p := filepath.Join(dir, "objects", obj.Hash[:2], obj.Hash)
	if err := os.WriteFile(p, bytes.Repeat([]byte{1}, len(img)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s2.Open(obj.Hash); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open of a damaged file = %v", err)
	}
	if s2.Has(obj.Hash) || s2.Total() != 0 {
		t.Fatal("damaged file kept")
	}
	for _, h := range []string{"", "..", strings.Repeat("A", 64), "../" + obj.Hash[3:]} {
		if _, _, err := s2.Open(h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Open(%q) = %v", h, err)
		}
	}
}

func TestDeriveScalesAndRefusesBombs(t *testing.T) {
	s, err := OpenStore(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewRGBA(image.Rect(0, 0, 100, 50))); err != nil {
		t.Fatal(err)
	}
	src, err := s.Put(&b, 1<<20, DefaultTypes)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Derive(s, src, []int{10, 50, 100, 200})
	if err != nil || len(got) != 2 {
		t.Fatalf("Derive = %v, %v; want the 10 and 50px copies", got, err)
	}
	f, _, err := s.Open(got[50].Hash)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := image.DecodeConfig(f)
	f.Close()
	if err != nil || cfg.Width != 50 || cfg.Height != 25 {
		t.Fatalf("50px copy: %dx%d, %v", cfg.Width, cfg.Height, err)
	}
	// A PNG header declaring 100000x100000 pixels is not decoded.
	var bomb bytes.Buffer
	if err := png.Encode(&bomb, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	raw := bomb.Bytes()
	// IHDR width and height (bytes 16..23), then the chunk's CRC again.
	copy(raw[16:24], []byte{0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0})
	binary.BigEndian.PutUint32(raw[29:33], crc32.ChecksumIEEE(raw[12:29]))
	big, err := s.Put(bytes.NewReader(raw), 1<<20, DefaultTypes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Derive(s, big, []int{10}); !errors.Is(err, ErrType) {
		t.Fatalf("Derive of a 100000x100000 header = %v, want ErrType", err)
	}
}
