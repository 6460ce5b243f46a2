package httpcache

import (
	"bytes"
	"encoding/json"
	"strings"
)

// This file recognises GraphQL operations that must not be cached.

// graphQLRequest is the JSON envelope of a GraphQL-over-HTTP request, read
// as PHP's json_decode does: keys are matched exactly (encoding/json would
// match "QUERY" to a "query" field, PHP does not) and the last of duplicate
// keys wins.
type graphQLRequest = map[string]json.RawMessage

// graphQLQuery returns the "query" string of a decoded request, as Craft
// reads it; ok is false when it is missing or not a string.
func graphQLQuery(req graphQLRequest) (string, bool) {
	raw, found := req["query"]
	if !found {
		return "", false
	}
	var q string
	if err := json.Unmarshal(raw, &q); err != nil {
		return "", false
	}
	return q, true
}

// IsGraphQLMutation reports whether a GraphQL request body must not be
// cached because it may change state: true when the document holds any
// mutation or subscription operation (not only the one named by
// operationName).
//
// body is either a JSON request ({"query": "...", ...}, or a JSON array of
// those for batched requests) or a raw GraphQL document (application/graphql),
// told apart by its first significant byte. The answer errs on the side of
// "not cacheable": malformed JSON, a missing or empty "query", an empty
// batch, an unterminated string or unbalanced brackets all count as a
// mutation. encoding/json is used only here, on the GraphQL path.
func IsGraphQLMutation(body []byte) bool {
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return true
	}
	switch {
	case trimmed[0] == '[':
		return isJSONMutation(trimmed)
	case trimmed[0] == '{' && looksLikeJSONObject(trimmed):
		return isJSONMutation(trimmed)
	}
	return IsGraphQLMutationQuery(string(trimmed))
}

// isJSONMutation reports whether a JSON GraphQL request (an object or a
// batch) may change state or cannot be read as Craft reads it.
func isJSONMutation(body []byte) bool {
	body = bytes.TrimLeft(body, " \t\r\n")
	if len(body) > 0 && body[0] == '[' {
		var batch []graphQLRequest
		if err := json.Unmarshal(body, &batch); err != nil || len(batch) == 0 {
			return true
		}
		for _, req := range batch {
			q, ok := graphQLQuery(req)
			if !ok || IsGraphQLMutationQuery(q) {
				return true
			}
		}
		return false
	}
	var req graphQLRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return true
	}
	q, ok := graphQLQuery(req)
	return !ok || IsGraphQLMutationQuery(q)
}

// GraphQLPostType returns the Content-Type to send upstream for a cacheable
// POST to Craft's GraphQL API, or "" when it must not be cached. Craft reads
// the whole body as the document for application/graphql and the "query"
// body parameter otherwise, parsed by Content-Type: only JSON bodies are
// cached (form and multipart bodies are not keyed the way PHP parses them).
// The type sent upstream is the canonical one, so two requests with the
// same body and key reach Craft identically.
func GraphQLPostType(contentType string, body []byte) string {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	switch mt {
	case "application/json":
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') || isJSONMutation(trimmed) {
			return ""
		}
		return "application/json"
	case "application/graphql":
		if IsGraphQLMutationQuery(string(body)) {
			return ""
		}
		return "application/graphql"
	}
	return ""
}

// looksLikeJSONObject tells a JSON object from a GraphQL shorthand query
// ("{ entries { title } }"), both starting with "{": after the brace, a
// JSON object continues with a string or "}", a GraphQL selection set with
// a name, "..." or a comment.
func looksLikeJSONObject(b []byte) bool {
	rest := bytes.TrimLeft(b[1:], " \t\r\n")
	return len(rest) == 0 || rest[0] == '"' || rest[0] == '}'
}

// IsGraphQLMutationQuery reports whether a GraphQL document (the "query"
// string of a request, e.g. from a GET ?query= parameter) holds a mutation
// or subscription operation. It scans top-level tokens, skipping comments,
// strings, block strings and everything nested in brackets, so field,
// argument and variable names never count. Malformed or empty documents
// (no operation at all, unterminated strings, unbalanced brackets) count as
// mutations, so they are not cached. An operation or fragment itself named
// "mutation" is a harmless false positive.
func IsGraphQLMutationQuery(doc string) bool {
	depth := 0
	var prev byte    // previous significant punctuator, 0 after a name
	defStart := true // at the start of a top-level definition
	sawOperation := false
	for i := 0; i < len(doc); {
		c := doc[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',':
			i++
			continue
		case c == 0xef && len(doc)-i >= 3 && doc[i+1] == 0xbb && doc[i+2] == 0xbf: // BOM
			i += 3
			continue
		case c == '#':
			for i < len(doc) && doc[i] != '\n' && doc[i] != '\r' {
				i++
			}
			continue
		case c == '"':
			end, ok := skipGraphQLString(doc, i)
			if !ok {
				return true
			}
			i = end
			prev = '"'
			continue
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			j := i + 1
			for j < len(doc) && (doc[j] == '_' || 'a' <= doc[j] && doc[j] <= 'z' || 'A' <= doc[j] && doc[j] <= 'Z' || '0' <= doc[j] && doc[j] <= '9') {
				j++
			}
			if depth == 0 && prev != '$' && prev != '@' {
				switch name := doc[i:j]; {
				case name == "mutation" || name == "subscription":
					return true
				case name == "query" && defStart:
					sawOperation = true
				}
				defStart = false
			}
			i = j
			prev = 0
			continue
		case c == '{' || c == '(' || c == '[':
			if c == '{' && depth == 0 && defStart {
				sawOperation = true // shorthand query
			}
			depth++
			defStart = false
		case c == '}' || c == ')' || c == ']':
			depth--
			if depth < 0 {
				return true
			}
			if depth == 0 && c == '}' {
				defStart = true
			}
		}
		prev = c
		i++
	}
	return depth != 0 || !sawOperation
}

// skipGraphQLString returns the index just past the string or block string
// starting at doc[i] (a '"'), and false when it is unterminated.
func skipGraphQLString(doc string, i int) (int, bool) {
	if len(doc)-i >= 3 && doc[i+1] == '"' && doc[i+2] == '"' {
		for j := i + 3; j+2 < len(doc); j++ {
			switch {
			case doc[j] == '\\' && j+3 < len(doc) && doc[j+1:j+4] == `"""`:
				j += 3 // escaped triple quote
			case doc[j] == '"' && doc[j+1] == '"' && doc[j+2] == '"':
				return j + 3, true
			}
		}
		return 0, false
	}
	for j := i + 1; j < len(doc); j++ {
		switch doc[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		case '\n', '\r':
			return 0, false
		}
	}
	return 0, false
}
