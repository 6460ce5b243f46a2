package esi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Content codings WriteTo produces (the names of Accept-Encoding).
const (
	CodingIdentity = ""
	CodingGzip     = "gzip"
	CodingZstd     = "zstd"
)

// How an assembled page is compressed without compressing its static parts
// again per request:
//
//   - zstd: every static part is one complete zstd frame, compressed at
//     store time. Concatenated frames are one valid zstd stream (RFC 8878
//     §3.1: "Zstandard compressed data is made of one or more frames"), so
//     the page is its parts' frames in order, fragments' frames between.
//   - gzip: one gzip member (browsers do not all read multi-member gzip): a
//     10-byte header, then every part's raw deflate data, each compressed
//     independently and ended by a sync flush (an empty non-final stored
//     block, so each segment is byte-aligned and none sets BFINAL), then an
//     empty final stored block, then CRC-32 and ISIZE (RFC 1952 §2.3). The
//     CRC of the whole is combined from the parts' stored CRCs and lengths
//     (crc32Combine, as zlib's crc32_combine), so no byte is read again.
//
// Each segment starts with an empty window, so the page compresses a little
// worse than in one piece (measured in TestCompressionRatio).

var (
	flateWriters = sync.Pool{New: func() any {
		w, _ := flate.NewWriter(io.Discard, flate.DefaultCompression)
		return w
	}}
	zstdEncoder, _ = zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(true))
)

// gzipHeader is a gzip member header: deflate, no flags, no mtime, OS
// unknown (RFC 1952 §2.3).
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// finalBlock is an empty final stored block: BFINAL=1, BTYPE=00, aligned,
// LEN=0, NLEN=0xffff.
var finalBlock = []byte{0x01, 0x00, 0x00, 0xff, 0xff}

// deflateSegment compresses b as a sync-flushed raw deflate segment.
func deflateSegment(b []byte, dst []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	fw := flateWriters.Get().(*flate.Writer)
	defer flateWriters.Put(fw)
	fw.Reset(buf)
	if _, err := fw.Write(b); err != nil {
		return nil, fmt.Errorf("esi: deflating segment: %w", err)
	}
	if err := fw.Flush(); err != nil {
		return nil, fmt.Errorf("esi: deflating segment: %w", err)
	}
	return buf.Bytes(), nil
}

// zstdFrame compresses b as one zstd frame.
func zstdFrame(b []byte, dst []byte) []byte {
	return zstdEncoder.EncodeAll(b, dst)
}

// Compress precomputes, for every static part of t, its deflate segment,
// CRC-32 and zstd frame, from body (the body t was parsed from). Call it
// once at store time; fragments' templates too.
func (t *Template) Compress(body []byte) error {
	if err := t.check(len(body)); err != nil {
		return err
	}
	for i := range t.Parts {
		p := &t.Parts[i]
		if p.Kind != KindStatic || p.Len() == 0 {
			continue
		}
		b := body[p.Start:p.End]
		var err error
		if p.Deflate, err = deflateSegment(b, make([]byte, 0, len(b)/3+16)); err != nil {
			return err
		}
		p.CRC = crc32.ChecksumIEEE(b)
		p.crcOp = crcShift(len(b))
		p.Zstd = zstdFrame(b, make([]byte, 0, len(b)/3+16))
	}
	t.Compressed = true
	return nil
}

// encoder writes an assembled page to w in one content coding.
type encoder struct {
	w      io.Writer
	coding string
	crc    uint32
	size   uint32 // ISIZE: length modulo 2^32
	n      int64  // identity bytes written
	frames int    // zstd frames written
	err    error
	buf    []byte // scratch for the segments of parts without precompressed forms
}

// init readies e to write to w in coding.
func (e *encoder) init(w io.Writer, coding string) error {
	switch coding {
	case CodingIdentity, CodingGzip, CodingZstd:
	default:
		return fmt.Errorf("esi: content coding %q not supported", coding)
	}
	*e = encoder{w: w, coding: coding}
	if coding == CodingGzip {
		e.write(gzipHeader)
	}
	return nil
}

func (e *encoder) write(b []byte) {
	if e.err == nil && len(b) > 0 {
		_, e.err = e.w.Write(b)
	}
}

// part writes body[p.Start:p.End], from its precompressed forms when the
// part has them. A part without them (a private fragment, fetched for this
// request only) is never compressed per request when it is small
// (maxStoredSegment): it goes out as stored deflate blocks or one raw zstd
// block, a copy with a few bytes of framing; a larger one is compressed.
func (e *encoder) part(body []byte, p *Part) {
	if p.Len() == 0 || e.err != nil {
		return
	}
	raw := body[p.Start:p.End]
	switch e.coding {
	case CodingIdentity:
		e.write(raw)
	case CodingGzip:
		seg, crc, op := p.Deflate, p.CRC, p.crcOp
		if len(seg) == 0 {
			if len(raw) <= maxStoredSegment {
				e.buf = appendStoredDeflate(e.buf[:0], raw)
			} else {
				var err error
				if e.buf, err = deflateSegment(raw, e.buf[:0]); err != nil {
					e.err = err
					return
				}
			}
			seg, crc = e.buf, crc32.ChecksumIEEE(raw)
		}
		if op == 0 {
			op = crcShift(len(raw))
		}
		e.write(seg)
		e.crc = multModP(op, e.crc) ^ crc
		e.size += uint32(len(raw))
	case CodingZstd:
		frame := p.Zstd
		if len(frame) == 0 {
			if len(raw) <= maxStoredSegment {
				e.buf = appendRawZstdFrame(e.buf[:0], raw)
			} else {
				e.buf = zstdFrame(raw, e.buf[:0])
			}
			frame = e.buf
		}
		e.write(frame)
		e.frames++
	}
	e.n += int64(len(raw))
}

// maxStoredSegment is the largest part without precompressed forms that is
// written uncompressed inside a compressed response (stored deflate
// blocks, a raw zstd block): private fragments (a CSRF input, "signed in
// as") are this small, and compressing them per request would cost more
// than the bytes it saves. Larger ones are compressed.
const maxStoredSegment = 4 << 10

// appendStoredDeflate appends b to dst as non-final stored deflate blocks
// (RFC 1951 §3.2.4), byte-aligned like a sync-flushed segment: each block
// is a header byte (BFINAL=0, BTYPE=00), LEN, NLEN, then LEN bytes.
func appendStoredDeflate(dst, b []byte) []byte {
	dst = slices.Grow(dst, len(b)+5*(len(b)/0xffff+1))
	for len(b) > 0 {
		n := min(len(b), 0xffff)
		dst = append(dst, 0, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		dst = append(dst, b[:n]...)
		b = b[n:]
	}
	return dst
}

// appendRawZstdFrame appends b (at most maxStoredSegment bytes, more than
// zero) to dst as one zstd frame holding one raw block (RFC 8878 §3.1.1):
// single segment, a 2-byte content size (b's length minus 256, or 1 byte
// under 256 bytes), no checksum.
func appendRawZstdFrame(dst, b []byte) []byte {
	dst = slices.Grow(dst, len(b)+10)
	dst = append(dst, 0x28, 0xb5, 0x2f, 0xfd) // magic, little-endian
	if n := len(b); n < 256 {
		// Single_Segment_Flag, Frame_Content_Size_Flag 0: a 1-byte size.
		dst = append(dst, 0x20, byte(n))
	} else {
		// Single_Segment_Flag, Frame_Content_Size_Flag 1: size - 256 in
		// 2 bytes.
		dst = append(dst, 0x60, byte(n-256), byte((n-256)>>8))
	}
	// Block header: Last_Block, Block_Type 0 (raw), Block_Size.
	h := uint32(len(b))<<3 | 1
	dst = append(dst, byte(h), byte(h>>8), byte(h>>16))
	return append(dst, b...)
}

// close ends the stream (gzip: final block and trailer; zstd: one empty
// frame when the page was empty, as a zstd stream holds at least one).
func (e *encoder) close() error {
	if e.coding == CodingZstd && e.frames == 0 {
		e.write(zstdFrame(nil, nil))
	}
	if e.coding == CodingGzip {
		e.write(finalBlock)
		var trailer [8]byte
		binary.LittleEndian.PutUint32(trailer[:4], e.crc)
		binary.LittleEndian.PutUint32(trailer[4:], e.size)
		e.write(trailer[:])
	}
	return e.err
}

// crc32Combine returns the CRC-32 (IEEE) of A‖B from crc1 = CRC(A),
// crc2 = CRC(B) and len2 = len(B), in O(log len2) (zlib's crc32_combine,
// by multiplication modulo the CRC polynomial).
func crc32Combine(crc1, crc2 uint32, len2 int64) uint32 {
	if len2 <= 0 {
		return crc1
	}
	return multModP(x2nModP(len2, 3), crc1) ^ crc2
}

// crcShift is the operator crc32Combine multiplies by for a part of n
// bytes (x^(8n) modulo the polynomial, never zero), kept with a
// precompressed part (Part.crcOp) so a hit combines each part's CRC in one
// multiplication. n == 0 gives x^0, the identity.
func crcShift(n int) uint32 {
	return x2nModP(int64(n), 3)
}

const crcPoly = 0xedb88320 // reflected IEEE polynomial

// multModP multiplies a and b modulo the CRC polynomial (reflected).
func multModP(a, b uint32) uint32 {
	m := uint32(1) << 31
	var p uint32
	for {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				break
			}
		}
		m >>= 1
		if b&1 != 0 {
			b = b>>1 ^ crcPoly
		} else {
			b >>= 1
		}
	}
	return p
}

// x2nTable[k] is x^(2^k) modulo the polynomial.
var x2nTable = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for n := 1; n < 32; n++ {
		p = multModP(p, p)
		t[n] = p
	}
	return t
}()

// x2nModP returns x^(n·2^k) modulo the polynomial.
func x2nModP(n int64, k uint) uint32 {
	p := uint32(1) << 31 // x^0
	for n != 0 {
		if n&1 != 0 {
			p = multModP(x2nTable[k&31], p)
		}
		n >>= 1
		k++
	}
	return p
}
