<?php

declare(strict_types=1);

namespace craftedge\craft\core;

/**
 * Builds the Cache-Tag and Cache-Purge-Tag header values.
 *
 * A page's tags are joined with commas (craftedge splits on commas and
 * whitespace, httpcache/tags.go). The header is capped, as Craft Cloud
 * caps it, at 16 KiB, and at 1000 tags (what craftedge keeps of one
 * response, httpcache.MaxTags): a page whose tags do not fit carries the
 * overflow tag first and as many of its tags as fit, and every purge
 * purges the overflow tag as well, so such a page can only be purged too
 * often, never too rarely.
 */
final class TagHeader
{
    public const DEFAULT_MAX_BYTES = 16384;
    /** craftedge keeps at most this many tags per response (httpcache.MaxTags). */
    public const MAX_TAGS = 1000;

    public function __construct(
        private readonly TagEncoder $encoder,
        private readonly int $maxBytes = self::DEFAULT_MAX_BYTES,
    ) {
        if ($maxBytes < 512) {
            throw new \InvalidArgumentException("craftedge: the Cache-Tag header cap must be at least 512 bytes, got $maxBytes");
        }
    }

    /**
     * The Cache-Tag value for a page built from these Craft tags (the site
     * tag included), or the overflow form when they do not fit.
     *
     * @param iterable<string> $craftTags
     */
    public function cacheTag(iterable $craftTags): string
    {
        $tags = array_values(array_unique(array_merge(
            [$this->encoder->siteTag()],
            $this->encoder->encodeAll($craftTags)
        )));
        [$value, $overflowed] = $this->fit($tags);
        if (!$overflowed) {
            return $value;
        }
        $withOverflow = array_values(array_unique(array_merge([$this->encoder->overflowTag()], $tags)));
        return $this->fit($withOverflow)[0];
    }

    /**
     * The tags a purge of these Craft tags sends: their encodings and the
     * overflow tag.
     *
     * @param iterable<string> $craftTags
     * @return list<string>
     */
    public function purgeTags(iterable $craftTags): array
    {
        $tags = $this->encoder->encodeAll($craftTags);
        if ($tags === []) {
            return [];
        }
        $tags[] = $this->encoder->overflowTag();
        return array_values(array_unique($tags));
    }

    /** The cap on a header's bytes. */
    public function maxBytes(): int
    {
        return $this->maxBytes;
    }

    /**
     * Splits purge tags into a Cache-Purge-Tag (or Cache-Purge-Tag-Hard)
     * value that fits the cap, or $maxBytes when smaller (what two purge
     * headers leave of it), and the rest (to send through the purge
     * endpoint).
     *
     * @param list<string> $tags encoded tags
     * @return array{0: string, 1: list<string>}
     */
    public function purgeHeader(array $tags, ?int $maxBytes = null): array
    {
        $cap = min($this->maxBytes, $maxBytes ?? $this->maxBytes);
        $used = 0;
        $bytes = 0;
        foreach ($tags as $t) {
            $add = strlen($t) + ($used > 0 ? 1 : 0);
            if ($bytes + $add > $cap || $used >= self::MAX_TAGS) {
                break;
            }
            $bytes += $add;
            $used++;
        }
        return [implode(',', array_slice($tags, 0, $used)), array_values(array_slice($tags, $used))];
    }

    /**
     * Joins as many tags as fit.
     *
     * @param list<string> $tags
     * @return array{0: string, 1: bool} the value, and whether tags were left out
     */
    private function fit(array $tags): array
    {
        [$value, $rest] = $this->purgeHeader($tags);
        return [$value, $rest !== []];
    }
}
