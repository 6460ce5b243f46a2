<?php

declare(strict_types=1);

namespace craftedge\craft\tests\e2e;

use PHPUnit\Framework\TestCase;

/** A test class with its own craftedge and origin, started once for its tests. */
abstract class EndToEndTestCase extends TestCase
{
    protected static Craftedge $ce;

    public static function setUpBeforeClass(): void
    {
        static::$ce = new Craftedge();
        static::$ce->start();
    }

    public static function tearDownAfterClass(): void
    {
        static::$ce->stop();
    }
}
