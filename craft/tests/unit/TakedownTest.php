<?php

declare(strict_types=1);

namespace craftedge\craft\tests\unit;

use craftedge\craft\core\PurgeQueue;
use craftedge\craft\core\TagEncoder;
use craftedge\craft\core\TagHeader;
use craftedge\craft\core\Takedown;
use PHPUnit\Framework\TestCase;

/**
 * Takedowns (an element disabled, deleted, expired, out of a site) are
 * purged hard; ordinary saves in craftedge's purge_mode.
 */
final class TakedownTest extends TestCase
{
    private const SAVE_42 = ['element::craft\elements\Entry::*', 'element::42', 'element::craft\elements\Entry::section:3'];

    public function testWhatIsATakedown(): void
    {
        foreach (['live', 'enabled', 'active'] as $status) {
            self::assertFalse(Takedown::isTakedown($status, false), "$status is an ordinary save");
            self::assertTrue(Takedown::isTakedown($status, true), "$status, being deleted, is a takedown");
        }
        foreach (['disabled', 'pending', 'expired', 'archived', 'suspended', 'something-new', '', null] as $status) {
            self::assertTrue(Takedown::isTakedown($status, false), var_export($status, true) . ' is a takedown');
        }
    }

    public function testHardWinsOverSoft(): void
    {
        $e = new TagEncoder();
        $q = new PurgeQueue(new TagHeader($e), $e);
        $q->add(self::SAVE_42);
        $q->add(['element::7', 'element::craft\elements\Entry::section:3'], true);
        $q->add(['element::7']); // soft after hard: still hard
        $q->addAll();
        self::assertSame(['el:7', 'el:entry:section:3', 'craft:overflow'], $q->hardTags());
        self::assertSame(['el:entry:*', 'el:42', 'craft'], $q->tags());
        self::assertSame(6, $q->count());
    }

    public function testTakeHeadersTakedownsFirstWithinTheCap(): void
    {
        $e = new TagEncoder();
        $q = new PurgeQueue(new TagHeader($e, 512), $e);
        $soft = [];
        $hard = [];
        for ($i = 0; $i < 100; $i++) {
            $soft[] = "element::$i";
            $hard[] = 'element::' . (1000 + $i);
        }
        $q->add($soft);
        $q->add(array_slice($hard, 0, 20), true);
        $headers = $q->takeHeaders();
        self::assertSame([PurgeQueue::HARD_HEADER, PurgeQueue::HEADER], array_keys($headers));
        self::assertStringContainsString('el:1019', $headers[PurgeQueue::HARD_HEADER]);
        self::assertLessThanOrEqual(512, strlen(implode('', $headers)), 'both headers within the cap');
        self::assertSame([], $q->hardTags(), 'every takedown fit');
        self::assertNotEmpty($q->tags(), 'the rest waits for the purge endpoint');

        // Takedowns alone over the cap: what does not fit waits, and no
        // ordinary header is sent in what is left.
        $q = new PurgeQueue(new TagHeader($e, 512), $e);
        $q->add($soft);
        $q->add($hard, true);
        $headers = $q->takeHeaders();
        self::assertArrayHasKey(PurgeQueue::HARD_HEADER, $headers);
        self::assertNotEmpty($q->hardTags());
        self::assertLessThanOrEqual(512, strlen(implode('', $headers)));
    }

    public function testDraftTakedownsAreSkipped(): void
    {
        $e = new TagEncoder();
        $q = new PurgeQueue(new TagHeader($e), $e);
        $q->add(['element::craft\elements\Entry::*', 'element::9', 'element::craft\elements\Entry::drafts'], true);
        self::assertTrue($q->isEmpty());
    }
}
