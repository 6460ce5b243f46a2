<?php

declare(strict_types=1);

namespace craftedge\craft\core;

use InvalidArgumentException;

/**
 * Turns Craft's element cache tags into craftedge cache tags.
 *
 * Craft collects tags such as `element`, `element::craft\elements\Entry`,
 * `element::craft\elements\Entry::section:3` and `element::42` while it
 * renders a page (services/Elements.php, elements/db/ElementQuery.php), and
 * invalidates the same strings when an element changes. This class maps
 * both sides through one function, so a purge always names the tags a page
 * carries:
 *
 *     element                                   -> el
 *     element::42                               -> el:42
 *     element::craft\elements\Entry             -> el:entry
 *     element::craft\elements\Entry::*          -> el:entry:*
 *     element::craft\elements\Entry::section:3  -> el:entry:section:3
 *     element::craft\commerce\elements\Product::productType:2
 *                                               -> el:commerce.product:productType:2
 *     anything else (custom collectCacheTags)   -> itself
 *
 * then prefixed with the configured tag prefix. craftedge splits Cache-Tag
 * on commas and whitespace and keeps tags of at most 256 bytes
 * (httpcache/tags.go), so every byte outside visible ASCII, and `,` and
 * `%`, is percent-encoded, and a tag still longer than 256 bytes becomes
 * `h:` and 32 hex digits of its SHA-256.
 */
final class TagEncoder
{
    /** The longest tag craftedge keeps (httpcache.MaxTagLen). */
    public const MAX_TAG_BYTES = 256;

    /** Short names of core and Commerce element types. */
    private const TYPE_ALIASES = [
        'craft\\elements\\entry' => 'entry',
        'craft\\elements\\asset' => 'asset',
        'craft\\elements\\category' => 'category',
        'craft\\elements\\user' => 'user',
        'craft\\elements\\tag' => 'tag',
        'craft\\elements\\globalset' => 'globalset',
        'craft\\elements\\address' => 'address',
        'craft\\elements\\contentblock' => 'contentblock',
        'craft\\commerce\\elements\\product' => 'commerce.product',
        'craft\\commerce\\elements\\variant' => 'commerce.variant',
        'craft\\commerce\\elements\\order' => 'commerce.order',
        'craft\\commerce\\elements\\subscription' => 'commerce.subscription',
        'craft\\commerce\\elements\\donation' => 'commerce.donation',
    ];

    private readonly string $prefix;

    /**
     * @param string $prefix prepended to every tag (e.g. "prod:"), so several
     *                       environments can share one gateway; letters,
     *                       digits and . _ : - only, at most 64 bytes.
     */
    public function __construct(string $prefix = '')
    {
        if (strlen($prefix) > 64 || !preg_match('/^[A-Za-z0-9._:-]*$/', $prefix)) {
            throw new InvalidArgumentException(sprintf(
                'craftedge tag prefix %s: use at most 64 letters, digits, ".", "_", ":" or "-"',
                json_encode($prefix)
            ));
        }
        $this->prefix = $prefix;
    }

    public function prefix(): string
    {
        return $this->prefix;
    }

    /** The tag every page rendered by this Craft install carries. */
    public function siteTag(): string
    {
        return $this->prefix . 'craft';
    }

    /**
     * The tag a page carries when its tags did not fit in the header; every
     * purge purges it too.
     */
    public function overflowTag(): string
    {
        return $this->prefix . 'craft:overflow';
    }

    /** Encodes one Craft tag. */
    public function encode(string $craftTag): string
    {
        $body = self::shape($craftTag);
        $tag = $this->prefix . self::escape($body);
        if (strlen($tag) > self::MAX_TAG_BYTES) {
            $tag = $this->prefix . 'h:' . substr(hash('sha256', $body), 0, 32);
        }
        return $tag;
    }

    /**
     * Encodes a list of Craft tags, dropping empty and duplicate ones and
     * keeping first-seen order.
     *
     * @param iterable<string> $craftTags
     * @return list<string>
     */
    public function encodeAll(iterable $craftTags): array
    {
        $out = [];
        foreach ($craftTags as $t) {
            if (!is_string($t) || trim($t) === '') {
                continue;
            }
            $out[$this->encode($t)] = true;
        }
        return array_keys($out);
    }

    /**
     * Whether an invalidation only concerns drafts or revisions, which no
     * cached page shows (Craft Cloud skips these too).
     *
     * @param iterable<string> $craftTags
     */
    public static function isDraftOrRevisionOnly(iterable $craftTags): bool
    {
        foreach ($craftTags as $t) {
            if (preg_match('/^element::.+::(drafts|revisions)$/', $t)) {
                return true;
            }
        }
        return false;
    }

    /** The readable shape of a Craft tag, before escaping. */
    private static function shape(string $t): string
    {
        if ($t === 'element') {
            return 'el';
        }
        if (!str_starts_with($t, 'element::')) {
            return $t;
        }
        $rest = substr($t, strlen('element::'));
        if (ctype_digit($rest)) {
            return 'el:' . $rest;
        }
        $sep = strpos($rest, '::');
        $class = $sep === false ? $rest : substr($rest, 0, $sep);
        $tail = $sep === false ? null : substr($rest, $sep + 2);
        $type = self::typeName($class);
        return $tail === null ? "el:$type" : "el:$type:$tail";
    }

    /** An element class as a short, case-folded type name. */
    private static function typeName(string $class): string
    {
        // PHP class names are case-insensitive: fold them.
        $lc = strtolower(ltrim($class, '\\'));
        return self::TYPE_ALIASES[$lc] ?? str_replace('\\', '.', $lc);
    }

    /** Percent-encodes what craftedge would split on or drop. */
    private static function escape(string $s): string
    {
        return preg_replace_callback(
            '/[^\x21-\x7e]|[,%]/',
            static fn (array $m): string => sprintf('%%%02X', ord($m[0])),
            $s
        ) ?? '';
    }
}
