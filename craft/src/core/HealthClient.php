<?php

declare(strict_types=1);

namespace craftedge\craft\core;

use InvalidArgumentException;
use RuntimeException;

/**
 * Reads craftedge's status page (directive craftedge_status,
 * caddymodule/status/status.go, docs/reference/craftedge_status.md) from
 * the server side: `<mount>/status.json` for health, and its actions for
 * "retry dead letters", with the basic-auth user the page is mounted
 * behind.
 *
 * Actions are protected against CSRF by the status page: a SameSite
 * cookie (craftedge_status_csrf) set by the page and an X-CSRF-Token
 * header derived from it (the page's data-csrf attribute). The client
 * does what the page's script does: load the page, keep its cookie and
 * token, then POST the action as JSON.
 */
final class HealthClient
{
    private readonly string $mount;
    /** @var array{0: string, 1: string}|null the status page's CSRF cookie and token */
    private ?array $csrf = null;

    /**
     * @param string $mount the status page's URL, e.g. https://www.example.com/status
     */
    public function __construct(
        string $mount,
        private readonly string $user = '',
        private readonly string $password = '',
        private readonly float $timeout = 5.0,
    ) {
        if (!preg_match('~^https?://[^/]+~i', $mount)) {
            throw new InvalidArgumentException(sprintf('craftedge status URL %s: want the absolute URL of the craftedge_status page, e.g. https://www.example.com/status', json_encode($mount)));
        }
        $this->mount = rtrim($mount, '/');
    }

    /**
     * The status JSON, decoded.
     *
     * @return array<string, mixed>
     * @throws RuntimeException when craftedge cannot be reached or answers badly
     */
    public function status(): array
    {
        [$code, $body] = $this->request('GET', $this->mount . '/status.json');
        if ($code !== 200) {
            throw new RuntimeException(sprintf('craftedge status: %s/status.json answered %d: %s', $this->mount, $code, self::errorOf($body)));
        }
        $data = json_decode($body, true);
        if (!is_array($data)) {
            throw new RuntimeException(sprintf('craftedge status: %s/status.json is not JSON', $this->mount));
        }
        return $data;
    }

    /**
     * The status JSON reduced to what the dashboard widget and utility
     * show, with defaults for anything missing.
     *
     * @param array<string, mixed> $s from status()
     * @return array<string, mixed>
     */
    public static function summary(array $s): array
    {
        $jobs = is_array($s['jobs'] ?? null) ? $s['jobs'] : [];
        $kinds = [];
        foreach (is_array($jobs['kinds'] ?? null) ? $jobs['kinds'] : [] as $k) {
            if (is_array($k) && isset($k['kind'])) {
                $kinds[] = [
                    'kind' => (string) $k['kind'],
                    'status' => (string) ($k['status'] ?? 'green'),
                    'ready' => (int) ($k['ready'] ?? 0),
                    'dead' => (int) ($k['dead'] ?? 0),
                    'queueAgeSeconds' => (float) ($k['queue_age_seconds'] ?? 0),
                ];
            }
        }
        $upstreams = [];
        foreach (is_array($s['upstreams'] ?? null) ? $s['upstreams'] : [] as $u) {
            if (is_array($u)) {
                $upstreams[] = [
                    'name' => (string) ($u['name'] ?? ''),
                    'status' => (string) ($u['status'] ?? 'green'),
                    'breaker' => (string) ($u['breaker'] ?? ''),
                    'snapshotOnly' => (bool) ($u['snapshot_only'] ?? false),
                    'why' => array_map('strval', is_array($u['why'] ?? null) ? $u['why'] : []),
                ];
            }
        }
        $vendors = [];
        foreach (is_array($s['vendors'] ?? null) ? $s['vendors'] : [] as $v) {
            if (is_array($v)) {
                $vendors[] = [
                    'name' => (string) ($v['name'] ?? ''),
                    'status' => (string) ($v['status'] ?? 'green'),
                    'breaker' => (string) ($v['breaker'] ?? ''),
                    'lastSuccessAt' => isset($v['last_success_at']) ? (string) $v['last_success_at'] : null,
                    'lastError' => (string) ($v['last_error'] ?? ''),
                ];
            }
        }
        $mem = is_array($s['memory'] ?? null) ? $s['memory'] : [];
        $snap = is_array($s['snapshots'] ?? null) ? $s['snapshots'] : [];
        $ks = is_array($s['kill_switch'] ?? null) ? $s['kill_switch'] : [];
        return [
            'status' => (string) ($s['status'] ?? 'red'),
            'why' => array_map('strval', is_array($s['why'] ?? null) ? $s['why'] : []),
            'time' => (string) ($s['time'] ?? ''),
            'memory' => [
                'entries' => (int) ($mem['entries'] ?? 0),
                'bytes' => (int) ($mem['bytes'] ?? 0),
                'maxBytes' => (int) ($mem['max_bytes'] ?? 0),
                'hitRatio' => isset($mem['hit_ratio']) ? (float) $mem['hit_ratio'] : null,
            ],
            'snapshots' => $snap,
            'killSwitch' => [
                'configured' => (bool) ($ks['configured'] ?? false),
                'override' => (bool) ($ks['override'] ?? false),
            ],
            'upstreams' => $upstreams,
            'vendors' => $vendors,
            'jobs' => [
                'status' => (string) ($jobs['status'] ?? 'green'),
                'ready' => (int) ($jobs['ready'] ?? 0),
                'running' => (int) ($jobs['running'] ?? 0),
                'dead' => (int) ($jobs['dead'] ?? 0),
                'queueAgeSeconds' => (float) ($jobs['queue_age_seconds'] ?? 0),
                'kinds' => $kinds,
            ],
            'deadLetters' => is_array($s['dead_letters'] ?? null) ? $s['dead_letters'] : [],
        ];
    }

    /**
     * Replays the dead letters of every job kind that has some.
     *
     * @return array<string, int> kind => jobs replayed
     * @throws RuntimeException when the status page or an action fails
     */
    public function retryDeadLetters(): array
    {
        $summary = self::summary($this->status());
        $kinds = array_values(array_filter($summary['jobs']['kinds'], static fn (array $k) => $k['dead'] > 0));
        if ($kinds === []) {
            return [];
        }
        $out = [];
        foreach ($kinds as $k) {
            $out[$k['kind']] = $this->replay($k['kind']);
        }
        return $out;
    }

    /**
     * Replays the dead letters of one job kind through the status page's
     * action, as its "Replay all" button does.
     *
     * @return int jobs replayed
     * @throws RuntimeException when the status page or the action fails
     */
    public function replay(string $kind): int
    {
        $this->csrf ??= $this->csrf();
        [$cookie, $token] = $this->csrf;
        [$code, $body] = $this->request('POST', $this->mount . '/actions/replay', json_encode(['kind' => $kind]), [
            'Content-Type: application/json',
            'X-CSRF-Token: ' . $token,
            'Cookie: craftedge_status_csrf=' . $cookie,
        ]);
        $data = json_decode($body, true);
        if ($code !== 200 || !is_array($data)) {
            throw new RuntimeException(sprintf('craftedge status: replaying %s answered %d: %s', $kind, $code, self::errorOf($body)));
        }
        return (int) ($data['replayed'] ?? 0);
    }

    /**
     * Loads the status page for its CSRF cookie and token.
     *
     * @return array{0: string, 1: string}
     */
    private function csrf(): array
    {
        $headers = [];
        [$code, $body] = $this->request('GET', $this->mount . '/', null, [], $headers);
        if ($code !== 200) {
            throw new RuntimeException(sprintf('craftedge status: loading %s/ answered %d: %s', $this->mount, $code, self::errorOf($body)));
        }
        $cookie = null;
        foreach ($headers as $h) {
            if (preg_match('/^set-cookie:\s*craftedge_status_csrf=([A-Z2-7]+)/i', $h, $m)) {
                $cookie = $m[1];
            }
        }
        if ($cookie === null || !preg_match('/data-csrf="([A-Za-z0-9_-]+)"/', $body, $m)) {
            throw new RuntimeException('craftedge status: the status page gave no CSRF cookie or token');
        }
        return [$cookie, $m[1]];
    }

    /**
     * @param list<string> $headers
     * @param list<string>|null $responseHeaders filled with the response's header lines
     * @return array{0: int, 1: string}
     */
    private function request(string $method, string $url, ?string $body = null, array $headers = [], ?array &$responseHeaders = null): array
    {
        $responseHeaders = [];
        $ch = curl_init($url);
        $opts = [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_HTTPHEADER => array_merge(['Accept: application/json, text/html', 'User-Agent: craftedge-craft'], $headers),
            CURLOPT_CONNECTTIMEOUT_MS => (int) ($this->timeout * 1000),
            CURLOPT_TIMEOUT_MS => (int) ($this->timeout * 1000),
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
            CURLOPT_HEADERFUNCTION => static function ($ch, string $line) use (&$responseHeaders): int {
                $responseHeaders[] = rtrim($line, "\r\n");
                return strlen($line);
            },
        ];
        if ($this->user !== '') {
            $opts[CURLOPT_HTTPAUTH] = CURLAUTH_BASIC;
            $opts[CURLOPT_USERPWD] = $this->user . ':' . $this->password;
        }
        if ($body !== null) {
            $opts[CURLOPT_POSTFIELDS] = $body;
        }
        curl_setopt_array($ch, $opts);
        $answer = curl_exec($ch);
        if ($answer === false) {
            $err = curl_error($ch);
            curl_close($ch);
            throw new RuntimeException(sprintf('craftedge status: %s %s: %s', $method, $url, $err));
        }
        $code = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        curl_close($ch);
        return [$code, (string) $answer];
    }

    private static function errorOf(string $body): string
    {
        $d = json_decode($body, true);
        if (is_array($d) && isset($d['error']) && is_string($d['error'])) {
            return $d['error'];
        }
        return strlen($body) > 200 ? substr($body, 0, 200) . '…' : $body;
    }
}
