// Package media keeps vendor media files (product images, documents) on
// local disk, content-addressed by their SHA-256, for craftedge to serve
// from the edge: a bounded, SSRF-safe downloader (Fetcher), the
// content-addressed file store with a size bound, atomic writes and damage
// detection (Store), and the index of which vendor URL is stored as which
// file, kept in the shared bbolt file (Index). It knows nothing of Caddy.
//
// Files never go into the bbolt file: a 30 MB image would bloat every
// copy-on-write page of it. The index only maps URLs to hashes.
package media
