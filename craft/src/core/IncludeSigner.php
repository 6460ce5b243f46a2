<?php

declare(strict_types=1);

namespace craftedge\craft\core;

use InvalidArgumentException;

/**
 * Signs and verifies fragment include URLs.
 *
 * The URL is an ordinary same-site path, so craftedge fetches, caches and
 * purges it like any page (it is neither an action nor a CP request):
 *
 *     /_craftedge/include?kind=c&site=default&template=_fragments%2Fnav&vars=eyJ...&exp=1767225600&sig=...
 *
 * - kind: "c" (cached: public, shared by every visitor, tagged like a
 *   page) or "p" (private: rendered per visitor with their cookies,
 *   `Cache-Control: private, no-store`, never tagged).
 * - site: the Craft site handle to render in.
 * - template: the site template path (letters, digits, _ - . /; no "..").
 * - vars: base64url (no padding) of the variables as JSON, keys sorted, so
 *   one include has one URL and one cache entry.
 * - exp: unix seconds after which the URL is refused. Rounded up to whole
 *   days, so renders on the same day produce the same URL.
 * - sig: base64url (no padding) HMAC-SHA256, keyed with the include key,
 *   of "craftedge-include/v1\n{kind}\n{site}\n{template}\n{vars}\n{exp}",
 *   each the parameter's exact (decoded) value.
 *
 * Parameter order does not matter (craftedge sorts query parameters in its
 * cache key); a URL with any other parameter is refused, so it cannot be
 * varied to create cache entries.
 */
final class IncludeSigner
{
    public const PATH = '/_craftedge/include';
    public const KIND_CACHED = 'c';
    public const KIND_PRIVATE = 'p';
    public const MAX_VARS_BYTES = 2048;
    private const PARAMS = ['kind', 'site', 'template', 'vars', 'exp', 'sig'];

    /** @var list<string> */
    private readonly array $keys;

    /**
     * @param string|list<string> $keys the signing key first, then previous
     *                                  keys still accepted (rotation); at
     *                                  least 32 bytes each
     * @param int $ttl seconds an include URL stays valid (default 40 days,
     *                 longer than snapshots are kept by default, so a page
     *                 served from a snapshot can still fetch its fragments)
     */
    public function __construct(string|array $keys, private readonly int $ttl = 40 * 86400)
    {
        $keys = array_values((array) $keys);
        if ($keys === []) {
            throw new InvalidArgumentException('craftedge include key: none set (CRAFTEDGE_INCLUDE_KEY; generate one with: head -c 32 /dev/urandom | base64)');
        }
        foreach ($keys as $k) {
            if (!is_string($k) || strlen($k) < 32) {
                throw new InvalidArgumentException('craftedge include key: want at least 32 bytes (generate one with: head -c 32 /dev/urandom | base64)');
            }
        }
        if ($ttl < 3600) {
            throw new InvalidArgumentException("craftedge include ttl: want at least 3600 seconds, got $ttl");
        }
        $this->keys = $keys;
    }

    /**
     * The signer for the plugin's settings: null without a current key
     * (CRAFTEDGE_INCLUDE_KEY), even when a previous one is set, so no new
     * URL is ever signed with a key being retired.
     */
    public static function fromSettings(string $current, string $previous): ?self
    {
        if ($current === '') {
            return null;
        }
        return new self($previous === '' || $previous === $current ? [$current] : [$current, $previous]);
    }

    /**
     * The signed query parameters of an include.
     *
     * @param array<string, mixed> $vars scalars, nulls and arrays of them
     * @return array<string, string>
     */
    public function sign(string $kind, string $site, string $template, array $vars, int $now): array
    {
        self::checkKind($kind);
        self::checkSite($site);
        self::checkTemplate($template);
        $json = json_encode(self::canonical($vars), JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
        $v = self::b64($json);
        if (strlen($v) > self::MAX_VARS_BYTES) {
            throw new InvalidArgumentException(sprintf('craftedge include %s: variables too large (%d bytes encoded, at most %d); pass ids, not objects', $template, strlen($v), self::MAX_VARS_BYTES));
        }
        $exp = (string) ((int) ceil(($now + $this->ttl) / 86400) * 86400);
        $p = ['kind' => $kind, 'site' => $site, 'template' => $template, 'vars' => $v, 'exp' => $exp];
        $p['sig'] = $this->mac($this->keys[0], $p);
        return $p;
    }

    /** The include's path and query. */
    public function url(string $kind, string $site, string $template, array $vars, int $now): string
    {
        return self::PATH . '?' . http_build_query($this->sign($kind, $site, $template, $vars, $now), '', '&', PHP_QUERY_RFC3986);
    }

    /**
     * Verifies a raw query string (without Craft's path parameter, see
     * Request::getQueryStringWithoutPath()); returns the include to render.
     *
     * Each parameter must appear once, under its plain name: PHP keeps the
     * last of duplicated parameters while craftedge keys them all, so a
     * duplicate would make another cache entry of the same fragment. Order
     * and percent-encoding may vary (craftedge normalizes both in its key
     * and in the query it sends).
     *
     * @return array{kind: string, site: string, template: string, vars: array<string, mixed>}
     * @throws IncludeRefused when unsigned, tampered with, expired or malformed
     */
    public function verifyQueryString(string $rawQuery, int $now): array
    {
        $query = [];
        foreach (explode('&', $rawQuery) as $piece) {
            if ($piece === '') {
                throw new IncludeRefused('empty parameter');
            }
            $pair = explode('=', $piece, 2);
            $name = urldecode($pair[0]);
            if (!in_array($name, self::PARAMS, true)) {
                throw new IncludeRefused(sprintf('unexpected parameter %s', json_encode($name, JSON_UNESCAPED_SLASHES)));
            }
            if (array_key_exists($name, $query)) {
                throw new IncludeRefused("duplicate parameter \"$name\"");
            }
            $query[$name] = urldecode($pair[1] ?? '');
        }
        return $this->verify($query, $now);
    }

    /**
     * Verifies query parameters; returns the include to render.
     *
     * @param array<string, mixed> $query the request's query parameters
     * @return array{kind: string, site: string, template: string, vars: array<string, mixed>}
     * @throws IncludeRefused when unsigned, tampered with, expired or malformed
     */
    public function verify(array $query, int $now): array
    {
        foreach (array_keys($query) as $name) {
            if (!in_array($name, self::PARAMS, true)) {
                throw new IncludeRefused("unexpected parameter \"$name\"");
            }
        }
        foreach (self::PARAMS as $name) {
            if (!isset($query[$name]) || !is_string($query[$name]) || $query[$name] === '') {
                throw new IncludeRefused("missing parameter \"$name\"");
            }
        }
        $p = array_intersect_key($query, array_flip(self::PARAMS));
        $ok = false;
        foreach ($this->keys as $key) {
            if (hash_equals($this->mac($key, $p), $p['sig'])) {
                $ok = true;
                break;
            }
        }
        if (!$ok) {
            throw new IncludeRefused('bad signature');
        }
        if (!ctype_digit($p['exp']) || (int) $p['exp'] < $now) {
            throw new IncludeRefused('expired');
        }
        try {
            self::checkKind($p['kind']);
            self::checkSite($p['site']);
            self::checkTemplate($p['template']);
        } catch (InvalidArgumentException $e) {
            throw new IncludeRefused($e->getMessage());
        }
        $json = self::unb64($p['vars']);
        $vars = $json === null ? null : json_decode($json, true);
        if (!is_array($vars)) {
            throw new IncludeRefused('malformed vars');
        }
        return ['kind' => $p['kind'], 'site' => $p['site'], 'template' => $p['template'], 'vars' => $vars];
    }

    /** @param array<string, string> $p */
    private function mac(string $key, array $p): string
    {
        $msg = implode("\n", ['craftedge-include/v1', $p['kind'], $p['site'], $p['template'], $p['vars'], $p['exp']]);
        return self::b64(hash_hmac('sha256', $msg, $key, true));
    }

    /** Sorts keys recursively and refuses objects. */
    private static function canonical(mixed $v): mixed
    {
        if (is_array($v)) {
            if (!array_is_list($v)) {
                ksort($v, SORT_STRING);
            }
            return array_map(self::canonical(...), $v);
        }
        if ($v === null || is_scalar($v)) {
            return $v;
        }
        throw new InvalidArgumentException(sprintf('craftedge include variables: %s cannot be signed; pass scalars (an element id, not the element)', get_debug_type($v)));
    }

    private static function checkKind(string $kind): void
    {
        if ($kind !== self::KIND_CACHED && $kind !== self::KIND_PRIVATE) {
            throw new InvalidArgumentException("include kind \"$kind\": want c or p");
        }
    }

    private static function checkSite(string $site): void
    {
        if (!preg_match('/^[A-Za-z][A-Za-z0-9_-]{0,254}$/D', $site)) {
            throw new InvalidArgumentException(sprintf('include site %s: not a site handle', json_encode($site)));
        }
    }

    private static function checkTemplate(string $template): void
    {
        if (
            !preg_match('~^[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}$~D', $template)
            || str_contains($template, '..') || str_contains($template, '//')
        ) {
            throw new InvalidArgumentException(sprintf('include template %s: want a relative site template path (letters, digits, _ - . /, no "..")', json_encode($template)));
        }
    }

    private static function b64(string $raw): string
    {
        return rtrim(strtr(base64_encode($raw), '+/', '-_'), '=');
    }

    private static function unb64(string $s): ?string
    {
        if (!preg_match('/^[A-Za-z0-9_-]*$/D', $s)) {
            return null;
        }
        $raw = base64_decode(strtr($s, '-_', '+/'), true);
        return $raw === false ? null : $raw;
    }
}
