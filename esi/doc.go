// Package esi is craftedge's edge-side include tier: it parses a response
// body whose trusted upstream opted in (Surrogate-Control: content="ESI/1.0";
// the caller checks the header and removes it) into a Template once, when the
// response is stored, and assembles the page from the stored body and its
// fragments on every hit, in the encoding the client accepts, without
// compressing the static parts again.
//
// The subset supported is the one sites use:
//
//	<esi:include src="/path" alt="/other" onerror="continue"/>
//	<esi:remove> … </esi:remove>   (dropped, with its content)
//	<esi:comment text="…"/>        (dropped)
//	<!--esi … -->                  (the markers dropped, ESI tags inside processed)
//
// Any other esi: element, an unterminated tag, remove or comment, an
// attribute or tag over its limit, or more includes than allowed make Parse
// fail with an error naming the byte offset: the caller should not store the
// page as an ESI template (see docs/guides/esi.md).
//
// # Trust
//
// Parse only ever runs on bodies whose upstream opted in, so the markup is
// the origin's. A page that reflects visitor input unescaped lets the
// visitor write ESI tags, exactly as it lets them write script tags; what
// this package guarantees is that such an include can never leave the
// site: every src and alt goes through a Policy (same scheme and host,
// path-absolute, no reserved prefixes such as the admin and vendor routes),
// and an include the policy refuses is dropped from the output and reported
// in Template.Refused. Protecting the rest of the page from reflected
// markup is the origin's job (escape what you reflect).
//
// # Flow
//
// At store time: OptedIn(Surrogate-Control values), then Compile (Parse
// with a Policy for the page's scheme and host, Template.Compress to
// precompute one deflate segment and one zstd frame per static part,
// Template.MarshalBinary) and keep the bytes beside the entry's body. A
// fragment's response is stored the same way (CompileStatic for a fragment
// that did not opt in), so it is cached compressed as segments too.
//
// At hit time: UnmarshalTemplate, NewAssembly (which starts fetching every
// include in parallel), Assembly.Prepare (which waits for the fragments that
// may be private, so their Set-Cookie can join the page's headers), write
// the headers, then Assembly.WriteTo in the chosen content coding, and
// Assembly.Reports for Cache-Status and logs.
//
// The package knows nothing of Caddy or of the other tiers.
package esi
