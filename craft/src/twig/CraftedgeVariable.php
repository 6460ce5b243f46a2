<?php

declare(strict_types=1);

namespace craftedge\craft\twig;

use Craft;
use craft\helpers\Template;
use craft\helpers\UrlHelper;
use craft\web\View;
use craftedge\craft\core\IncludeHtml;
use craftedge\craft\core\IncludeSigner;
use craftedge\craft\Plugin;
use Twig\Markup;
use yii\base\InvalidConfigException;

/**
 * The `craftedge` Twig global:
 *
 *     {{ craftedge.include('_fragments/nav', {section: 'blog'}) }}  a shared fragment, cached on its own
 *     {{ craftedge.csrfInput() }}                                   the visitor's own CSRF input
 *     {{ craftedge.dynamic('_fragments/hello') }}                   a per-visitor fragment
 *
 * With ESI (see Settings::$esi) each renders an <esi:include> of a signed
 * include URL, and the page gets `Surrogate-Control: content="ESI/1.0"`;
 * without it, include() renders the template in place and the private
 * helpers render a small script that fetches the fragment.
 *
 * Craft APIs: src/helpers/Template.php raw(), src/helpers/UrlHelper.php
 * siteUrl(), actionUrl(), src/services/Sites.php getCurrentSite(), src/web/View.php
 * renderTemplate() (craftcms/cms).
 */
final class CraftedgeVariable
{
    /** The template name the fragment controller answers with Craft's CSRF input. */
    public const CSRF_TEMPLATE = '_craftedge/csrf';

    /**
     * A shared fragment: the same for every visitor, cached by craftedge on
     * its own with its own Cache-Tag.
     *
     * @param array<string, mixed> $vars scalars and arrays (pass ids, not elements)
     */
    public function include(string $template, array $vars = []): Markup
    {
        $edge = Plugin::getInstance()->edge();
        if (!$edge->esiEnabled()) {
            return Template::raw(Craft::$app->getView()->renderTemplate($template, $vars, View::TEMPLATE_MODE_SITE));
        }
        return $this->esi(IncludeSigner::KIND_CACHED, $template, $vars);
    }

    /**
     * The visitor's own CSRF input (Craft's CRAFT_CSRF_TOKEN), for forms on
     * cached pages.
     */
    public function csrfInput(): Markup
    {
        return $this->privateFragment(self::CSRF_TEMPLATE, []);
    }

    /**
     * A per-visitor fragment ("signed in as", cart count): rendered for
     * each request with the visitor's cookies, never stored.
     *
     * @param array<string, mixed> $vars
     */
    public function dynamic(string $template, array $vars = []): Markup
    {
        return $this->privateFragment($template, $vars);
    }

    /** @param array<string, mixed> $vars */
    private function privateFragment(string $template, array $vars): Markup
    {
        if (Plugin::getInstance()->edge()->esiEnabled()) {
            return $this->esi(IncludeSigner::KIND_PRIVATE, $template, $vars);
        }
        return Template::raw(IncludeHtml::script($this->actionUrl($template, $vars)));
    }

    /**
     * The private fragment's URL for the script: an action URL
     * (/actions/craftedge/fragment/render?..., under the site's base path),
     * which craftedge bypasses (httpcache/bypass.go, ReasonAction), so the
     * fetch reaches Craft with the visitor's cookies and is never stored.
     * Through the include path it would be an ordinary cacheable request,
     * sent to Craft without cookies: a new CSRF cookie for every fetch (two
     * forms on a page: one token no longer matches) and no cart or session.
     *
     * @param array<string, mixed> $vars
     */
    private function actionUrl(string $template, array $vars): string
    {
        $signer = $this->signer();
        $site = Craft::$app->getSites()->getCurrentSite();
        $url = UrlHelper::actionUrl('craftedge/fragment/render', $signer->sign(IncludeSigner::KIND_PRIVATE, $site->handle, $template, $vars, time()));
        $parts = parse_url($url);
        return ($parts['path'] ?? '/') . (isset($parts['query']) ? '?' . $parts['query'] : '');
    }

    private function signer(): IncludeSigner
    {
        $signer = Plugin::getInstance()->edge()->signer();
        if ($signer === null) {
            throw new InvalidConfigException('craftedge includes need a signing key: set CRAFTEDGE_INCLUDE_KEY (head -c 32 /dev/urandom | base64)');
        }
        return $signer;
    }

    /** @param array<string, mixed> $vars */
    private function esi(string $kind, string $template, array $vars): Markup
    {
        $html = IncludeHtml::esi($this->url($kind, $template, $vars));
        Plugin::getInstance()->edge()->usedEsi();
        return Template::raw($html);
    }

    /**
     * The signed include URL, as a path under the current site's base URL
     * (so craftedge resolves it on the same site and host).
     *
     * @param array<string, mixed> $vars
     */
    private function url(string $kind, string $template, array $vars): string
    {
        $signer = $this->signer();
        $site = Craft::$app->getSites()->getCurrentSite();
        $signed = $signer->url($kind, $site->handle, $template, $vars, time());
        $base = rtrim((string) parse_url(UrlHelper::siteUrl('', null, null, $site->id), PHP_URL_PATH), '/');
        return $base . $signed;
    }
}
