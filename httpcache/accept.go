package httpcache

// Content codings PreferredEncoding returns.
const (
	// EncodingZstd is the zstd content coding.
	EncodingZstd = "zstd"
	// EncodingGzip is the gzip content coding.
	EncodingGzip = "gzip"
)

// qUnset marks a coding absent from Accept-Encoding.
const qUnset = -1

// PreferredEncoding picks the content coding to send a client, given its
// Accept-Encoding value: "zstd", "gzip" or "" (identity), among the codings
// available. q-values are honoured in thousandths: q=0 excludes a coding,
// "*" applies to codings not listed, x-gzip counts as gzip, and zstd wins
// over gzip at equal q. Identity is returned when nothing else is
// acceptable (identity;q=0 is ignored) or when the client explicitly rates
// identity above the best available coding. An invalid q-value counts as
// q=0. Names are case-insensitive and whitespace is tolerated. An empty
// value means identity. It does not allocate.
func PreferredEncoding(acceptEncoding string, haveGzip, haveZstd bool) string {
	if !haveGzip && !haveZstd {
		return ""
	}
	qZstd, qGzip, qStar, qIdentity := qUnset, qUnset, qUnset, qUnset
	for s := acceptEncoding; s != ""; {
		var item string
		item, s, _ = cutByte(s, ',')
		coding, params, _ := cutByte(item, ';')
		q := parseQParams(params)
		switch coding = trimOWS(coding); {
		case equalFold(coding, EncodingZstd):
			qZstd = firstQ(qZstd, q)
		case equalFold(coding, EncodingGzip), equalFold(coding, "x-gzip"):
			qGzip = firstQ(qGzip, q)
		case coding == "*":
			qStar = firstQ(qStar, q)
		case equalFold(coding, "identity"):
			qIdentity = firstQ(qIdentity, q)
		}
	}
	effective := func(have bool, q int) int {
		switch {
		case !have:
			return 0
		case q != qUnset:
			return q
		case qStar != qUnset:
			return qStar
		}
		return 0
	}
	z, g := effective(haveZstd, qZstd), effective(haveGzip, qGzip)
	best, coding := z, EncodingZstd
	if g > z {
		best, coding = g, EncodingGzip
	}
	if best == 0 || qIdentity > best {
		return ""
	}
	return coding
}

// firstQ keeps the q-value of a coding's first occurrence.
func firstQ(old, q int) int {
	if old != qUnset {
		return old
	}
	return q
}

// parseQParams returns the q parameter among ";"-separated accept params,
// in thousandths: 1000 when absent, 0 when invalid.
func parseQParams(params string) int {
	for params != "" {
		var p string
		p, params, _ = cutByte(params, ';')
		name, value, _ := cutByte(p, '=')
		if equalFold(trimOWS(name), "q") {
			return parseQValue(trimOWS(value))
		}
	}
	return 1000
}

// parseQValue parses a qvalue (RFC 9110 §12.4.2: "0" to "1" with up to
// three decimals) in thousandths, returning 0 when invalid. Extra decimals
// are tolerated and truncated.
func parseQValue(v string) int {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if v == "" || v[0] != '0' && v[0] != '1' {
		return 0
	}
	q := int(v[0]-'0') * 1000
	if len(v) > 1 {
		if v[1] != '.' {
			return 0
		}
		scale := 100
		for i := 2; i < len(v); i++ {
			c := v[i]
			if c < '0' || c > '9' {
				return 0
			}
			q += int(c-'0') * scale
			scale /= 10
		}
	}
	if q > 1000 {
		return 0
	}
	return q
}
