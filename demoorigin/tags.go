package demoorigin

import "strconv"

// Cache tags in the shapes the craftedge Craft plugin sends (craft/README.md
// "What the tags look like", craft/src/core/TagEncoder.php), so the demo
// shows what a real Craft site behind craftedge does. Craft collects
// element cache tags while it renders (the entry matched by the URL, the
// element queries the template runs); the plugin sends them in Cache-Tag,
// with "craft" (every page of the install) first. Element ids are global
// in Craft, so the demo's products (Commerce products) have element ids
// from 101.
const (
	tagSite         = "craft"                             // every page the plugin tags
	tagElement      = "el"                                // any element
	tagEntries      = "el:entry"                          // any entry
	tagBlogSection  = "el:entry:section:1"                // entries of the blog section (id 1)
	tagAnyEntry     = "el:entry:*"                        // entry queries with no narrower tag
	tagEntryType    = "el:entry:entryType:1"              // the blog's entry type (id 1)
	tagProducts     = "el:commerce.product"               // any Commerce product
	tagProductType  = "el:commerce.product:productType:1" // products of product type 1
	tagOverflow     = "craft:overflow"                    // pages whose tags did not fit; every purge purges it
	productIDOffset = 100
)

// entryTag is the tag of one element: el:{element id}.
func entryTag(id int) string { return "el:" + strconv.Itoa(id) }

// productTag is a product's element tag.
func productTag(id int) string { return entryTag(productIDOffset + id) }

// savedEntryTags are the tags the plugin purges when an entry is saved:
// what Craft's Elements::invalidateCachesForElement() invalidates, encoded,
// and the overflow tag.
func savedEntryTags(id int) []string {
	return []string{tagAnyEntry, entryTag(id), tagBlogSection, tagEntryType, tagOverflow}
}
