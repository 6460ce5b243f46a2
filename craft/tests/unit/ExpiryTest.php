<?php

declare(strict_types=1);

namespace craftedge\craft\tests\unit;

use craftedge\craft\core\Expiry;
use InvalidArgumentException;
use PHPUnit\Framework\TestCase;

final class ExpiryTest extends TestCase
{
    public function testOnlyActualExpiriesAreStated(): void
    {
        $x = new Expiry();
        self::assertSame(['CDN-Cache-Control' => 'max-age=120'], $x->headers(120, 86400));
        self::assertSame([], $x->headers(86400, 86400), 'cacheDuration itself is no expiry');
        self::assertSame([], $x->headers(null, 86400));
        self::assertSame([], $x->headers(0, 86400));
        self::assertSame(['CDN-Cache-Control' => 'max-age=90000'], $x->headers(90000, 0), 'no cacheDuration: any duration is an expiry');
    }

    public function testModes(): void
    {
        self::assertSame(['Craftedge-Cache-Control' => 'max-age=60'], (new Expiry('craftedge-cache-control'))->headers(60, 86400));
        self::assertSame(['Cache-Control' => 'public, s-maxage=60, max-age=0, stale-if-error=3600'], (new Expiry('s-maxage', 3600))->headers(60, 86400));
        $this->expectException(InvalidArgumentException::class);
        new Expiry('max-age');
    }

    public function testExistingCacheControl(): void
    {
        $x = new Expiry();
        self::assertSame(['CDN-Cache-Control' => 'max-age=30'], $x->headers(120, 86400, 'public, max-age=30'), '{% expires %} shorter wins');
        self::assertSame(['CDN-Cache-Control' => 'max-age=120'], $x->headers(120, 86400, 'public, max-age=3600'));
        self::assertSame([], $x->headers(120, 86400, 'private, max-age=60'));
        self::assertSame([], $x->headers(120, 86400, 'no-store'));
        self::assertFalse(Expiry::shareable('no-cache, no-store, must-revalidate'));
        self::assertTrue(Expiry::shareable('public, max-age=10'));
        self::assertTrue(Expiry::shareable(null));
    }

    public function testPersonalPagesAreNeverShared(): void
    {
        // A logged-in visitor's page (or one with a PHP session) gets no
        // tags and no shared freshness: the headers of a bypassed response
        // reach a CDN in front of craftedge, which would obey them.
        self::assertSame('private, no-store', Expiry::personalCacheControl(null));
        self::assertSame('private, no-store', Expiry::personalCacheControl('public, max-age=3600'), '{% expires %} for a logged-in editor');
        self::assertNull(Expiry::personalCacheControl('no-cache, no-store, must-revalidate'), 'Craft\'s own no-cache headers are kept');
        self::assertNull(Expiry::personalCacheControl('private, max-age=60'));
    }
}
