package media

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	_ "image/gif"  // registers DecodeConfig for image/gif
	_ "image/jpeg" // registers DecodeConfig for image/jpeg
	_ "image/png"  // registers DecodeConfig for image/png
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "golang.org/x/image/webp" // registers DecodeConfig for image/webp
)

// Errors of the store and the fetcher. Callers match them with errors.Is.
var (
	// ErrTooLarge: the file is larger than the per-file bound.
	ErrTooLarge = errors.New("media: file larger than the size bound")
	// ErrType: the content is not of an allowed type (sniffed from the
	// bytes, never taken from the sender's Content-Type alone).
	ErrType = errors.New("media: content type not allowed")
	// ErrStoreFull: storing the file would exceed the store's size bound.
	ErrStoreFull = errors.New("media: store size bound reached")
	// ErrNoSpace: the disk is full (ENOSPC, EDQUOT).
	ErrNoSpace = errors.New("media: no space left on the disk")
	// ErrDamaged: a stored file no longer has the content its name says;
	// it has been removed.
	ErrDamaged = errors.New("media: stored file damaged")
	// ErrNotFound: no file of that hash is stored.
	ErrNotFound = errors.New("media: not found")
)

// DefaultTypes are the content types a store accepts when none are given:
// raster images a browser shows without running anything. SVG (a script
// carrier) and HTML are never sniffed as these.
var DefaultTypes = []string{"image/jpeg", "image/png", "image/gif", "image/webp"}

// sniffLen is how many leading bytes decide the content type
// (http.DetectContentType reads at most 512).
const sniffLen = 512

// Object is one stored file.
type Object struct {
	// Hash is the SHA-256 of the content, 64 lower-case hex digits.
	Hash string `json:"hash"`
	// Size is the content's length in bytes.
	Size int64 `json:"size"`
	// Type is the content type sniffed from the bytes.
	Type string `json:"type"`
}

// Store is a directory of files named by the SHA-256 of their content:
// objects/<first two hex digits>/<hash>, written to tmp/ first (fsynced,
// then renamed, then the directory fsynced), so a crash leaves either the
// whole file or none. Its total size is bounded. It is safe for concurrent
// use.
type Store struct {
	dir      string
	maxTotal int64

	mu       sync.Mutex
	total    int64
	verified map[string]stamp // hash → the file's size and mtime when its hash was checked
}

type stamp struct {
	size  int64
	mtime time.Time
}

// OpenStore opens (creating) the store in dir, bounded to maxTotal bytes
// (> 0). Temporary files a crash left behind are removed; the stored
// files are counted towards the bound.
func OpenStore(dir string, maxTotal int64) (*Store, error) {
	if maxTotal <= 0 {
		return nil, fmt.Errorf("media: store %s: size bound must be positive, got %d", dir, maxTotal)
	}
	s := &Store{dir: dir, maxTotal: maxTotal, verified: map[string]stamp{}}
	for _, d := range []string{s.objectsDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("media: store %s: %w", dir, err)
		}
	}
	tmps, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("media: store %s: %w", dir, err)
	}
	for _, e := range tmps {
		_ = os.Remove(filepath.Join(s.tmpDir(), e.Name()))
	}
	err = filepath.WalkDir(s.objectsDir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if info, err := d.Info(); err == nil {
			s.total += info.Size()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("media: store %s: counting stored files: %w", dir, err)
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) objectsDir() string { return filepath.Join(s.dir, "objects") }
func (s *Store) tmpDir() string     { return filepath.Join(s.dir, "tmp") }

// ValidHash reports whether h is 64 lower-case hex digits.
func ValidHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (s *Store) path(hash string) string {
	return filepath.Join(s.objectsDir(), hash[:2], hash)
}

// Total is the bytes stored.
func (s *Store) Total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// diskError maps a full disk to ErrNoSpace.
func diskError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %v", ErrNoSpace, err)
	}
	return err
}

// Put streams r into the store: at most maxSize bytes (more is ErrTooLarge,
// found while reading, so a huge body never reaches memory or the disk
// beyond the bound), of a type in allowed (sniffed from the first bytes,
// and for images checked by decoding the header: ErrType). The temporary
// file is removed on every error.
func (s *Store) Put(r io.Reader, maxSize int64, allowed []string) (Object, error) {
	br := bufio.NewReaderSize(r, sniffLen)
	head, err := br.Peek(sniffLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return Object{}, err
	}
	ctype, _, _ := strings.Cut(http.DetectContentType(head), ";")
	if !slices.Contains(allowed, ctype) {
		return Object{}, fmt.Errorf("%w: content sniffed as %s", ErrType, ctype)
	}
	f, err := os.CreateTemp(s.tmpDir(), "put-*")
	if err != nil {
		return Object{}, diskError(fmt.Errorf("media: creating a temporary file: %w", err))
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(br, maxSize+1))
	if err != nil {
		return Object{}, diskError(fmt.Errorf("media: writing %s: %w", tmp, err))
	}
	if n > maxSize {
		return Object{}, fmt.Errorf("%w (%d bytes)", ErrTooLarge, maxSize)
	}
	if strings.HasPrefix(ctype, "image/") {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return Object{}, err
		}
		if _, _, err := image.DecodeConfig(bufio.NewReader(f)); err != nil {
			return Object{}, fmt.Errorf("%w: %s header does not decode: %v", ErrType, ctype, err)
		}
	}
	if err := f.Sync(); err != nil {
		return Object{}, diskError(fmt.Errorf("media: syncing %s: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		return Object{}, diskError(fmt.Errorf("media: closing %s: %w", tmp, err))
	}
	obj := Object{Hash: hex.EncodeToString(h.Sum(nil)), Size: n, Type: ctype}
	dst := s.path(obj.Hash)

	s.mu.Lock()
	defer s.mu.Unlock()
	if info, err := os.Stat(dst); err == nil && info.Size() == n {
		done = true
		_ = os.Remove(tmp)
		return obj, nil // the same content is stored already
	}
	if s.total+n > s.maxTotal {
		return Object{}, fmt.Errorf("%w: %d of %d bytes used, this file is %d", ErrStoreFull, s.total, s.maxTotal, n)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return Object{}, diskError(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return Object{}, diskError(fmt.Errorf("media: storing %s: %w", obj.Hash, err))
	}
	done = true
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return Object{}, diskError(fmt.Errorf("media: syncing the directory of %s: %w", obj.Hash, err))
	}
	s.total += n
	return obj, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Open opens the stored file of hash for reading. The first time a file
// is opened (and again whenever its size or modification time changed),
// its content is hashed: a file whose content does not match its name is
// removed and reported as ErrDamaged, never served.
func (s *Store) Open(hash string) (*os.File, os.FileInfo, error) {
	if !ValidHash(hash) {
		return nil, nil, ErrNotFound
	}
	p := s.path(hash)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("media: opening %s: %w", hash, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("media: %s: %w", hash, err)
	}
	st := stamp{size: info.Size(), mtime: info.ModTime()}
	s.mu.Lock()
	ok := s.verified[hash] == st
	s.mu.Unlock()
	if !ok {
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("media: checking %s: %w", hash, err)
		}
		if hex.EncodeToString(h.Sum(nil)) != hash {
			f.Close()
			_ = s.Remove(hash)
			return nil, nil, fmt.Errorf("%w: %s (content hash differs; removed)", ErrDamaged, hash)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, nil, err
		}
		s.mu.Lock()
		s.verified[hash] = st
		s.mu.Unlock()
	}
	return f, info, nil
}

// Has reports whether a file of hash is stored (without checking it).
func (s *Store) Has(hash string) bool {
	if !ValidHash(hash) {
		return false
	}
	_, err := os.Stat(s.path(hash))
	return err == nil
}

// Remove deletes the file of hash; a missing file is not an error.
func (s *Store) Remove(hash string) error {
	if !ValidHash(hash) {
		return ErrNotFound
	}
	p := s.path(hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	info, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("media: removing %s: %w", hash, err)
	}
	s.total -= info.Size()
	delete(s.verified, hash)
	return nil
}

// Hashes lists the stored files' hashes.
func (s *Store) Hashes() ([]string, error) {
	var out []string
	err := filepath.WalkDir(s.objectsDir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ValidHash(d.Name()) {
			out = append(out, d.Name())
		}
		return nil
	})
	return out, err
}

// Temporaries counts the temporary files of downloads in progress (or left
// by a crash until the next OpenStore).
func (s *Store) Temporaries() (int, error) {
	es, err := os.ReadDir(s.tmpDir())
	return len(es), err
}
