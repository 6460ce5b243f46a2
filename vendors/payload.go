package vendors

// DecodePayload decodes a JSON document (a webhook body) keeping numbers
// exact, for PayloadString. Trailing data is an error.
func DecodePayload(data []byte) (any, error) { return decodeJSON(data) }

// PayloadString returns the string or number at a JSON dot
// path of a decoded document, as a string: the same paths and rules as a
// Resource mapping's id and version. It reports false when the path is
// absent, null, or another type.
func PayloadString(doc any, path string) (string, bool) {
	v, ok := lookup(doc, path)
	if !ok || v == nil {
		return "", false
	}
	return scalarString(v)
}
