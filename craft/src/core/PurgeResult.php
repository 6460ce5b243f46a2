<?php

declare(strict_types=1);

namespace craftedge\craft\core;

/** What a batched purge did. */
final class PurgeResult
{
    /** Batches answered 2xx. */
    public int $sent = 0;
    /** Batches that failed after their retries. */
    public int $failed = 0;
    /** Entries (tags, URLs) in failed batches. */
    public int $failedEntries = 0;
    /** Memory entries craftedge reported purged. */
    public int $purged = 0;
    /** Requests made, retries included. */
    public int $attempts = 0;

    /** @param array{ok: bool, attempts: int, purged: int} $batch */
    public function add(array $batch, int $entries): void
    {
        $this->attempts += $batch['attempts'];
        if ($batch['ok']) {
            $this->sent++;
            $this->purged += $batch['purged'];
        } else {
            $this->failed++;
            $this->failedEntries += $entries;
        }
    }

    /** Adds another purge's counts to this one's. */
    public function merge(PurgeResult $other): void
    {
        $this->sent += $other->sent;
        $this->failed += $other->failed;
        $this->failedEntries += $other->failedEntries;
        $this->purged += $other->purged;
        $this->attempts += $other->attempts;
    }

    public function ok(): bool
    {
        return $this->failed === 0;
    }
}
