<?php

declare(strict_types=1);

namespace craftedge\craft\core;

use InvalidArgumentException;

/**
 * Says when a page expires, from Craft's cache info.
 *
 * Craft's Elements::stopCollectingCacheInfo() returns the seconds until the
 * soonest expiry of what the page showed (a future postDate, an
 * expiryDate, setCacheExpiryDate), capped by the cacheDuration general
 * setting, which it returns as is when nothing expires sooner. Only an
 * actual expiry (a duration under the cap) is stated, so pages without one
 * keep craftedge's configured ttl and are refreshed by purges.
 *
 * Modes:
 * - "cdn-cache-control" (default): `CDN-Cache-Control: max-age=N` (RFC
 *   9213), obeyed by craftedge and passed on to a CDN in front of it;
 *   browsers ignore it. Stale copies may still be served when Craft fails.
 * - "craftedge-cache-control": `Craftedge-Cache-Control: max-age=N`, for
 *   craftedge alone (it never passes it on).
 * - "s-maxage": `Cache-Control: public, s-maxage=N, max-age=0`, as Craft
 *   Cloud does; s-maxage forbids serving the page stale when Craft fails
 *   (RFC 9111 §5.2.2.10), so `stale-if-error` is added.
 *
 * A Cache-Control the page already has (Craft's {% expires %} tag sets it
 * through Response::setCacheHeaders) is kept, and a shorter max-age in it
 * wins; `private` or `no-store` in it mean the page is not shared at all
 * and nothing is added.
 */
final class Expiry
{
    public const MODES = ['cdn-cache-control', 'craftedge-cache-control', 's-maxage'];

    public function __construct(
        private readonly string $mode = 'cdn-cache-control',
        private readonly int $staleIfError = 86400,
    ) {
        if (!in_array($mode, self::MODES, true)) {
            throw new InvalidArgumentException(sprintf(
                'craftedge expiry mode %s: use one of %s',
                json_encode($mode),
                implode(', ', self::MODES)
            ));
        }
    }

    /**
     * The headers to set (name => value); empty when there is no expiry to
     * state.
     *
     * @param int|null $duration seconds from stopCollectingCacheInfo()
     * @param int $cacheDuration the cacheDuration general setting (0: none)
     * @param string|null $cacheControl the page's Cache-Control, if any
     * @return array<string, string>
     */
    public function headers(?int $duration, int $cacheDuration, ?string $cacheControl = null): array
    {
        $existing = self::maxAge($cacheControl);
        if ($existing === false) {
            return [];
        }
        $expires = $duration !== null && $duration > 0 && ($cacheDuration <= 0 || $duration < $cacheDuration);
        if (!$expires) {
            return [];
        }
        $n = $existing === null ? $duration : min($duration, $existing);
        return match ($this->mode) {
            'cdn-cache-control' => ['CDN-Cache-Control' => "max-age=$n"],
            'craftedge-cache-control' => ['Craftedge-Cache-Control' => "max-age=$n"],
            's-maxage' => ['Cache-Control' => "public, s-maxage=$n, max-age=0, stale-if-error={$this->staleIfError}"],
        };
    }

    /**
     * Whether a Cache-Control value lets a shared cache store the page.
     */
    public static function shareable(?string $cacheControl): bool
    {
        return self::maxAge($cacheControl) !== false;
    }

    /**
     * The Cache-Control for a page rendered for one visitor (a logged-in
     * user, or a request with a PHP session): null when the page already
     * says private or no-store, else "private, no-store". Such a page gets
     * no Cache-Tag and no expiry header either. craftedge bypasses these
     * requests (their session cookie), so its response reaches a CDN in
     * front with whatever headers Craft set, and PHP's own session
     * no-cache header is replaced by any Cache-Control set through Yii
     * ({% expires %}, the s-maxage mode).
     */
    public static function personalCacheControl(?string $cacheControl): ?string
    {
        return self::shareable($cacheControl) ? 'private, no-store' : null;
    }

    /**
     * The smaller of s-maxage and max-age in a Cache-Control value, null
     * without either, false when it is private or no-store.
     */
    private static function maxAge(?string $cacheControl): int|null|false
    {
        if ($cacheControl === null || trim($cacheControl) === '') {
            return null;
        }
        $min = null;
        foreach (explode(',', strtolower($cacheControl)) as $part) {
            $kv = array_map('trim', explode('=', $part, 2));
            $name = $kv[0];
            if ($name === 'private' || $name === 'no-store') {
                return false;
            }
            if (($name === 'max-age' || $name === 's-maxage') && isset($kv[1]) && ctype_digit(trim($kv[1], '"'))) {
                $v = (int) trim($kv[1], '"');
                $min = $min === null ? $v : min($min, $v);
            }
        }
        return $min;
    }
}
