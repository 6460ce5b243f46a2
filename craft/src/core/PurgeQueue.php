<?php

declare(strict_types=1);

namespace craftedge\craft\core;

/**
 * The tags to purge for one request or console command, collected from
 * Elements::EVENT_INVALIDATE_CACHES, then sent either as a Cache-Purge-Tag
 * response header (a web response craftedge applies and strips,
 * caddymodule/store.go) or through the purge endpoint (console commands,
 * queue jobs, responses already sent, tags beyond the header cap).
 */
final class PurgeQueue
{
    /** @var array<string, true> encoded tags, in first-seen order */
    private array $tags = [];

    public function __construct(private readonly TagHeader $header, private readonly TagEncoder $encoder)
    {
    }

    /**
     * Adds the tags of one invalidation. Drafts and revisions are skipped:
     * no cached page shows them.
     *
     * @param list<string> $craftTags
     */
    public function add(array $craftTags): void
    {
        if (TagEncoder::isDraftOrRevisionOnly($craftTags)) {
            return;
        }
        foreach ($this->header->purgeTags($craftTags) as $t) {
            $this->tags[$t] = true;
        }
    }

    /** Purges every page of this install (its site tag). */
    public function addAll(): void
    {
        $this->tags[$this->encoder->siteTag()] = true;
        $this->tags[$this->encoder->overflowTag()] = true;
    }

    public function isEmpty(): bool
    {
        return $this->tags === [];
    }

    /** @return list<string> */
    public function tags(): array
    {
        return array_keys($this->tags);
    }

    /**
     * Takes a Cache-Purge-Tag value that fits the cap; what does not fit
     * stays queued for the purge endpoint.
     */
    public function takeHeader(): string
    {
        [$value, $rest] = $this->header->purgeHeader($this->tags());
        $this->tags = array_fill_keys($rest, true);
        return $value;
    }

    /** Sends what is queued through the purge endpoint and empties the queue. */
    public function flush(PurgeClient $client): PurgeResult
    {
        $tags = $this->tags();
        $this->tags = [];
        return $client->purgeTags($tags);
    }
}
