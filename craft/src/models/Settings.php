<?php

declare(strict_types=1);

namespace craftedge\craft\models;

use craft\base\Model;
use craft\helpers\App;
use craftedge\craft\core\Expiry;

/**
 * The plugin's settings. Secrets and URLs are environment variables by
 * default ("$NAME", resolved with App::parseEnv(), craftcms/cms
 * src/helpers/App.php), so they stay out of project config; set them in
 * .env or override any setting in config/craftedge.php.
 */
class Settings extends Model
{
    /** craftedge_purge's URL, for purges from console commands and queue jobs. */
    public string $purgeUrl = '$CRAFTEDGE_PURGE_URL';
    /** craftedge_purge's secret ("whsec_..."). */
    public string $purgeSecret = '$CRAFTEDGE_PURGE_SECRET';
    /** Prefix of every tag, so several environments can share a gateway. */
    public string $tagPrefix = '$CRAFTEDGE_TAG_PREFIX';
    /** Cap of the Cache-Tag header, in bytes (Craft Cloud uses 16 KiB). */
    public int $maxTagHeaderBytes = 16384;
    /** How an expiry is stated: cdn-cache-control, craftedge-cache-control or s-maxage. */
    public string $expiryMode = 'cdn-cache-control';
    /** Tags per purge request. */
    public int $purgeBatchSize = 500;
    /** Attempts per purge request (retries with backoff in between). */
    public int $purgeAttempts = 4;
    /** The craftedge_status page's URL, for the dashboard widget and utility. */
    public string $statusUrl = '$CRAFTEDGE_STATUS_URL';
    /** The basic-auth user and password the status page is behind. */
    public string $statusUser = '$CRAFTEDGE_STATUS_USER';
    public string $statusPassword = '$CRAFTEDGE_STATUS_PASSWORD';
    /** The key include URLs are signed with (at least 32 bytes). */
    public string $includeKey = '$CRAFTEDGE_INCLUDE_KEY';
    /** A previous include key still accepted while pages signed with it are cached. */
    public string $includePreviousKey = '$CRAFTEDGE_INCLUDE_KEY_PREVIOUS';
    /**
     * Edge-side includes: "auto" (ESI when the request says craftedge
     * assembles it, Surrogate-Capability: craftedge="ESI/1.0"), "on", or
     * "off" (includes rendered inline, private fragments by a script).
     */
    public string $esi = 'auto';

    /** An environment-variable setting's value, "" when unset. */
    public function env(string $value): string
    {
        $v = App::parseEnv($value);
        if (!is_string($v) || ($v !== '' && $v[0] === '$' && $v === $value)) {
            return '';
        }
        return $v;
    }

    protected function defineRules(): array
    {
        return [
            [['maxTagHeaderBytes'], 'integer', 'min' => 512],
            [['purgeBatchSize'], 'integer', 'min' => 1, 'max' => 5000],
            [['purgeAttempts'], 'integer', 'min' => 1, 'max' => 10],
            [['expiryMode'], 'in', 'range' => Expiry::MODES],
            [['esi'], 'in', 'range' => ['auto', 'on', 'off']],
        ];
    }
}
