<?php

declare(strict_types=1);

namespace craftedge\craft\core;

/**
 * The tags to purge for one request or console command, collected from
 * Elements::EVENT_INVALIDATE_CACHES, then sent either as response headers
 * (a web response craftedge applies and strips, caddymodule/cachehandler/
 * store.go) or through the purge endpoint (console commands, queue jobs,
 * responses already sent, tags beyond the header cap).
 *
 * Tags come in two kinds: ordinary ones (a save: purged in craftedge's
 * purge_mode, soft by default, so a copy may still answer while Craft is
 * slow) and takedowns (an element disabled, deleted, expired or out of a
 * site: purged hard, so no copy shows it again; see Takedown). A tag
 * queued both ways is purged hard.
 */
final class PurgeQueue
{
    /** The response header of ordinary purges (craftedge's purge_mode). */
    public const HEADER = 'Cache-Purge-Tag';
    /** The response header of takedowns (always a hard purge). */
    public const HARD_HEADER = 'Cache-Purge-Tag-Hard';

    /** @var array<string, true> encoded tags, in first-seen order */
    private array $tags = [];
    /** @var array<string, true> encoded tags to purge hard, in first-seen order */
    private array $hard = [];

    public function __construct(private readonly TagHeader $header, private readonly TagEncoder $encoder)
    {
    }

    /**
     * Adds the tags of one invalidation, as a takedown when $hard. Drafts
     * and revisions are skipped: no cached page shows them.
     *
     * @param list<string> $craftTags
     */
    public function add(array $craftTags, bool $hard = false): void
    {
        if (TagEncoder::isDraftOrRevisionOnly($craftTags)) {
            return;
        }
        foreach ($this->header->purgeTags($craftTags) as $t) {
            if ($hard) {
                unset($this->tags[$t]);
                $this->hard[$t] = true;
            } elseif (!isset($this->hard[$t])) {
                $this->tags[$t] = true;
            }
        }
    }

    /** Purges every page of this install (its site tag). */
    public function addAll(): void
    {
        foreach ([$this->encoder->siteTag(), $this->encoder->overflowTag()] as $t) {
            if (!isset($this->hard[$t])) {
                $this->tags[$t] = true;
            }
        }
    }

    public function isEmpty(): bool
    {
        return $this->tags === [] && $this->hard === [];
    }

    /** How many tags are queued, of both kinds. */
    public function count(): int
    {
        return count($this->tags) + count($this->hard);
    }

    /**
     * The ordinary tags queued.
     *
     * @return list<string>
     */
    public function tags(): array
    {
        return array_keys($this->tags);
    }

    /**
     * The takedown tags queued (purged hard).
     *
     * @return list<string>
     */
    public function hardTags(): array
    {
        return array_keys($this->hard);
    }

    /**
     * Takes the response headers (name => value) that fit the cap, the
     * takedowns first: Cache-Purge-Tag-Hard, then Cache-Purge-Tag in what
     * is left of the cap. What does not fit stays queued for the purge
     * endpoint.
     *
     * @return array<string, string>
     */
    public function takeHeaders(): array
    {
        $out = [];
        $left = $this->header->maxBytes();
        if ($this->hard !== []) {
            [$value, $rest] = $this->header->purgeHeader($this->hardTags(), $left);
            $this->hard = array_fill_keys($rest, true);
            if ($value !== '') {
                $out[self::HARD_HEADER] = $value;
                $left -= strlen($value);
            }
        }
        if ($this->tags !== []) {
            [$value, $rest] = $this->header->purgeHeader($this->tags(), $left);
            $this->tags = array_fill_keys($rest, true);
            if ($value !== '') {
                $out[self::HEADER] = $value;
            }
        }
        return $out;
    }

    /**
     * Takes a Cache-Purge-Tag value of the ordinary tags that fits the
     * cap; what does not fit stays queued for the purge endpoint.
     */
    public function takeHeader(): string
    {
        [$value, $rest] = $this->header->purgeHeader($this->tags());
        $this->tags = array_fill_keys($rest, true);
        return $value;
    }

    /**
     * Sends what is queued through the purge endpoint and empties the
     * queue: the takedowns with "mode":"hard", the rest without a mode
     * (craftedge's purge_mode).
     */
    public function flush(PurgeClient $client): PurgeResult
    {
        $tags = $this->tags();
        $hard = $this->hardTags();
        $this->tags = [];
        $this->hard = [];
        $result = $client->purgeTags($hard, PurgeClient::MODE_HARD);
        $result->merge($client->purgeTags($tags));
        return $result;
    }
}
