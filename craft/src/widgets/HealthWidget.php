<?php

declare(strict_types=1);

namespace craftedge\craft\widgets;

use Craft;
use craft\base\Widget;
use craftedge\craft\Plugin;
use craftedge\craft\utilities\HealthUtility;

/**
 * craftedge's health on the dashboard (registered on
 * Dashboard::EVENT_REGISTER_WIDGET_TYPES; craftcms/cms src/base/Widget.php:
 * displayName(), icon(), isSelectable(), getBodyHtml() (null hides it);
 * src/web/User.php checkPermission()). Shown only to users with the
 * utility's permission (utility:craftedge).
 */
class HealthWidget extends Widget
{
    public static function displayName(): string
    {
        return 'craftedge health';
    }

    public static function icon(): ?string
    {
        return 'heart-pulse';
    }

    /**
     * Only for users who may see the utility: the status names upstreams,
     * vendors and their last errors, not for every control panel user.
     */
    public static function isSelectable(): bool
    {
        return parent::isSelectable() && self::allowed();
    }

    public function getBodyHtml(): ?string
    {
        if (!self::allowed()) {
            return null; // added before the permission was taken away
        }
        return Craft::$app->getView()->renderTemplate('craftedge/_health.twig', Plugin::getInstance()->edge()->healthView() + ['compact' => true]);
    }

    private static function allowed(): bool
    {
        return Craft::$app->getUser()->checkPermission('utility:' . HealthUtility::id());
    }
}
