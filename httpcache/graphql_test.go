package httpcache

import "testing"

func TestIsGraphQLMutation(t *testing.T) {
	tests := []struct {
		name string
		body string
		want bool
	}{
		{"json query", `{"query":"{ entries { title } }"}`, false},
		{"json named query", `{"query":"query Q($id: [QueryArgument]) { entry(id: $id) { title } }","variables":{"id":1}}`, false},
		{"json mutation", `{"query":"mutation { save_blog_Entry(title: \"x\") { id } }"}`, true},
		{"json subscription", `{"query":"subscription { x }"}`, true},
		{"json leading space", " \n\t{\"query\": \"{ a }\"}", false},
		{"json bom", "\xef\xbb\xbf{\"query\": \"{ a }\"}", false},
		{"json operationName selects query but doc has mutation", `{"query":"query A { a } mutation B { b }","operationName":"A"}`, true},
		{"json malformed", `{"query": "{ a }"`, true},
		{"json missing query", `{"variables": {}}`, true},
		{"json query not string", `{"query": 5}`, true},
		{"json empty object", `{}`, true},
		{"json empty query", `{"query": ""}`, true},
		{"batch queries", `[{"query":"{ a }"},{"query":"query { b }"}]`, false},
		{"batch with mutation", `[{"query":"{ a }"},{"query":"mutation { b }"}]`, true},
		{"batch empty", `[]`, true},
		{"batch malformed", `[{"query":"{ a }"}`, true},
		{"batch missing query", `[{"x":1}]`, true},
		{"raw shorthand", `{ entries { title } }`, false},
		{"raw shorthand comment", "{ # comment\n entries { title } }", false},
		{"raw mutation", "mutation { x }", true},
		{"empty", "", true},
		{"whitespace", "  \n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsGraphQLMutation([]byte(tt.body)); got != tt.want {
				t.Errorf("IsGraphQLMutation(%q) = %v, want %v", tt.body, got, tt.want)
			}
		})
	}
}

func TestIsGraphQLMutationQuery(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want bool
	}{
		{"shorthand", "{ entries { title } }", false},
		{"query", "query { entries { title } }", false},
		{"named query vars", "query Q($mutation: Boolean = true) @live(if: mutation) { mutation: entries { mutation } }", false},
		{"field named mutation", "{ mutation subscription { mutation } }", false},
		{"mutation", "mutation Save { save(a: 1) { id } }", true},
		{"subscription", "subscription { onSave { id } }", true},
		{"leading comment", "# mutation in a comment\nquery { a }", false},
		{"comment then mutation", "# hi\n  mutation { a }", true},
		{"fragment first", "fragment F on Entry { title }\nquery { entries { ...F } }", false},
		{"fragment then mutation", "fragment F on Entry { title }\nmutation { save { ...F } }", true},
		{"fragment on Mutation type", "fragment F on Mutation { title }\nquery { a }", false},
		{"second operation mutation", "query A { a }\nmutation B { b }", true},
		{"commas ignored", ",,query,{a}", false},
		{"string with brace", `query { a(x: "}") { b } }`, false},
		{"string with escaped quote", `query { a(x: "\"}mutation") { b } }`, false},
		{"block string", "query { a(x: \"\"\"} mutation \\\"\"\" {\"\"\") { b } }", false},
		{"description then query", "\"\"\"desc\"\"\" query { a }", false},
		{"directive named mutation", "query @mutation { a }", false},
		{"operation named mutation is conservative", "query mutation { a }", true},
		{"unterminated string", `query { a(x: "oops) }`, true},
		{"unterminated block string", `query { a(x: """oops) }`, true},
		{"newline in string", "query { a(x: \"a\nb\") }", true},
		{"unbalanced open", "query { a { b }", true},
		{"unbalanced close", "query { a } }", true},
		{"empty", "", true},
		{"only comment", "# nothing", true},
		{"only fragment", "fragment F on E { a }", true},
		{"keyword case-sensitive", "Mutation { a }", true}, // not an operation at all
		{"bom", "\xef\xbb\xbfquery { a }", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsGraphQLMutationQuery(tt.doc); got != tt.want {
				t.Errorf("IsGraphQLMutationQuery(%q) = %v, want %v", tt.doc, got, tt.want)
			}
		})
	}
}

func TestSkipGraphQLString(t *testing.T) {
	tests := []struct {
		doc    string
		i      int
		want   int
		wantOK bool
	}{
		{`"abc" x`, 0, 5, true},
		{`"a\"b"`, 0, 6, true},
		{`"""a"b"""`, 0, 9, true},
		{`"""a\"""b"""`, 0, 12, true},
		{`""`, 0, 2, true},
		{`"abc`, 0, 0, false},
		{`"""abc""`, 0, 0, false},
	}
	for _, tt := range tests {
		got, ok := skipGraphQLString(tt.doc, tt.i)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("skipGraphQLString(%q, %d) = %d, %v, want %d, %v", tt.doc, tt.i, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestLooksLikeJSONObject(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`{"query":1}`, true},
		{"{ \n \"a\"", true},
		{"{}", true},
		{"{", true},
		{"{ entries }", false},
		{"{ ...F }", false},
		{"{ # c\n a }", false},
	}
	for _, tt := range tests {
		if got := looksLikeJSONObject([]byte(tt.in)); got != tt.want {
			t.Errorf("looksLikeJSONObject(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
