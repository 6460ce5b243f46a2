<?php

declare(strict_types=1);

namespace craftedge\craft\tests\e2e;

use craftedge\craft\core\IncludeSigner;
use craftedge\craft\core\PurgeClient;

/**
 * Include URLs through a real craftedge: an ordinary same-site path that
 * craftedge caches (cached fragments, with their own tags) or passes
 * through per request (private fragments); the fragment endpoint refuses
 * unsigned, tampered with and expired URLs (core/FragmentGate.php, used by
 * the plugin's controller and by the test origin alike).
 */
final class FragmentEndToEndTest extends EndToEndTestCase
{
    private static function url(string $kind, array $vars, ?int $now = null): string
    {
        return (new IncludeSigner(Craftedge::INCLUDE_KEY))->url($kind, 'default', '_fragments/latest', $vars, $now ?? time());
    }

    public function testCachedFragmentIsCachedAndPurgedByItsTag(): void
    {
        $url = self::url('c', ['id' => 11]);
        $first = self::$ce->request('GET', $url);
        self::assertSame(200, $first['status'], $first['body']);
        self::assertStringContainsString('fwd=miss', $first['headers']['cache-status'] ?? '');
        $second = self::$ce->request('GET', $url);
        self::assertStringContainsString('; hit', $second['headers']['cache-status'] ?? '');
        self::assertSame($first['body'], $second['body']);
        self::assertSame('noindex', $second['headers']['x-robots-tag'] ?? '');

        $r = (new PurgeClient(self::$ce->site . '/.craftedge/purge', Craftedge::PURGE_SECRET))->purgeTags(['el:11', 'craft:overflow']);
        self::assertTrue($r->ok());
        $third = self::$ce->request('GET', $url);
        // Fetched again: a miss, or (a soft purge, craftedge's default
        // purge_mode) the kept stale copy revalidated.
        self::assertMatchesRegularExpression('/fwd=(miss|stale; stored)/', $third['headers']['cache-status'] ?? '');
        self::assertNotSame($first['body'], $third['body']);
    }

    public function testPrivateFragmentIsNeverStored(): void
    {
        $url = self::url('p', ['id' => 12]);
        $a = self::$ce->request('GET', $url);
        $b = self::$ce->request('GET', $url);
        foreach ([$a, $b] as $r) {
            self::assertSame(200, $r['status'], $r['body']);
            self::assertSame('private, no-store', $r['headers']['cache-control'] ?? '');
            self::assertStringNotContainsString('; hit', $r['headers']['cache-status'] ?? '');
        }
        self::assertNotSame($a['body'], $b['body'], 'rendered for each request');
    }

    public function testPrivateFragmentsFetchedByScriptGetTheVisitorsCookies(): void
    {
        // craftedge sends nothing unkeyed to Craft on a cacheable request,
        // cookies included: through the include path a private fragment is
        // rendered without the visitor's cookies. The no-ESI script fetches
        // the controller's action URL instead, which craftedge bypasses.
        $q = (string) parse_url(self::url('p', ['id' => 15]), PHP_URL_QUERY);
        $viaInclude = self::$ce->request('GET', IncludeSigner::PATH . "?$q", ['Cookie: visitor=alice']);
        self::assertStringContainsString('cookie none', $viaInclude['body']);
        $viaAction = self::$ce->request('GET', "/actions/craftedge/fragment/render?$q", ['Cookie: visitor=alice']);
        self::assertSame(200, $viaAction['status'], $viaAction['body']);
        self::assertStringContainsString('cookie alice', $viaAction['body']);
        self::assertStringContainsString('fwd=bypass', $viaAction['headers']['cache-status'] ?? '');
        self::assertSame('private, no-store', $viaAction['headers']['cache-control'] ?? '');
    }

    public function testRefusedUrlsRenderNothing(): void
    {
        $good = self::url('c', ['id' => 13]);
        parse_str((string) parse_url($good, PHP_URL_QUERY), $q);
        $cases = [
            'unsigned' => array_diff_key($q, ['sig' => 1]),
            'tampered template' => ['template' => '_private/secrets'] + $q,
            'tampered vars' => ['vars' => rtrim(strtr(base64_encode('{"id":14}'), '+/', '-_'), '=')] + $q,
            'private made cached' => ['kind' => 'p'] + $q,
            'extra parameter' => $q + ['x' => '1'],
        ];
        parse_str((string) parse_url(self::url('c', ['id' => 13], time() - 41 * 86400), PHP_URL_QUERY), $expired);
        $cases['expired'] = $expired;
        foreach ($cases as $name => $query) {
            $r = self::$ce->request('GET', IncludeSigner::PATH . '?' . http_build_query($query, '', '&', PHP_QUERY_RFC3986));
            self::assertSame(403, $r['status'], "$name: " . $r['body']);
            self::assertSame('no-store', $r['headers']['cache-control'] ?? '', $name);
            self::assertStringNotContainsString('_fragments', $r['body'], $name);
        }
        self::assertSame(200, self::$ce->request('GET', $good)['status'], 'the untouched URL still works');
    }
}
