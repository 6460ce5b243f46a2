<?php

declare(strict_types=1);

namespace craftedge\craft\core;

/**
 * Decides whether an element's invalidation takes content down, so its
 * tags are purged hard (craftedge removes the copies: none answers a slow
 * Craft again) instead of in craftedge's purge_mode (soft by default: the
 * pre-save copy may still answer, after stale_after, while Craft is slow).
 *
 * A takedown is an element being deleted or removed from a site, or one
 * that is not live after the change: disabled (globally or for its site),
 * pending (its post date moved into the future), expired (its expiry date
 * in the past), archived, or any status this list does not know. Only an
 * element that is live afterwards is an ordinary save. Saving an element
 * that was already not live purges hard too (nothing cached should show it,
 * so a hard purge costs only the soft purge's protection for the pages
 * tagged with it).
 *
 * Craft 5 statuses (craftcms/cms): base/Element.php getStatus() answers
 * "enabled", "disabled" or "archived"; elements with dates
 * (elements/Entry.php, Commerce products) answer "live", "pending" or
 * "expired" in place of "enabled"; elements/User.php answers "active" for
 * a user whose pages show.
 */
final class Takedown
{
    /** The statuses under which an element shows on the site. */
    public const LIVE_STATUSES = ['live', 'enabled', 'active'];

    /**
     * @param string|null $status the element's status after the change
     *                            (ElementInterface::getStatus())
     * @param bool $removing the element is being deleted, or removed from
     *                       a site, or is trashed
     */
    public static function isTakedown(?string $status, bool $removing): bool
    {
        return $removing || !in_array($status, self::LIVE_STATUSES, true);
    }
}
