package esi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Stored template layout (big endian), version 1:
//
//	"ESI" version:u8 flags:u8 bodyLen:u32 parts:u16
//	per part: kind:u8, then
//	  static:  start:u32 end:u32 crc:u32 deflateLen:u32 deflate zstdLen:u32 zstd
//	  include: flags:u8 (1: onerror=continue) srcLen:u16 src altLen:u16 alt
//	checksum:u32 (CRC-32C of everything before it)
//
// The checksum catches damage in storage; the decoder also validates every
// field (ranges in order and within the body, include paths path-absolute)
// so a damaged or forged template is an error, never a panic or a fetch
// from another host.
const (
	templateVersion = 1
	headerLen       = 3 + 1 + 1 + 4 + 2
	flagCompressed  = 1
	includeContinue = 1
	// MaxParts bounds the parts of a stored template.
	MaxParts = 1<<16 - 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadTemplate is returned for bytes that are not a valid stored template
// of this version.
var ErrBadTemplate = errors.New("esi: malformed or foreign stored template")

// MarshalBinary serializes t (without Refused).
func (t *Template) MarshalBinary() ([]byte, error) {
	if len(t.Parts) > MaxParts {
		return nil, fmt.Errorf("esi: %d parts, more than %d", len(t.Parts), MaxParts)
	}
	if t.BodyLen < 0 || uint64(t.BodyLen) > 0xffffffff {
		return nil, fmt.Errorf("esi: body of %d bytes cannot be stored", t.BodyLen)
	}
	size := headerLen + 4
	for i := range t.Parts {
		p := &t.Parts[i]
		size += 1 + 16 + len(p.Deflate) + 4 + len(p.Zstd) + 5 + len(p.Src) + len(p.Alt)
	}
	b := make([]byte, 0, size)
	b = append(b, 'E', 'S', 'I', templateVersion)
	var flags byte
	if t.Compressed {
		flags |= flagCompressed
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint32(b, uint32(t.BodyLen))
	b = binary.BigEndian.AppendUint16(b, uint16(len(t.Parts)))
	for i := range t.Parts {
		p := &t.Parts[i]
		b = append(b, byte(p.Kind))
		switch p.Kind {
		case KindStatic:
			b = binary.BigEndian.AppendUint32(b, uint32(p.Start))
			b = binary.BigEndian.AppendUint32(b, uint32(p.End))
			b = binary.BigEndian.AppendUint32(b, p.CRC)
			b = binary.BigEndian.AppendUint32(b, uint32(len(p.Deflate)))
			b = append(b, p.Deflate...)
			b = binary.BigEndian.AppendUint32(b, uint32(len(p.Zstd)))
			b = append(b, p.Zstd...)
		case KindInclude:
			if len(p.Src) > 0xffff || len(p.Alt) > 0xffff {
				return nil, fmt.Errorf("esi: part %d: include path too long to store", i)
			}
			var f byte
			if p.Continue {
				f |= includeContinue
			}
			b = append(b, f)
			b = binary.BigEndian.AppendUint16(b, uint16(len(p.Src)))
			b = append(b, p.Src...)
			b = binary.BigEndian.AppendUint16(b, uint16(len(p.Alt)))
			b = append(b, p.Alt...)
		default:
			return nil, fmt.Errorf("esi: part %d of unknown kind %d", i, p.Kind)
		}
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return b, nil
}

// UnmarshalTemplate decodes a stored template. Deflate and Zstd segments
// alias b, which must not change afterwards; paths are copied. Any damage
// is an error wrapping ErrBadTemplate.
func UnmarshalTemplate(b []byte) (*Template, error) {
	if len(b) < headerLen+4 || b[0] != 'E' || b[1] != 'S' || b[2] != 'I' {
		return nil, fmt.Errorf("%w: no template header", ErrBadTemplate)
	}
	if b[3] != templateVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrBadTemplate, b[3], templateVersion)
	}
	body := b[:len(b)-4]
	if got, want := crc32.Checksum(body, castagnoli), binary.BigEndian.Uint32(b[len(b)-4:]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, stored %08x", ErrBadTemplate, got, want)
	}
	d := decoder{b: body, off: 4}
	flags := d.u8()
	t := &Template{Compressed: flags&flagCompressed != 0}
	t.BodyLen = int(d.u32())
	n := int(d.u16())
	t.Parts = make([]Part, 0, min(n, (len(body)-headerLen)/6))
	for i := 0; i < n && d.err == nil; i++ {
		p := Part{Kind: Kind(d.u8())}
		switch p.Kind {
		case KindStatic:
			p.Start, p.End = int(d.u32()), int(d.u32())
			p.CRC = d.u32()
			p.Deflate = d.bytes(int(d.u32()))
			p.Zstd = d.bytes(int(d.u32()))
			if t.Compressed && p.End > p.Start && (len(p.Deflate) == 0 || len(p.Zstd) == 0) {
				d.fail("static part %d without its compressed segments", i)
			}
			if len(p.Deflate) > 0 && p.End > p.Start {
				p.crcOp = crcShift(p.End - p.Start)
			}
		case KindInclude:
			p.Continue = d.u8()&includeContinue != 0
			p.Src = string(d.bytes(int(d.u16())))
			p.Alt = string(d.bytes(int(d.u16())))
		default:
			d.fail("part %d of unknown kind %d", i, p.Kind)
		}
		t.Parts = append(t.Parts, p)
	}
	if d.err == nil && d.off != len(body) {
		d.fail("%d trailing bytes", len(body)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	if err := t.check(t.BodyLen); err != nil {
		return nil, err
	}
	return t, nil
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrBadTemplate}, args...)...)
	}
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail("truncated at byte %d", d.off)
		return nil
	}
	v := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.bytes(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.bytes(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}
