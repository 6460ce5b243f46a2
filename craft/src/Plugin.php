<?php

declare(strict_types=1);

namespace craftedge\craft;

use Craft;
use craft\base\Model;
use craft\base\Plugin as BasePlugin;
use craft\events\ElementEvent;
use craft\events\InvalidateElementCachesEvent;
use craft\events\RegisterComponentTypesEvent;
use craft\events\RegisterUrlRulesEvent;
use craft\events\RegisterUserPermissionsEvent;
use craft\events\TemplateEvent;
use craft\services\Dashboard;
use craft\services\Elements;
use craft\services\UserPermissions;
use craft\services\Utilities;
use craft\web\Response;
use craft\web\UrlManager;
use craft\web\View;
use craftedge\craft\blitz\CraftedgePurger;
use craftedge\craft\models\Settings;
use craftedge\craft\twig\Extension;
use craftedge\craft\utilities\HealthUtility;
use craftedge\craft\widgets\HealthWidget;
use yii\base\Event;
use yii\queue\Queue;

/**
 * craftedge for Craft CMS: Cache-Tag and expiry on site pages, purges on
 * element changes, edge-side includes, a Blitz purger and craftedge's
 * health in the control panel. See README.md.
 *
 * Craft APIs registered here (Craft 5, craftcms/cms):
 * - src/base/Plugin.php: $hasCpSettings, createSettingsModel(), settingsHtml().
 * - src/base/ApplicationTrait.php: onInit() (4.3.5), onAfterRequest() (4.5.11).
 * - src/services/Elements.php: EVENT_INVALIDATE_CACHES,
 *   EVENT_BEFORE_DELETE_ELEMENT (DeleteElementEvent extends ElementEvent),
 *   EVENT_BEFORE_DELETE_FOR_SITE (ElementEvent).
 * - src/web/View.php: EVENT_BEFORE_RENDER_PAGE_TEMPLATE, registerTwigExtension().
 * - src/web/UrlManager.php: EVENT_REGISTER_SITE_URL_RULES (RegisterUrlRulesEvent).
 * - src/services/Dashboard.php: EVENT_REGISTER_WIDGET_TYPES.
 * - src/services/Utilities.php: EVENT_REGISTER_UTILITIES (Craft 5's name).
 * - src/services/UserPermissions.php: EVENT_REGISTER_PERMISSIONS.
 * - yiisoft/yii2 framework/web/Response.php: EVENT_AFTER_PREPARE,
 *   EVENT_AFTER_SEND (send(): prepare, headers, content, then this);
 *   framework/base/Application.php run(): EVENT_AFTER_REQUEST comes
 *   before the response is sent.
 * - yiisoft/yii2-queue src/Queue.php: EVENT_AFTER_EXEC, EVENT_AFTER_ERROR.
 * - putyourlightson/craft-blitz src/helpers/CachePurgerHelper.php:
 *   EVENT_REGISTER_PURGER_TYPES (only when Blitz is installed).
 *
 * @method Settings getSettings()
 */
class Plugin extends BasePlugin
{
    /** Purge every page of this install from the control panel. */
    public const PERMISSION_PURGE_ALL = 'craftedge:purge-all';
    /** Replay craftedge's dead letters from the control panel. */
    public const PERMISSION_RETRY = 'craftedge:retry-dead-letters';

    public bool $hasCpSettings = true;
    public string $schemaVersion = '1.0.0';

    private ?EdgeCache $edge = null;

    public function edge(): EdgeCache
    {
        return $this->edge ??= new EdgeCache($this->getSettings());
    }

    public function init(): void
    {
        parent::init();
        $edge = $this->edge();

        Event::on(Elements::class, Elements::EVENT_INVALIDATE_CACHES,
            static fn (InvalidateElementCachesEvent $e) => $edge->onInvalidateCaches($e));
        // Deleting an element, or removing it from a site, is a takedown:
        // its invalidation is purged hard.
        foreach ([Elements::EVENT_BEFORE_DELETE_ELEMENT, Elements::EVENT_BEFORE_DELETE_FOR_SITE] as $name) {
            Event::on(Elements::class, $name, static fn (ElementEvent $e) => $edge->onBeforeRemove($e));
        }
        if (Craft::$app->getRequest()->getIsConsoleRequest()) {
            Craft::$app->onAfterRequest(static fn () => $edge->flush());
        } else {
            // Not onAfterRequest(): yii\base\Application::run() triggers
            // EVENT_AFTER_REQUEST before $response->send(), so flushing
            // there would take every tag before EVENT_AFTER_PREPARE could
            // put them in Cache-Purge-Tag (and drop them without a purge
            // endpoint). After the send, only what the header did not
            // carry is left.
            Event::on(Response::class, Response::EVENT_AFTER_SEND, static fn () => $edge->afterSend());
        }
        Event::on(Queue::class, Queue::EVENT_AFTER_EXEC, static fn () => $edge->flush());
        Event::on(Queue::class, Queue::EVENT_AFTER_ERROR, static fn () => $edge->flush());

        // Blitz runs its purges from queue jobs, so register in console too.
        $blitzPurgers = 'putyourlightson\\blitz\\helpers\\CachePurgerHelper';
        if (class_exists($blitzPurgers)) {
            Event::on($blitzPurgers, $blitzPurgers::EVENT_REGISTER_PURGER_TYPES, static function (RegisterComponentTypesEvent $e): void {
                $e->types[] = CraftedgePurger::class;
            });
        }

        // Templates rendered from the console (queue jobs, e-mails) may use
        // the helpers too; there they render in place.
        Craft::$app->getView()->registerTwigExtension(new Extension());

        if (Craft::$app->getRequest()->getIsConsoleRequest()) {
            return;
        }

        Craft::$app->onInit(static fn () => $edge->begin());
        Event::on(View::class, View::EVENT_BEFORE_RENDER_PAGE_TEMPLATE,
            static fn (TemplateEvent $e) => $edge->onBeforeRenderPageTemplate($e));
        Event::on(Response::class, Response::EVENT_AFTER_PREPARE, static fn (Event $e) => $edge->onAfterPrepare($e));

        Event::on(UrlManager::class, UrlManager::EVENT_REGISTER_SITE_URL_RULES, static function (RegisterUrlRulesEvent $e): void {
            // The include path of core/IncludeSigner.php: an ordinary site
            // path, so craftedge caches fragments like pages.
            $e->rules['_craftedge/include'] = 'craftedge/fragment/render';
        });

        Event::on(Dashboard::class, Dashboard::EVENT_REGISTER_WIDGET_TYPES, static function (RegisterComponentTypesEvent $e): void {
            $e->types[] = HealthWidget::class;
        });
        Event::on(Utilities::class, Utilities::EVENT_REGISTER_UTILITIES, static function (RegisterComponentTypesEvent $e): void {
            $e->types[] = HealthUtility::class;
        });
        Event::on(UserPermissions::class, UserPermissions::EVENT_REGISTER_PERMISSIONS, static function (RegisterUserPermissionsEvent $e): void {
            $e->permissions[] = [
                'heading' => 'craftedge',
                'permissions' => [
                    self::PERMISSION_PURGE_ALL => ['label' => 'Purge every cached page (craftedge)'],
                    self::PERMISSION_RETRY => ['label' => 'Retry craftedge’s dead letters'],
                ],
            ];
        });

    }

    protected function createSettingsModel(): ?Model
    {
        return new Settings();
    }

    protected function settingsHtml(): ?string
    {
        return Craft::$app->getView()->renderTemplate('craftedge/_settings.twig', [
            'settings' => $this->getSettings(),
        ]);
    }
}
