<?php

declare(strict_types=1);

namespace craftedge\craft\tests\unit;

use craftedge\craft\core\FragmentGate;
use craftedge\craft\core\IncludeHtml;
use craftedge\craft\core\IncludeRefused;
use craftedge\craft\core\IncludeSigner;
use InvalidArgumentException;
use PHPUnit\Framework\TestCase;

final class IncludeTest extends TestCase
{
    private const KEY = 'k3y-of-at-least-thirty-two-bytes!!';
    private const NOW = 1_767_000_000;

    private static function query(string $url): array
    {
        self::assertStringStartsWith('/_craftedge/include?', $url);
        parse_str((string) parse_url($url, PHP_URL_QUERY), $q);
        return $q;
    }

    /** The raw query string of an include URL. */
    private static function raw(string $url): string
    {
        self::assertStringStartsWith('/_craftedge/include?', $url);
        return (string) parse_url($url, PHP_URL_QUERY);
    }

    public function testRoundTrip(): void
    {
        $s = new IncludeSigner(self::KEY);
        $url = $s->url('c', 'default', '_fragments/nav', ['b' => [2, 1], 'a' => 'x y', 'n' => null], self::NOW);
        $got = $s->verify(self::query($url), self::NOW);
        self::assertSame(['kind' => 'c', 'site' => 'default', 'template' => '_fragments/nav', 'vars' => ['a' => 'x y', 'b' => [2, 1], 'n' => null]], $got);
    }

    public function testOneIncludeOneUrl(): void
    {
        $s = new IncludeSigner(self::KEY);
        $a = $s->url('c', 'default', 'nav', ['x' => 1, 'y' => 2], self::NOW);
        self::assertSame($a, $s->url('c', 'default', 'nav', ['y' => 2, 'x' => 1], self::NOW + 60), 'key order and the same day give the same URL');
        self::assertNotSame($a, $s->url('c', 'default', 'nav', ['x' => 1, 'y' => 3], self::NOW));
        self::assertNotSame($a, $s->url('p', 'default', 'nav', ['x' => 1, 'y' => 2], self::NOW));
    }

    public function testTamperedUnsignedExpired(): void
    {
        $s = new IncludeSigner(self::KEY);
        $q = self::query($s->url('p', 'default', '_fragments/hello', ['id' => 5], self::NOW));
        $cases = [
            'template' => ['template' => '_private/secrets'],
            'kind' => ['kind' => 'c'],
            'site' => ['site' => 'other'],
            'vars' => ['vars' => rtrim(strtr(base64_encode('{"id":6}'), '+/', '-_'), '=')],
            'exp' => ['exp' => (string) ((int) $q['exp'] + 86400)],
            'sig' => ['sig' => str_repeat('A', 43)],
        ];
        foreach ($cases as $name => $change) {
            try {
                $s->verify(array_merge($q, $change), self::NOW);
                self::fail("tampered $name accepted");
            } catch (IncludeRefused $e) {
                self::assertSame('bad signature', $e->getMessage(), $name);
            }
        }
        $unsigned = $q;
        unset($unsigned['sig']);
        $this->assertRefused($s, $unsigned, 'missing parameter "sig"');
        $this->assertRefused($s, $q + ['utm_source' => 'x'], 'unexpected parameter "utm_source"');
        $this->assertRefused($s, $q, 'expired', (int) $q['exp'] + 1);
        $this->assertRefused(new IncludeSigner('another-key-of-thirty-two-bytes-long'), $q, 'bad signature');
        $this->assertRefused($s, ['sig' => ['x']] + $q, 'missing parameter "sig"');
    }

    public function testKeyRotation(): void
    {
        $old = new IncludeSigner('old-key-of-at-least-thirty-two-bytes');
        $q = self::query($old->url('c', 'default', 'nav', [], self::NOW));
        $both = new IncludeSigner([self::KEY, 'old-key-of-at-least-thirty-two-bytes']);
        self::assertSame('nav', $both->verify($q, self::NOW)['template']);
        self::assertNotSame($q['sig'], self::query($both->url('c', 'default', 'nav', [], self::NOW))['sig']);
    }

    public function testFromSettings(): void
    {
        $old = 'old-key-of-at-least-thirty-two-bytes';
        self::assertNull(IncludeSigner::fromSettings('', ''));
        // Only the previous key left: nothing is signed with a key on its
        // way out (new pages would embed URLs that die with it).
        self::assertNull(IncludeSigner::fromSettings('', $old));
        $q = self::query((new IncludeSigner($old))->url('c', 'default', 'nav', [], self::NOW));
        $rotated = IncludeSigner::fromSettings(self::KEY, $old);
        self::assertSame('nav', $rotated->verify($q, self::NOW)['template']);
        $signed = self::query($rotated->url('c', 'default', 'nav', [], self::NOW));
        self::assertSame('nav', (new IncludeSigner(self::KEY))->verify($signed, self::NOW)['template'], 'signed with the current key');
        $this->assertRefused(IncludeSigner::fromSettings(self::KEY, ''), $q, 'bad signature');
    }

    public function testBadInput(): void
    {
        $s = new IncludeSigner(self::KEY);
        foreach (['../secrets', '/etc/passwd', 'a//b', 'a b', ''] as $t) {
            try {
                $s->url('c', 'default', $t, [], self::NOW);
                self::fail("template $t accepted");
            } catch (InvalidArgumentException) {
                $this->addToAssertionCount(1);
            }
        }
        foreach ([['o' => new \stdClass()], ['big' => str_repeat('x', 3000)]] as $vars) {
            try {
                $s->url('c', 'default', 'nav', $vars, self::NOW);
                self::fail('vars accepted');
            } catch (InvalidArgumentException) {
                $this->addToAssertionCount(1);
            }
        }
        $this->expectException(InvalidArgumentException::class);
        new IncludeSigner('short');
    }

    public function testFragmentGate(): void
    {
        $s = new IncludeSigner(self::KEY);
        $gate = new FragmentGate($s);
        $q = self::raw($s->url('p', 'default', 'hello', [], self::NOW));
        $ok = $gate->check('GET', $q, 'default', self::NOW);
        self::assertSame(200, $ok['status']);
        self::assertSame('private, no-store', $ok['headers']['Cache-Control']);
        self::assertSame('hello', $ok['include']['template']);
        $cached = $gate->check('HEAD', self::raw($s->url('c', 'default', 'nav', [], self::NOW)), 'default', self::NOW);
        self::assertSame(200, $cached['status']);
        self::assertArrayNotHasKey('Cache-Control', $cached['headers'], 'a cached fragment is tagged and timed like a page');
        $post = $gate->check('POST', $q, 'default', self::NOW);
        self::assertSame([405, 'GET, HEAD', null], [$post['status'], $post['headers']['Allow'], $post['include']]);
        $other = $gate->check('GET', $q, 'de', self::NOW);
        self::assertSame([403, 'no-store', null], [$other['status'], $other['headers']['Cache-Control'], $other['include']]);
        $bad = $gate->check('GET', preg_replace('/template=[^&]*/', 'template=x', $q), 'default', self::NOW);
        self::assertSame([403, 'bad signature'], [$bad['status'], $bad['reason']]);
    }

    public function testGateRefusesDuplicatedAndMangledParameters(): void
    {
        // PHP keeps the last of duplicated parameters and craftedge keys
        // them all: each duplicate would be another cache entry of the same
        // fragment (and a refused duplicate must not be what PHP renders).
        $s = new IncludeSigner(self::KEY);
        $gate = new FragmentGate($s);
        $q = self::raw($s->url('c', 'default', 'nav', ['id' => 1], self::NOW));
        self::assertSame(200, $gate->check('GET', $q, 'default', self::NOW)['status']);
        $cases = [
            $q . '&kind=c' => 'duplicate parameter "kind"',
            'kind=c&' . $q => 'duplicate parameter "kind"',
            $q . '&%6Bind=c' => 'duplicate parameter "kind"',
            $q . '&sig' => 'duplicate parameter "sig"',
            $q . '&kind[]=c' => 'unexpected parameter "kind[]"',
            $q . '&' => 'empty parameter',
            $q . '&x=1' => 'unexpected parameter "x"',
        ];
        foreach ($cases as $query => $why) {
            $r = $gate->check('GET', $query, 'default', self::NOW);
            self::assertSame([403, 'no-store', null, $why], [$r['status'], $r['headers']['Cache-Control'], $r['include'], $r['reason']], $query);
        }
        // The same URL with other (equivalent) percent-encodings and order
        // is still the signed include: craftedge normalizes both in its key.
        $reordered = implode('&', array_reverse(explode('&', str_replace('%2F', '/', $q))));
        self::assertSame(200, $gate->check('GET', $reordered, 'default', self::NOW)['status']);
    }

    public function testNoTrailingNewlineInSignedFields(): void
    {
        // PCRE's "$" matches before a final newline: "nav\n" must not pass
        // for a template (or a site handle), on either side.
        $s = new IncludeSigner(self::KEY);
        foreach ([['default', "nav\n"], ["default\n", 'nav']] as [$site, $template]) {
            try {
                $s->url('c', $site, $template, [], self::NOW);
                self::fail('accepted ' . json_encode([$site, $template]));
            } catch (InvalidArgumentException) {
                $this->addToAssertionCount(1);
            }
        }
    }

    public function testHtml(): void
    {
        $url = '/_craftedge/include?kind=p&site=default&template=a&vars=e30&exp=1&sig=x"<';
        self::assertSame('<esi:include src="/_craftedge/include?kind=p&amp;site=default&amp;template=a&amp;vars=e30&amp;exp=1&amp;sig=x&quot;&lt;" onerror="continue"/>', IncludeHtml::esi($url));
        $js = IncludeHtml::script('/x?a=1&b=</script><script>alert(1)</script>', 'n"1');
        self::assertStringNotContainsString('</script><script>alert', $js);
        self::assertStringContainsString('\u003C/script\u003E', $js);
        self::assertStringContainsString('nonce="n&quot;1"', $js);
        self::assertSame(1, substr_count($js, '</script>'));
        self::assertTrue(IncludeHtml::edgeSupportsEsi('craftedge="ESI/1.0"'));
        self::assertTrue(IncludeHtml::edgeSupportsEsi('abc="ESI/1.0 ESI-Inline/1.0", craftedge="ESI/1.0"'));
        self::assertFalse(IncludeHtml::edgeSupportsEsi(null));
        self::assertFalse(IncludeHtml::edgeSupportsEsi('craftedge="ESI-Inline/1.0"'));
    }

    private function assertRefused(IncludeSigner $s, array $q, string $why, int $now = self::NOW): void
    {
        try {
            $s->verify($q, $now);
            self::fail("accepted, want refused: $why");
        } catch (IncludeRefused $e) {
            self::assertSame($why, $e->getMessage());
        }
    }
}
