package caddymodule

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/media"
)

// Defaults of the media store.
const (
	defaultMediaDir         = "craftedge-media"
	defaultMediaMaxFileSize = 32 << 20
	defaultMediaMaxTotal    = 1 << 30
	defaultMediaTimeout     = time.Minute
	defaultMediaGCEvery     = time.Hour
	maxMediaWidth           = 8192
)

// MediaConfig configures where and how the media files named by the
// resources' media fields (VendorResource.Media) are downloaded and kept.
// Files are downloaded by media.fetch jobs with a plain HTTP client (no
// vendor credentials, no vendor rate limit or breaker: media URLs are
// usually on a CDN host), stored content-addressed on local disk and
// served by craftedge_records under /vendors/v1/media/<sha256>.
type MediaConfig struct {
	// Dir is the directory of the stored files (not the bbolt file).
	// Default: craftedge-media in Caddy's data directory.
	Dir string `json:"dir,omitempty"`

	// MaxFileSize bounds one file; a larger download is aborted (the
	// temporary file removed) and the job fails permanently. Default
	// 32 MiB.
	MaxFileSize int64 `json:"max_file_size,omitempty"`

	// MaxTotalSize bounds the bytes of all stored files; a download that
	// would exceed it is retried later (the maintenance job removes files
	// no record names any more). Default 1 GiB.
	MaxTotalSize int64 `json:"max_total_size,omitempty"`

	// Timeout bounds one download, headers and body. Default 1m.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Types are the content types accepted, as sniffed from the bytes
	// (http.DetectContentType, then an image's header decoded), never from
	// the sender's Content-Type alone. Default image/jpeg, image/png,
	// image/gif, image/webp.
	Types []string `json:"types,omitempty"`

	// AllowPrivateAddresses lets downloads connect to private, loopback
	// and link-local addresses. Off by default: a media URL is vendor
	// data, and must not make craftedge reach its internal network.
	AllowPrivateAddresses bool `json:"allow_private_addresses,omitempty"`

	// Widths, if set, makes scaled-down copies of every stored image
	// (JPEG, PNG, GIF, WebP) in the same job, one per width in pixels
	// below the image's own, kept beside it and named in read-model answers
	// (MediaRef.Widths). No resizing happens on a visitor's request.
	Widths []int `json:"widths,omitempty"`

	// GCEvery is how often the maintenance job runs: it removes the files
	// no record names any more, checks every stored file's hash and
	// enqueues downloads of named files that are missing. Default 1h.
	GCEvery caddy.Duration `json:"gc_every,omitempty"`
}

// sniffableTypes are the types http.DetectContentType can report that a
// media store may accept (SVG, HTML and other script carriers are not).
var sniffableTypes = []string{"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp",
	"application/pdf", "audio/mpeg", "audio/wave", "video/mp4", "video/webm"}

// applyDefaults fills the defaults and checks the values.
func (c *MediaConfig) applyDefaults() error {
	if c.Dir == "" {
		c.Dir = filepath.Join(caddy.AppDataDir(), defaultMediaDir)
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return fmt.Errorf("media: dir %q: %w", c.Dir, err)
	}
	c.Dir = dir
	if c.MaxFileSize == 0 {
		c.MaxFileSize = defaultMediaMaxFileSize
	}
	if c.MaxTotalSize == 0 {
		c.MaxTotalSize = defaultMediaMaxTotal
	}
	if c.MaxFileSize < 0 || c.MaxTotalSize < 0 {
		return fmt.Errorf("media: sizes must be positive")
	}
	if c.MaxFileSize > c.MaxTotalSize {
		return fmt.Errorf("media: max_file_size (%d) is larger than max_total_size (%d)", c.MaxFileSize, c.MaxTotalSize)
	}
	if c.Timeout == 0 {
		c.Timeout = caddy.Duration(defaultMediaTimeout)
	}
	if c.GCEvery == 0 {
		c.GCEvery = caddy.Duration(defaultMediaGCEvery)
	}
	if c.Timeout < 0 || c.GCEvery < 0 {
		return fmt.Errorf("media: durations must be positive")
	}
	for _, w := range c.Widths {
		if w < 1 || w > maxMediaWidth {
			return fmt.Errorf("media: widths must be in 1..%d, got %d", maxMediaWidth, w)
		}
	}
	if len(c.Types) == 0 {
		c.Types = media.DefaultTypes
	}
	for _, t := range c.Types {
		if !slices.Contains(sniffableTypes, t) {
			return fmt.Errorf("media: type %q cannot be accepted (known by content: %s)", t, strings.Join(sniffableTypes, ", "))
		}
	}
	return nil
}

// unmarshalMedia parses the media block of the global craftedge option:
//
//	media {
//	    dir            <path>
//	    max_file_size  <size>
//	    max_total_size <size>
//	    timeout        <duration>
//	    types          <content type...>
//	    allow_private_addresses
//	    gc_every       <duration>
//	}
func (a *App) unmarshalMedia(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	if a.Media != nil {
		return d.Errf("media is configured twice")
	}
	c := &MediaConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch dir := d.Val(); dir {
		case "dir":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			c.Dir = v
		case "max_file_size", "max_total_size":
			n, err := parseSize(d)
			if err != nil {
				return err
			}
			if dir == "max_file_size" {
				c.MaxFileSize = n
			} else {
				c.MaxTotalSize = n
			}
		case "timeout", "gc_every":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			if dur <= 0 {
				return d.Errf("%s must be positive", dir)
			}
			if dir == "timeout" {
				c.Timeout = dur
			} else {
				c.GCEvery = dur
			}
		case "types":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("types needs at least one content type")
			}
			for _, t := range args {
				if !slices.Contains(sniffableTypes, t) {
					return d.Errf("types: %q cannot be accepted (known by content: %s)", t, strings.Join(sniffableTypes, ", "))
				}
			}
			c.Types = append(c.Types, args...)
			continue
		case "widths":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("widths needs at least one width in pixels")
			}
			for _, a := range args {
				n, err := parseIntValue(d, "widths", a, 1, maxMediaWidth, "")
				if err != nil {
					return err
				}
				c.Widths = append(c.Widths, n)
			}
			continue
		case "allow_private_addresses":
			c.AllowPrivateAddresses = true
		default:
			return d.Errf("unknown media subdirective %q", dir)
		}
		if d.NextArg() {
			return d.Errf("too many arguments to %q", d.Val())
		}
	}
	if c.MaxFileSize > 0 && c.MaxTotalSize > 0 && c.MaxFileSize > c.MaxTotalSize {
		return d.Errf("media: max_file_size is larger than max_total_size")
	}
	a.Media = c
	return nil
}

// checkMediaFields checks a resource's media fields: each a configured
// field, none sensitive (a media file is served to anyone holding its
// hash).
func checkMediaFields(resource string, r *VendorResource) error {
	for _, f := range r.Media {
		if _, ok := r.Fields[f]; !ok {
			return fmt.Errorf("resource %q: media field %q is not a configured field", resource, f)
		}
		if slices.Contains(r.Sensitive, f) {
			return fmt.Errorf("resource %q: field %q cannot be both sensitive and media (media files are served to anyone holding their address)", resource, f)
		}
	}
	return nil
}

// mediaCacheControl is the Cache-Control of a stored media file: its
// address is its content's hash, so it never changes.
const mediaCacheControl = "public, max-age=31536000, immutable"

// setMediaHeaders sets the headers of a stored file's answer. A craftedge
// handler in front keeps no copy (Craftedge-Cache-Control: no-store, which
// it never passes on): the file is on local disk already, and a copy would
// take memory and put it in the bbolt file.
func setMediaHeaders(h http.Header, hash string) {
	h.Set("Craftedge-Cache-Control", "no-store")
	h.Set("ETag", `"`+hash+`"`)
	h.Set("Cache-Control", mediaCacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
}
