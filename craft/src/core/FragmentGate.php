<?php

declare(strict_types=1);

namespace craftedge\craft\core;

/**
 * Decides whether a request to the include path may render a fragment,
 * and with which headers: what the plugin's fragment controller does
 * before it renders anything.
 *
 * - Only GET and HEAD (405 otherwise).
 * - Only validly signed, unexpired URLs with nothing added and no
 *   parameter repeated (403 otherwise).
 * - Only for the site the URL was signed for (403 otherwise).
 * Refusals are `Cache-Control: no-store`, so no cache keeps them. A private
 * fragment ("p") is answered `private, no-store`: rendered per visitor,
 * never stored or shared. Every answer is `X-Robots-Tag: noindex`.
 */
final class FragmentGate
{
    public function __construct(private readonly IncludeSigner $signer)
    {
    }

    /**
     * @param string $rawQuery the request's raw query string, without
     *                         Craft's path parameter ("p", added by the
     *                         Apache and some nginx rewrites)
     * @return array{status: int, headers: array<string, string>, include: array{kind: string, site: string, template: string, vars: array<string, mixed>}|null, reason: string}
     */
    public function check(string $method, string $rawQuery, string $currentSite, int $now): array
    {
        $headers = ['X-Robots-Tag' => 'noindex'];
        if ($method !== 'GET' && $method !== 'HEAD') {
            return ['status' => 405, 'headers' => $headers + ['Allow' => 'GET, HEAD', 'Cache-Control' => 'no-store'], 'include' => null, 'reason' => "method $method"];
        }
        try {
            $include = $this->signer->verifyQueryString($rawQuery, $now);
        } catch (IncludeRefused $e) {
            return ['status' => 403, 'headers' => $headers + ['Cache-Control' => 'no-store'], 'include' => null, 'reason' => $e->getMessage()];
        }
        if ($include['site'] !== $currentSite) {
            return ['status' => 403, 'headers' => $headers + ['Cache-Control' => 'no-store'], 'include' => null, 'reason' => "signed for site {$include['site']}, requested on $currentSite"];
        }
        if ($include['kind'] === IncludeSigner::KIND_PRIVATE) {
            $headers['Cache-Control'] = 'private, no-store';
        }
        return ['status' => 200, 'headers' => $headers, 'include' => $include, 'reason' => ''];
    }
}
