<?php

declare(strict_types=1);

namespace craftedge\craft\twig;

use Twig\Extension\AbstractExtension;
use Twig\Extension\GlobalsInterface;

/**
 * Adds the `craftedge` global to site templates (registered with
 * View::registerTwigExtension(), craftcms/cms src/web/View.php).
 */
final class Extension extends AbstractExtension implements GlobalsInterface
{
    public function getGlobals(): array
    {
        return ['craftedge' => new CraftedgeVariable()];
    }
}
