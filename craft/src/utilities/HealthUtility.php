<?php

declare(strict_types=1);

namespace craftedge\craft\utilities;

use Craft;
use craft\base\Utility;
use craftedge\craft\Plugin;

/**
 * Utilities → craftedge (registered on Utilities::EVENT_REGISTER_UTILITIES;
 * craftcms/cms src/base/Utility.php: id(), displayName(), icon(),
 * contentHtml()). Craft gates it with the "utility:craftedge" permission.
 */
class HealthUtility extends Utility
{
    public static function displayName(): string
    {
        return 'craftedge';
    }

    public static function id(): string
    {
        return 'craftedge';
    }

    public static function icon(): ?string
    {
        return 'heart-pulse';
    }

    public static function contentHtml(): string
    {
        return Craft::$app->getView()->renderTemplate('craftedge/_health.twig', Plugin::getInstance()->edge()->healthView() + ['compact' => false]);
    }
}
