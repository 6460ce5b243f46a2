package craft

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/craftedge/craftedge/httpcache"
)

// encodeScript prints, as JSON, what the plugin's TagHeader makes of hostile
// Craft tags: the Cache-Tag value, the tags it meant to send, and the
// Cache-Purge-Tag value and purge tags for the same Craft tags.
const encodeScript = `<?php
require 'tests/bootstrap.php';
use craftedge\craft\core\PurgeQueue;
use craftedge\craft\core\TagEncoder;
use craftedge\craft\core\TagHeader;
$in = json_decode(stream_get_contents(STDIN), true);
$enc = new TagEncoder($in['prefix']);
$h = new TagHeader($enc);
$purge = $h->purgeTags($in['tags']);
[$purgeHeader, $rest] = $h->purgeHeader($purge);
$q = new PurgeQueue($h, $enc);
$q->add($in['tags'], true);
echo json_encode([
    'takedown_headers' => $q->takeHeaders(),
    'takedown_rest' => array_merge($q->hardTags(), $q->tags()),
    'cache_tag' => $h->cacheTag($in['tags']),
    'want' => array_values(array_unique(array_merge([$enc->siteTag()], $enc->encodeAll($in['tags'])))),
    'overflow' => $enc->overflowTag(),
    'purge' => $purge,
    'purge_header' => $purgeHeader,
    'purge_rest' => $rest,
]);
`

type encoded struct {
	CacheTag    string   `json:"cache_tag"`
	Want        []string `json:"want"`
	Overflow    string   `json:"overflow"`
	Purge       []string `json:"purge"`
	PurgeHeader string   `json:"purge_header"`
	PurgeRest   []string `json:"purge_rest"`
	// What a takedown of the same Craft tags sends: response headers by
	// name, and what is left for the purge endpoint.
	TakedownHeaders map[string]string `json:"takedown_headers"`
	TakedownRest    []string          `json:"takedown_rest"`
}

func encodeTags(t *testing.T, prefix string, tags []string) encoded {
	t.Helper()
	php, err := exec.LookPath("php")
	if err != nil {
		if os.Getenv("CRAFTEDGE_CI") != "" {
			t.Fatalf("php is not installed; CI must run the plugin's PHP tests: %s", install)
		}
		t.Skipf("php is not installed; install it with: %s", install)
	}
	in, err := json.Marshal(map[string]any{"prefix": prefix, "tags": tags})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(php, "-r", strings.TrimPrefix(encodeScript, "<?php\n"))
	cmd.Stdin = strings.NewReader(string(in))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("php encoding tags: %v\n%s", err, out)
	}
	var e encoded
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatalf("php's answer %q: %v", out, err)
	}
	return e
}

// TestTagsRoundTrip runs craftedge's own Cache-Tag and Cache-Purge-Tag
// parsers (httpcache.ParseTags, SplitTags) on what the PHP encoder makes
// of Craft tags carrying separators, CR/LF, control bytes, non-ASCII and
// over-long names: every tag comes back exactly as the encoder meant it,
// pages and purges agree, and nothing is injected or dropped.
func TestTagsRoundTrip(t *testing.T) {
	hostile := []string{
		"element", "element::42", `element::craft\elements\Entry`, `element::craft\elements\Entry::*`,
		`element::craft\elements\Entry::section:3`, `element::craft\commerce\elements\Product::productType:1`,
		`element::My\Plugin\Thing::group:5`, "custom tag with spaces", "a,b", "x\r\nInjected: 1",
		"tab\there", "ünïcode", "100%", "%2C", "semi;colon", `quote"d`, "nul\x00byte", "\x7fdel",
		strings.Repeat("y", 300), strings.Repeat("é", 200), "   ", "el:42",
	}
	for _, prefix := range []string{"", "prod:"} {
		e := encodeTags(t, prefix, hostile)
		if strings.ContainsAny(e.CacheTag, "\r\n\x00") {
			t.Fatalf("prefix %q: Cache-Tag %q holds CR, LF or NUL", prefix, e.CacheTag)
		}
		h := http.Header{}
		h.Set("Cache-Tag", e.CacheTag)
		got := httpcache.ParseTags(h, httpcache.DefaultTagHeaders)
		if !slices.Equal(got, e.Want) {
			t.Fatalf("prefix %q: craftedge parses\n%q\nwant\n%q", prefix, got, e.Want)
		}
		for _, tag := range got {
			if len(tag) > httpcache.MaxTagLen || !strings.HasPrefix(tag, prefix) {
				t.Errorf("prefix %q: tag %q is over %d bytes or lacks the prefix", prefix, tag, httpcache.MaxTagLen)
			}
		}
		// A save purges what the page carries, by header and by endpoint.
		if purged := httpcache.SplitTags(e.PurgeHeader); !slices.Equal(purged, e.Purge) || len(e.PurgeRest) != 0 {
			t.Fatalf("prefix %q: Cache-Purge-Tag parses as\n%q\nwant\n%q (rest %q)", prefix, purged, e.Purge, e.PurgeRest)
		}
		// A takedown purges the same tags, hard, by its own header only.
		hard, ok := e.TakedownHeaders["Cache-Purge-Tag-Hard"]
		if purged := httpcache.SplitTags(hard); !ok || len(e.TakedownHeaders) != 1 || !slices.Equal(purged, e.Purge) || len(e.TakedownRest) != 0 {
			t.Fatalf("prefix %q: takedown headers %q parse as\n%q\nwant Cache-Purge-Tag-Hard alone with\n%q (rest %q)", prefix, e.TakedownHeaders, purged, e.Purge, e.TakedownRest)
		}
		for _, tag := range e.Want[1:] {
			if !slices.Contains(e.Purge, tag) {
				t.Errorf("prefix %q: page tag %q is not purged by the same Craft tags", prefix, tag)
			}
		}
		if !slices.Contains(e.Purge, e.Overflow) {
			t.Errorf("prefix %q: purges lack the overflow tag %q", prefix, e.Overflow)
		}
	}
}

// TestTagsOverflowRoundTrip: a page with more tags than craftedge keeps
// carries the overflow tag, and craftedge keeps it (first), within its
// MaxTags.
func TestTagsOverflowRoundTrip(t *testing.T) {
	var tags []string
	for i := 0; i < 3000; i++ {
		tags = append(tags, fmt.Sprintf("element::%d", i))
	}
	e := encodeTags(t, "", tags)
	h := http.Header{}
	h.Set("Cache-Tag", e.CacheTag)
	got := httpcache.ParseTags(h, httpcache.DefaultTagHeaders)
	if len(got) == 0 || got[0] != e.Overflow {
		t.Fatalf("the overflowed page's first tag is %q, want %q", got[:1], e.Overflow)
	}
	if len(got) > httpcache.MaxTags || len(e.CacheTag) > 16384 {
		t.Fatalf("%d tags, %d bytes: over craftedge's %d tags or the 16 KiB cap", len(got), len(e.CacheTag), httpcache.MaxTags)
	}
	if !slices.Contains(got, "craft") {
		t.Errorf("the site tag is gone from an overflowed page: %q", got[:3])
	}
}
