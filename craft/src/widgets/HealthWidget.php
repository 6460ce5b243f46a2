<?php

declare(strict_types=1);

namespace craftedge\craft\widgets;

use Craft;
use craft\base\Widget;
use craftedge\craft\Plugin;

/**
 * craftedge's health on the dashboard (registered on
 * Dashboard::EVENT_REGISTER_WIDGET_TYPES; craftcms/cms src/base/Widget.php:
 * displayName(), icon(), getBodyHtml()).
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

    public function getBodyHtml(): ?string
    {
        return Craft::$app->getView()->renderTemplate('craftedge/_health.twig', Plugin::getInstance()->edge()->healthView() + ['compact' => true]);
    }
}
