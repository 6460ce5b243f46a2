<?php

declare(strict_types=1);

namespace craftedge\craft;

use Craft;
use craft\base\ElementInterface;
use craft\events\ElementEvent;
use craft\events\InvalidateElementCachesEvent;
use craft\events\TemplateEvent;
use craft\web\Request;
use craft\web\Response;
use craft\web\View;
use craftedge\craft\core\Expiry;
use craftedge\craft\core\HealthClient;
use craftedge\craft\core\IncludeHtml;
use craftedge\craft\core\IncludeSigner;
use craftedge\craft\core\PurgeClient;
use craftedge\craft\core\PurgeQueue;
use craftedge\craft\core\PurgeResult;
use craftedge\craft\core\TagEncoder;
use craftedge\craft\core\TagHeader;
use craftedge\craft\core\Takedown;
use craftedge\craft\models\Settings;
use yii\base\Event;

/**
 * The plugin's per-request state and its event handlers: the Craft side of
 * the work is done by the classes in core/, this class only feeds them
 * Craft's data and writes their results to the response.
 *
 * Craft APIs used (Craft 5, craftcms/cms):
 * - src/services/Elements.php: startCollectingCacheInfo(),
 *   getIsCollectingCacheInfo(), collectCacheInfoForElement(),
 *   stopCollectingCacheInfo() returning [TagDependency|null, int|null],
 *   EVENT_INVALIDATE_CACHES.
 * - src/events/InvalidateElementCachesEvent.php: $tags, $element.
 * - src/services/Elements.php deleteElement(): EVENT_BEFORE_DELETE_ELEMENT
 *   (DeleteElementEvent, an ElementEvent) comes before its
 *   invalidateCachesForElement(); deleteElementsForSite():
 *   EVENT_BEFORE_DELETE_FOR_SITE before the element's rows of that site
 *   go and it is resaved (which invalidates).
 * - src/base/Element.php: getStatus(), $id, $trashed, $propagating.
 * - src/web/Request.php: getIsSiteRequest(), getIsActionRequest(),
 *   getIsPreview(), getIsLivePreview(), getToken().
 * - src/web/UrlManager.php: getMatchedElement().
 * - src/config/GeneralConfig.php: $cacheDuration.
 * - yiisoft/yii2 framework/web/Response.php: getIsOk(), getHeaders().
 * Craft Cloud's extension does the same in src/StaticCache.php
 * (craftcms/cloud-extension-yii2).
 */
final class EdgeCache
{
    private bool $collecting = false;
    private bool $esiUsed = false;
    /** Whether this web request's response went out (Response::$isSent is only set after EVENT_AFTER_SEND). */
    private bool $responseSent = false;
    private ?PurgeQueue $queue = null;
    private ?TagEncoder $encoder = null;
    private ?TagHeader $header = null;
    /** @var array<int, true> ids of the elements being deleted or removed from a site in this request */
    private array $removing = [];

    public function __construct(private readonly Settings $settings)
    {
    }

    public function encoder(): TagEncoder
    {
        return $this->encoder ??= new TagEncoder($this->settings->env($this->settings->tagPrefix));
    }

    public function header(): TagHeader
    {
        return $this->header ??= new TagHeader($this->encoder(), $this->settings->maxTagHeaderBytes);
    }

    public function queue(): PurgeQueue
    {
        return $this->queue ??= new PurgeQueue($this->header(), $this->encoder());
    }

    /** The purge client, or null when craftedge_purge is not configured. */
    public function purgeClient(): ?PurgeClient
    {
        $url = $this->settings->env($this->settings->purgeUrl);
        $secret = $this->settings->env($this->settings->purgeSecret);
        if ($url === '' || $secret === '') {
            return null;
        }
        return new PurgeClient($url, $secret, static function (string $level, string $message, array $context): void {
            $line = $message . ' ' . json_encode($context, JSON_UNESCAPED_SLASHES);
            $level === 'error' ? Craft::error($line, 'craftedge') : Craft::warning($line, 'craftedge');
        }, [
            'batch_size' => $this->settings->purgeBatchSize,
            'max_attempts' => $this->settings->purgeAttempts,
        ]);
    }

    /** The status client, or null when the status page is not configured. */
    public function healthClient(): ?HealthClient
    {
        $url = $this->settings->env($this->settings->statusUrl);
        if ($url === '') {
            return null;
        }
        return new HealthClient($url, $this->settings->env($this->settings->statusUser), $this->settings->env($this->settings->statusPassword));
    }

    /**
     * What the widget and utility show: the status summary, or why there
     * is none. Read server-side, with a short timeout.
     *
     * @return array{health: array<string, mixed>|null, error: string|null}
     */
    public function healthView(): array
    {
        $url = $this->settings->env($this->settings->statusUrl);
        if ($url === '') {
            return ['health' => null, 'error' => 'Set CRAFTEDGE_STATUS_URL to the craftedge_status page (and CRAFTEDGE_STATUS_USER, CRAFTEDGE_STATUS_PASSWORD for its login).'];
        }
        try {
            $client = new HealthClient($url, $this->settings->env($this->settings->statusUser), $this->settings->env($this->settings->statusPassword), 2.0);
            return ['health' => HealthClient::summary($client->status()), 'error' => null];
        } catch (\RuntimeException|\InvalidArgumentException $e) {
            Craft::warning('craftedge health: ' . $e->getMessage(), 'craftedge');
            return ['health' => null, 'error' => $e->getMessage()];
        }
    }

    /** The include signer, or null when no include key is set. */
    public function signer(): ?IncludeSigner
    {
        return IncludeSigner::fromSettings(
            $this->settings->env($this->settings->includeKey),
            $this->settings->env($this->settings->includePreviousKey),
        );
    }

    /**
     * Whether this request's page may be cached and tagged: a GET or HEAD
     * site request that is not an action, preview or token request (and,
     * decided when the response is prepared, not rendered for a logged-in
     * user or a session: isPersonal()).
     */
    public static function isCacheableRequest(Request $request): bool
    {
        return !$request->getIsConsoleRequest()
            && $request->getIsSiteRequest()
            && !$request->getIsActionRequest()
            && !$request->getIsPreview()
            && !$request->getIsLivePreview()
            && $request->getToken() === null
            && ($request->getIsGet() || $request->getIsHead());
    }

    /**
     * Whether the page was rendered for one visitor: a logged-in user, or
     * a PHP session (flash messages, a cart) that may show in it.
     * (craftcms/cms src/web/User.php getIsGuest(), yii2 web/User.php.)
     */
    private static function isPersonal(): bool
    {
        return session_status() === PHP_SESSION_ACTIVE || !Craft::$app->getUser()->getIsGuest();
    }

    /** At web application init: starts collecting for a cacheable request. */
    public function begin(): void
    {
        $request = Craft::$app->getRequest();
        if ($request instanceof Request && self::isCacheableRequest($request)) {
            Craft::$app->getElements()->startCollectingCacheInfo();
            $this->collecting = true;
        }
    }

    /** Before the page template renders: the element matched by the URL. */
    public function onBeforeRenderPageTemplate(TemplateEvent $event): void
    {
        if (!$this->collecting || $event->templateMode !== View::TEMPLATE_MODE_SITE) {
            return;
        }
        $element = Craft::$app->getUrlManager()->getMatchedElement();
        if ($element) {
            Craft::$app->getElements()->collectCacheInfoForElement($element);
        }
    }

    /**
     * Elements::EVENT_BEFORE_DELETE_ELEMENT and EVENT_BEFORE_DELETE_FOR_SITE:
     * the element's next invalidation is a takedown.
     */
    public function onBeforeRemove(ElementEvent $event): void
    {
        if ($event->element?->id !== null) {
            $this->removing[(int) $event->element->id] = true;
        }
    }

    /**
     * Elements::EVENT_INVALIDATE_CACHES: queue the tags to purge, hard when
     * the element is taken down (see Takedown).
     */
    public function onInvalidateCaches(InvalidateElementCachesEvent $event): void
    {
        $element = $event->element;
        $this->queue()->add(array_values(array_filter($event->tags, 'is_string')), $element !== null && $this->isTakedown($element));
        // A console command resaving thousands of entries: send as it goes.
        if ($this->queue()->count() >= $this->settings->purgeBatchSize && Craft::$app->getRequest()->getIsConsoleRequest()) {
            $this->flush();
        }
    }

    /**
     * Whether an invalidated element is taken down: being deleted or
     * removed from a site, trashed, or not live after the change in the
     * site it was changed in (its copies propagated to other sites are not
     * looked at: an entry disabled in one site of several would otherwise
     * make every save of it elsewhere a takedown).
     */
    private function isTakedown(ElementInterface $element): bool
    {
        $removing = ($element->id !== null && isset($this->removing[(int) $element->id])) || !empty($element->trashed);
        if (!$removing && !empty($element->propagating)) {
            return false;
        }
        try {
            $status = $element->getStatus();
        } catch (\Throwable) {
            $status = null;
        }
        return Takedown::isTakedown($status, $removing);
    }

    /** Response::EVENT_AFTER_PREPARE: tags, expiry, ESI and purge headers. */
    public function onAfterPrepare(Event $event): void
    {
        $response = $event->sender;
        if (!$response instanceof Response) {
            return;
        }
        $headers = $response->getHeaders();
        if ($this->collecting) {
            $this->collecting = false;
            $elements = Craft::$app->getElements();
            if ($elements->getIsCollectingCacheInfo()) {
                [$dependency, $duration] = $elements->stopCollectingCacheInfo();
                $cacheControl = $headers->get('Cache-Control');
                if (self::isPersonal()) {
                    $personal = Expiry::personalCacheControl($cacheControl);
                    if ($personal !== null) {
                        $headers->set('Cache-Control', $personal);
                    }
                } elseif ($response->getIsOk() && Expiry::shareable($cacheControl)) {
                    $headers->set('Cache-Tag', $this->header()->cacheTag($dependency?->tags ?? []));
                    $cacheDuration = (int) Craft::$app->getConfig()->getGeneral()->cacheDuration;
                    $expiry = new Expiry($this->settings->expiryMode);
                    foreach ($expiry->headers($duration, $cacheDuration, $cacheControl) as $name => $value) {
                        $headers->set($name, $value);
                    }
                }
            }
        }
        if ($this->esiUsed) {
            $headers->set('Surrogate-Control', IncludeHtml::SURROGATE_CONTROL);
        }
        if ($this->queue !== null && !$this->queue->isEmpty()) {
            // craftedge applies and strips them (caddymodule/cachehandler/
            // store.go): Cache-Purge-Tag-Hard for takedowns, Cache-Purge-Tag
            // for the rest; what does not fit stays queued for the purge
            // endpoint.
            foreach ($this->queue->takeHeaders() as $name => $value) {
                $headers->add($name, $value);
            }
        }
    }

    /**
     * At the end of a request or queue job: sends what no response header
     * carried (console, queue, a response already sent, beyond the cap).
     */
    public function flush(): ?PurgeResult
    {
        if ($this->queue === null || $this->queue->isEmpty()) {
            return null;
        }
        $client = $this->purgeClient();
        if ($client === null && !$this->responseSent && Craft::$app->getResponse() instanceof Response) {
            // A web request whose response is still to be sent (a queue
            // job run by the queue/run action): its Cache-Purge-Tag
            // carries them.
            return null;
        }
        if ($client === null) {
            Craft::warning('craftedge: tags to purge but no purge endpoint configured (CRAFTEDGE_PURGE_URL, CRAFTEDGE_PURGE_SECRET): ' . implode(',', array_merge($this->queue->hardTags(), $this->queue->tags())), 'craftedge');
            $this->queue = null;
            return null;
        }
        return $this->queue->flush($client);
    }

    /**
     * Response::EVENT_AFTER_SEND: the response's Cache-Purge-Tag is gone;
     * sends what it did not carry through the purge endpoint.
     */
    public function afterSend(): void
    {
        $this->responseSent = true;
        $this->flush();
    }

    /** Marks the response as holding ESI includes. */
    public function usedEsi(): void
    {
        $this->esiUsed = true;
    }

    /**
     * Whether includes are rendered as ESI for this request.
     */
    public function esiEnabled(): bool
    {
        $request = Craft::$app->getRequest();
        if (!$request instanceof Request) {
            return false; // console: nothing assembles ESI
        }
        return match ($this->settings->esi) {
            'on' => true,
            'off' => false,
            default => IncludeHtml::edgeSupportsEsi($request->getHeaders()->get('Surrogate-Capability')),
        };
    }
}
