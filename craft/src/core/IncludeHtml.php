<?php

declare(strict_types=1);

namespace craftedge\craft\core;

/**
 * The markup of an include: an ESI tag where craftedge assembles the page,
 * or a small script fetching the fragment where it does not.
 */
final class IncludeHtml
{
    /** The response header that asks craftedge to process ESI in a page. */
    public const SURROGATE_CONTROL = 'content="ESI/1.0"';

    /** `<esi:include>` of a signed include path. */
    public static function esi(string $url): string
    {
        return '<esi:include src="' . htmlspecialchars($url, ENT_QUOTES | ENT_HTML5, 'UTF-8') . '" onerror="continue"/>';
    }

    /**
     * A placeholder and an inline script that replaces it with the
     * fragment, fetched with the visitor's cookies (as Blitz's
     * includeDynamic does). Without JavaScript the placeholder stays empty.
     */
    public static function script(string $url, ?string $nonce = null): string
    {
        $u = json_encode($url, JSON_UNESCAPED_SLASHES | JSON_HEX_TAG | JSON_HEX_AMP | JSON_HEX_APOS | JSON_HEX_QUOT | JSON_THROW_ON_ERROR);
        $n = $nonce === null ? '' : ' nonce="' . htmlspecialchars($nonce, ENT_QUOTES | ENT_HTML5, 'UTF-8') . '"';
        return '<span data-craftedge-include hidden></span><script' . $n . '>(function(s){var p=s.previousElementSibling;'
            . 'fetch(' . $u . ',{credentials:"same-origin"}).then(function(r){return r.ok?r.text():""}).then(function(h){'
            . 'var t=document.createElement("template");t.innerHTML=h;p.replaceWith(t.content);s.remove()})})(document.currentScript)</script>';
    }

    /**
     * Whether a request says its cache assembles ESI: craftedge sends
     * `Surrogate-Capability: craftedge="ESI/1.0"` (Edge Architecture
     * Specification 1.0) on the requests it makes to Craft.
     */
    public static function edgeSupportsEsi(?string $surrogateCapability): bool
    {
        return $surrogateCapability !== null && preg_match('~="?[^",]*\bESI/1\.0\b~i', $surrogateCapability) === 1;
    }
}
