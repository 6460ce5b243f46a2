<?php

declare(strict_types=1);

namespace craftedge\craft\tests\e2e;

use craftedge\craft\core\HealthClient;
use craftedge\craft\core\PurgeClient;
use craftedge\craft\core\PurgeQueue;
use craftedge\craft\core\TagEncoder;
use craftedge\craft\core\TagHeader;

/**
 * The plugin's tags, purge client and status client against a real
 * craftedge binary (craftedge_purge, craftedge_status) in front of a
 * tagged PHP origin.
 */
final class PurgeEndToEndTest extends EndToEndTestCase
{
    /** @var list<array{0: string, 1: string, 2: array}> */
    private array $logs = [];
    /** @var list<int> */
    private array $sleeps = [];

    private function client(string $url, string $secret = Craftedge::PURGE_SECRET, ?callable $clock = null, array $options = []): PurgeClient
    {
        return new PurgeClient(
            $url,
            $secret,
            function (string $level, string $msg, array $ctx): void {
                $this->logs[] = [$level, $msg, $ctx];
            },
            $options + ['timeout' => 5.0],
            function (int $us): void {
                $this->sleeps[] = $us;
            },
            $clock,
        );
    }

    private function cacheStatus(string $path): string
    {
        $r = self::$ce->request('GET', $path);
        self::assertSame(200, $r['status'], "GET $path: " . $r['body']);
        return $r['headers']['cache-status'] ?? '';
    }

    private function assertHit(string $path): void
    {
        $cs = $this->cacheStatus($path);
        self::assertMatchesRegularExpression('/craftedge; hit/', $cs, "$path: Cache-Status $cs, want a hit");
    }

    private function assertMiss(string $path): void
    {
        $cs = $this->cacheStatus($path);
        self::assertStringContainsString('fwd=', $cs, "$path: Cache-Status $cs, want a miss");
        self::assertStringNotContainsString('; hit', $cs);
    }

    /** Caches a page: a miss stored, then a hit. */
    private function cache(string $path): void
    {
        $this->cacheStatus($path);
        $this->assertHit($path);
    }

    private function entryTags(int $id): array
    {
        // What Elements::invalidateCachesForElement() fires for a saved entry.
        return (new TagHeader(new TagEncoder()))->purgeTags([
            'element::craft\elements\Entry::*', "element::$id", 'element::craft\elements\Entry::section:1',
        ]);
    }

    public function testTaggedPageIsPurgedThroughCraftedgePurge(): void
    {
        $this->cache('/entry/1');
        $this->cache('/entry/2');
        $r = $this->client(self::$ce->site . '/.craftedge/purge')->purgeTags(array_values(array_diff($this->entryTags(1), ['el:entry:*', 'el:entry:section:1'])));
        self::assertTrue($r->ok(), json_encode($this->logs));
        self::assertSame(1, $r->sent);
        self::assertSame(1, $r->purged);
        self::assertSame([], $this->logs);
        $this->assertMiss('/entry/1');
        $this->assertHit('/entry/2');
    }

    public function testSectionTagPurgesEveryEntryPage(): void
    {
        $this->cache('/entry/3');
        $this->cache('/entry/4');
        $r = $this->client(self::$ce->site . '/.craftedge/purge')->purgeTags($this->entryTags(3));
        self::assertTrue($r->ok());
        $this->assertMiss('/entry/3');
        $this->assertMiss('/entry/4');
    }

    public function testBatchesAreSignedSeparately(): void
    {
        $this->cache('/entry/5');
        $tags = [];
        for ($i = 100; $i < 250; $i++) {
            $tags[] = "el:$i";
        }
        $tags[] = 'el:5';
        $r = $this->client(self::$ce->site . '/.craftedge/purge', options: ['batch_size' => 40])->purgeTags($tags);
        self::assertSame(4, $r->sent);
        self::assertTrue($r->ok());
        $this->assertMiss('/entry/5');
    }

    public function testDefaultBatchesFitCraftedgesBodyLimit(): void
    {
        // 500 tags (the default batch) of up to 256 bytes each are about
        // 130 KB of JSON: more than craftedge_purge's 64 KiB body limit, a
        // 413 that is not retried. Batches are split by size too.
        $this->cache('/entry/10');
        $tags = [];
        for ($i = 0; $i < 499; $i++) {
            $tags[] = sprintf('custom:%03d:', $i) . str_repeat('x', 240);
        }
        $tags[] = 'el:10';
        $r = $this->client(self::$ce->site . '/.craftedge/purge')->purgeTags($tags);
        self::assertTrue($r->ok(), json_encode($this->logs));
        self::assertGreaterThan(1, $r->sent);
        self::assertSame([], $this->logs);
        $this->assertMiss('/entry/10');

        $urls = [];
        for ($i = 0; $i < 300; $i++) {
            $urls[] = self::$ce->site . '/blog/' . str_repeat('p', 300) . "/$i";
        }
        $r = $this->client(self::$ce->site . '/.craftedge/purge')->purgeUrls($urls);
        self::assertTrue($r->ok(), json_encode($this->logs));
        self::assertGreaterThan(1, $r->sent);
    }

    public function testCachePurgeTagResponseHeader(): void
    {
        $this->cache('/entry/6');
        $r = self::$ce->request('POST', '/save/6');
        self::assertSame(200, $r['status']);
        self::assertArrayNotHasKey('cache-purge-tag', $r['headers'], 'craftedge strips Cache-Purge-Tag');
        $this->assertMiss('/entry/6');
    }

    /**
     * A takedown is purged hard (no copy left: the next request is a
     * miss); an ordinary save in craftedge's purge_mode, soft by default
     * (the copy is kept, stale: the next request refreshes it).
     */
    public function testTakedownHeaderPurgesHardSaveSoftly(): void
    {
        $this->cache('/entry/11');
        $r = self::$ce->request('POST', '/takedown/11');
        self::assertSame(200, $r['status']);
        self::assertArrayNotHasKey('cache-purge-tag-hard', $r['headers'], 'craftedge strips Cache-Purge-Tag-Hard');
        self::assertSame('craftedge; fwd=miss; stored', $this->cacheStatus('/entry/11'), 'a takedown leaves no copy');

        $this->cache('/entry/12');
        self::assertSame(200, self::$ce->request('POST', '/save/12')['status']);
        self::assertSame('craftedge; fwd=stale; stored', $this->cacheStatus('/entry/12'), 'a save keeps a stale copy');
    }

    public function testTakedownThroughCraftedgePurgeIsHard(): void
    {
        $this->cache('/entry/13');
        $this->cache('/entry/14');
        $client = $this->client(self::$ce->site . '/.craftedge/purge');
        self::assertTrue($client->purgeTags(['el:13'], PurgeClient::MODE_HARD)->ok(), json_encode($this->logs));
        self::assertTrue($client->purgeTags(['el:14'])->ok(), json_encode($this->logs));
        self::assertSame('craftedge; fwd=miss; stored', $this->cacheStatus('/entry/13'));
        self::assertSame('craftedge; fwd=stale; stored', $this->cacheStatus('/entry/14'));
    }

    public function testQueueFlushSendsTakedownsHard(): void
    {
        $this->cache('/entry/15');
        $this->cache('/entry/16');
        $e = new TagEncoder();
        $q = new PurgeQueue(new TagHeader($e), $e);
        $q->add(['element::15'], true);
        $q->add(['element::16']);
        $r = $q->flush($this->client(self::$ce->site . '/.craftedge/purge'));
        self::assertTrue($r->ok(), json_encode($this->logs));
        self::assertSame(2, $r->sent);
        self::assertTrue($q->isEmpty());
        self::assertSame('craftedge; fwd=miss; stored', $this->cacheStatus('/entry/15'));
        self::assertSame('craftedge; fwd=stale; stored', $this->cacheStatus('/entry/16'));
    }

    public function testForgedSignatureChangesNothing(): void
    {
        $this->cache('/entry/7');
        $forged = 'whsec_' . base64_encode(str_repeat('x', 32));
        $r = $this->client(self::$ce->site . '/.craftedge/purge', $forged)->purgeTags(['el:7']);
        self::assertFalse($r->ok());
        self::assertSame(1, $r->attempts, 'a refused signature is not retried');
        self::assertSame('error', $this->logs[0][0]);
        self::assertSame(401, $this->logs[0][2]['status']);
        $this->assertHit('/entry/7');
    }

    public function testExpiredSignatureChangesNothing(): void
    {
        $this->cache('/entry/8');
        $r = $this->client(self::$ce->site . '/.craftedge/purge', clock: static fn (): int => time() - 3600)->purgeTags(['el:8']);
        self::assertFalse($r->ok());
        self::assertSame(1, $r->attempts);
        self::assertGreaterThanOrEqual(400, $this->logs[0][2]['status']);
        self::assertLessThan(500, $this->logs[0][2]['status']);
        $this->assertHit('/entry/8');
    }

    public function testCraftedgeDownIsRetriedThenLogged(): void
    {
        $down = 'http://127.0.0.1:' . Craftedge::freePort() . '/.craftedge/purge';
        $r = $this->client($down, options: ['max_attempts' => 4, 'backoff_ms' => 100, 'max_backoff_ms' => 250])->purgeTags(['el:1', 'el:2']);
        self::assertFalse($r->ok());
        self::assertSame(4, $r->attempts);
        self::assertSame(2, $r->failedEntries);
        self::assertCount(3, $this->sleeps, 'a backoff between attempts');
        foreach ($this->sleeps as $i => $us) {
            $ceil = min(250, 100 * 2 ** $i) * 1000;
            self::assertGreaterThanOrEqual($ceil / 2, $us);
            self::assertLessThanOrEqual($ceil, $us);
        }
        self::assertSame(['warning', 'warning', 'warning', 'error'], array_column($this->logs, 0));
        self::assertSame(0, $this->logs[3][2]['status']);
        self::assertNotSame('', $this->logs[3][2]['error']);
        self::assertStringContainsString('el:1', $this->logs[3][2]['purge']);
    }

    public function testServerErrorsAreRetried(): void
    {
        $r = $this->client(self::$ce->originUrl . '/fail/503', options: ['max_attempts' => 3])->purgeTags(['el:1']);
        self::assertFalse($r->ok());
        self::assertSame(3, $r->attempts);
        $r = $this->client(self::$ce->originUrl . '/fail/400', options: ['max_attempts' => 3])->purgeTags(['el:1']);
        self::assertSame(1, $r->attempts);
    }

    public function testPurgeAllOfThisInstall(): void
    {
        $this->cache('/entry/9');
        $e = new TagEncoder();
        $r = $this->client(self::$ce->site . '/.craftedge/purge')->purgeTags([$e->siteTag(), $e->overflowTag()]);
        self::assertTrue($r->ok());
        $this->assertMiss('/entry/9');
    }

    public function testHealthFromTheStatusPage(): void
    {
        $h = new HealthClient(self::$ce->site . '/status', Craftedge::STATUS_USER, Craftedge::STATUS_PASSWORD);
        $s = HealthClient::summary($h->status());
        self::assertContains($s['status'], ['green', 'amber', 'red']);
        self::assertSame('craft', $s['upstreams'][0]['name']);
        self::assertSame('closed', $s['upstreams'][0]['breaker']);
        self::assertGreaterThan(0, $s['memory']['maxBytes']);
        self::assertSame([], $h->retryDeadLetters(), 'no dead letters, nothing replayed');
        self::assertSame(0, $h->replay('cdn.purge'), 'the CSRF handshake of the status page works');

        $this->expectExceptionMessageMatches('/answered 401/');
        (new HealthClient(self::$ce->site . '/status', 'editor', 'wrong'))->status();
    }
}
