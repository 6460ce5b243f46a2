<?php

declare(strict_types=1);

namespace craftedge\craft\blitz;

use Craft;
use craft\helpers\UrlHelper;
use craftedge\craft\Plugin;
use putyourlightson\blitz\drivers\purgers\BaseCachePurger;
use putyourlightson\blitz\models\SiteUriModel;

/**
 * A Blitz cache purger that purges craftedge, for sites that keep Blitz for
 * generation: Blitz's refreshed URIs become URL purges, a site purge a
 * prefix purge of the site's base URL, and "purge all" also purges the
 * plugin's site tag. Sent through craftedge_purge (batched, retried, logged).
 *
 * Blitz APIs (putyourlightson/craft-blitz): src/drivers/purgers/
 * BaseCachePurger.php (purgeUrisWithProgress(), purgeSite(), purgeAll(),
 * test()), CachePurgerInterface.php, src/models/SiteUriModel.php
 * (getUrl()); registered on CachePurgerHelper::EVENT_REGISTER_PURGER_TYPES.
 */
class CraftedgePurger extends BaseCachePurger
{
    public static function displayName(): string
    {
        return 'craftedge';
    }

    /**
     * @param SiteUriModel[]|array[] $siteUris
     */
    public function purgeUrisWithProgress(array $siteUris, ?callable $setProgressHandler = null): void
    {
        $urls = [];
        foreach ($siteUris as $siteUri) {
            if (is_array($siteUri)) {
                $siteUri = new SiteUriModel($siteUri);
            }
            $urls[] = $siteUri->getUrl();
        }
        $client = Plugin::getInstance()->edge()->purgeClient();
        if ($client === null) {
            Craft::warning('craftedge Blitz purger: no purge endpoint configured (CRAFTEDGE_PURGE_URL, CRAFTEDGE_PURGE_SECRET)', 'craftedge');
            return;
        }
        $client->purgeUrls($urls);
        if ($setProgressHandler !== null) {
            $setProgressHandler(count($urls), count($urls));
        }
    }

    public function purgeSite(int $siteId, ?callable $setProgressHandler = null, bool $queue = true): void
    {
        $client = Plugin::getInstance()->edge()->purgeClient();
        if ($client === null) {
            Craft::warning('craftedge Blitz purger: no purge endpoint configured', 'craftedge');
            return;
        }
        $client->send(['prefixes' => [UrlHelper::siteUrl('', null, null, $siteId)]]);
    }

    public function purgeAll(?callable $setProgressHandler = null, bool $queue = true): void
    {
        foreach (Craft::$app->getSites()->getAllSites() as $site) {
            $this->purgeSite($site->id, $setProgressHandler, $queue);
        }
        $edge = Plugin::getInstance()->edge();
        $edge->purgeClient()?->purgeTags([$edge->encoder()->siteTag(), $edge->encoder()->overflowTag()]);
    }

    public function test(): bool
    {
        $client = Plugin::getInstance()->edge()->purgeClient();
        if ($client === null) {
            $this->addError('purgeUrl', 'Set CRAFTEDGE_PURGE_URL and CRAFTEDGE_PURGE_SECRET in the craftedge plugin’s settings.');
            return false;
        }
        // A tag nothing carries: proves the URL and the secret.
        $r = $client->send(['tags' => [Plugin::getInstance()->edge()->encoder()->prefix() . 'craft:test']]);
        if (!$r['ok']) {
            $this->addError('purgeUrl', "craftedge refused the test purge (HTTP {$r['status']}): " . ($r['error'] !== '' ? $r['error'] : $r['body']));
        }
        return $r['ok'];
    }
}
