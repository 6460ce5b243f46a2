<?php

declare(strict_types=1);

namespace craftedge\craft\controllers;

use Craft;
use craft\web\Controller;
use craftedge\craft\Plugin;
use RuntimeException;
use yii\web\Response;

/**
 * The control panel's craftedge actions (the dashboard widget's and the
 * utility's buttons): POST only, validated against Craft's CSRF token
 * (Controller::$enableCsrfValidation, on by default), CP requests only,
 * and each gated by its own permission.
 *
 * Craft APIs (craftcms/cms src/web/Controller.php): requirePostRequest(),
 * requireCpRequest(), requirePermission(), asSuccess(), asFailure().
 */
class CpController extends Controller
{
    /** Purges every page this install rendered (its site tag). */
    public function actionPurgeAll(): ?Response
    {
        $this->requirePostRequest();
        $this->requireCpRequest();
        $this->requirePermission(Plugin::PERMISSION_PURGE_ALL);

        $edge = Plugin::getInstance()->edge();
        $user = Craft::$app->getUser()->getIdentity()?->username ?? '?';
        $client = $edge->purgeClient();
        if ($client === null) {
            // No purge endpoint: this response's Cache-Purge-Tag does it
            // (the control panel is served through craftedge).
            $edge->queue()->addAll();
            Craft::warning("craftedge: purge-all by $user (Cache-Purge-Tag)", 'craftedge');
            return $this->asSuccess('Every cached page is being purged.');
        }
        $encoder = $edge->encoder();
        $result = $client->purgeTags([$encoder->siteTag(), $encoder->overflowTag()]);
        Craft::warning("craftedge: purge-all by $user: " . ($result->ok() ? "{$result->purged} entries purged" : 'failed'), 'craftedge');
        if (!$result->ok()) {
            return $this->asFailure('craftedge did not accept the purge; see the logs (category craftedge).');
        }
        return $this->asSuccess("Purged {$result->purged} cached entries.");
    }

    /** Replays every dead letter through craftedge's status page. */
    public function actionRetryDeadLetters(): ?Response
    {
        $this->requirePostRequest();
        $this->requireCpRequest();
        $this->requirePermission(Plugin::PERMISSION_RETRY);

        $health = Plugin::getInstance()->edge()->healthClient();
        if ($health === null) {
            return $this->asFailure('Set CRAFTEDGE_STATUS_URL (and the status page login) first.');
        }
        $user = Craft::$app->getUser()->getIdentity()?->username ?? '?';
        try {
            $replayed = $health->retryDeadLetters();
        } catch (RuntimeException $e) {
            Craft::error("craftedge: retrying dead letters for $user failed: " . $e->getMessage(), 'craftedge');
            return $this->asFailure('Retrying failed: ' . $e->getMessage());
        }
        Craft::warning("craftedge: dead letters replayed by $user: " . json_encode($replayed), 'craftedge');
        return $this->asSuccess(sprintf('Replayed %d dead letters.', array_sum($replayed)));
    }
}
