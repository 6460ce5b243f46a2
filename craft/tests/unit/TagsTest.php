<?php

declare(strict_types=1);

namespace craftedge\craft\tests\unit;

use craftedge\craft\core\PurgeQueue;
use craftedge\craft\core\TagEncoder;
use craftedge\craft\core\TagHeader;
use InvalidArgumentException;
use PHPUnit\Framework\TestCase;

final class TagsTest extends TestCase
{
    /** Splits a header value the way craftedge does (httpcache/tags.go). */
    private static function craftedgeSplit(string $v): array
    {
        return array_values(array_filter(preg_split('/[,\s]+/', $v), static fn ($t) => $t !== '' && strlen($t) <= 256));
    }

    public function testShapes(): void
    {
        $e = new TagEncoder();
        $cases = [
            'element' => 'el',
            'element::42' => 'el:42',
            'element::craft\elements\Entry' => 'el:entry',
            'element::craft\elements\Entry::*' => 'el:entry:*',
            'element::craft\elements\Entry::section:3' => 'el:entry:section:3',
            'element::craft\elements\Entry::42' => 'el:entry:42',
            'element::craft\elements\Asset::volume:2' => 'el:asset:volume:2',
            'element::craft\elements\Category::group:4' => 'el:category:group:4',
            'element::craft\commerce\elements\Product::productType:2' => 'el:commerce.product:productType:2',
            'element::vendor\plugin\elements\Thing::field:9' => 'el:vendor.plugin.elements.thing:field:9',
            'element::\CRAFT\Elements\ENTRY' => 'el:entry',
            'page' => 'page',
        ];
        foreach ($cases as $in => $want) {
            self::assertSame($want, $e->encode($in), $in);
        }
    }

    public function testPrefix(): void
    {
        $e = new TagEncoder('prod:');
        self::assertSame('prod:el:42', $e->encode('element::42'));
        self::assertSame('prod:craft', $e->siteTag());
        self::assertSame('prod:craft:overflow', $e->overflowTag());
        foreach (['a b', 'a,b', str_repeat('x', 65), "é"] as $bad) {
            try {
                new TagEncoder($bad);
                self::fail("prefix $bad accepted");
            } catch (InvalidArgumentException $ex) {
                self::assertStringContainsString('tag prefix', $ex->getMessage());
            }
        }
    }

    public function testEscapingSurvivesCraftedgeSplit(): void
    {
        $e = new TagEncoder();
        foreach (['a,b', 'with space', "tab\there", 'pct%41', 'ünïcode', "nl\r\nx"] as $raw) {
            $t = $e->encode($raw);
            self::assertSame([$t], self::craftedgeSplit($t), $raw);
            self::assertMatchesRegularExpression('/^[\x21-\x7e]+$/', $t);
            self::assertStringNotContainsString(',', $t);
        }
        self::assertSame('a%2Cb', $e->encode('a,b'));
        self::assertSame('pct%2541', $e->encode('pct%41'));
        self::assertNotSame($e->encode('a,b'), $e->encode('a%2Cb'));
    }

    public function testLongTagsAreHashedDeterministically(): void
    {
        $e = new TagEncoder('p:');
        $long = 'element::craft\elements\Entry::' . str_repeat('x', 400);
        $t = $e->encode($long);
        self::assertLessThanOrEqual(256, strlen($t));
        self::assertMatchesRegularExpression('/^p:h:[0-9a-f]{32}$/', $t);
        self::assertSame($t, $e->encode($long));
        self::assertNotSame($t, $e->encode($long . 'y'));
    }

    public function testDraftsAndRevisionsAreSkipped(): void
    {
        self::assertTrue(TagEncoder::isDraftOrRevisionOnly(['element::craft\elements\Entry::*', 'element::craft\elements\Entry::drafts']));
        self::assertTrue(TagEncoder::isDraftOrRevisionOnly(['element::craft\elements\Entry::revisions']));
        self::assertFalse(TagEncoder::isDraftOrRevisionOnly(['element::craft\elements\Entry::section:3', 'element::7']));
        $q = new PurgeQueue(new TagHeader(new TagEncoder()), new TagEncoder());
        $q->add(['element::craft\elements\Entry::*', 'element::9', 'element::craft\elements\Entry::drafts']);
        self::assertTrue($q->isEmpty());
    }

    public function testCacheTagHeader(): void
    {
        $h = new TagHeader(new TagEncoder());
        $v = $h->cacheTag(['element', 'element::craft\elements\Entry', 'element::5', 'element::5', 'element::craft\elements\Entry::section:1']);
        self::assertSame('craft,el,el:entry,el:5,el:entry:section:1', $v);
        self::assertSame(['craft', 'el', 'el:entry', 'el:5', 'el:entry:section:1'], self::craftedgeSplit($v));
    }

    public function testOverflowByBytes(): void
    {
        $e = new TagEncoder();
        $h = new TagHeader($e, 16384);
        $tags = [];
        for ($i = 0; $i < 900; $i++) {
            $tags[] = "element::craft\\elements\\Entry::relatedTo:" . str_pad((string) $i, 6, '0', STR_PAD_LEFT);
        }
        $v = $h->cacheTag($tags);
        self::assertLessThanOrEqual(16384, strlen($v));
        $got = self::craftedgeSplit($v);
        self::assertSame('craft:overflow', $got[0]);
        self::assertSame('craft', $got[1]);
        self::assertLessThan(901, count($got));
        // Every purge purges the overflow tag, so the page is purged by any save.
        self::assertContains('craft:overflow', $h->purgeTags(['element::77']));
    }

    public function testOverflowByCount(): void
    {
        $h = new TagHeader(new TagEncoder(), 1 << 20);
        $tags = [];
        for ($i = 0; $i < 1200; $i++) {
            $tags[] = "element::$i";
        }
        $got = self::craftedgeSplit($h->cacheTag($tags));
        self::assertCount(TagHeader::MAX_TAGS, $got);
        self::assertSame('craft:overflow', $got[0]);
    }

    public function testNoOverflowWhenItFits(): void
    {
        $h = new TagHeader(new TagEncoder());
        $tags = [];
        for ($i = 0; $i < 998; $i++) {
            $tags[] = "element::$i";
        }
        $got = self::craftedgeSplit($h->cacheTag($tags));
        self::assertCount(999, $got);
        self::assertNotContains('craft:overflow', $got);
    }

    public function testPurgeQueueHeaderAndRest(): void
    {
        $e = new TagEncoder();
        $q = new PurgeQueue(new TagHeader($e, 512), $e);
        $craft = [];
        for ($i = 0; $i < 200; $i++) {
            $craft[] = "element::$i";
        }
        $q->add($craft);
        $all = $q->tags();
        self::assertContains('craft:overflow', $all);
        $header = $q->takeHeader();
        self::assertLessThanOrEqual(512, strlen($header));
        $rest = $q->tags();
        self::assertNotEmpty($rest);
        self::assertSame($all, array_merge(self::craftedgeSplit($header), $rest));
    }
}
