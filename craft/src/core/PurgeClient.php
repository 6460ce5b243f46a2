<?php

declare(strict_types=1);

namespace craftedge\craft\core;

use InvalidArgumentException;

/**
 * Sends purges to craftedge's `craftedge_purge` endpoint
 * (caddymodule/webhookhandler/purge.go, docs/reference/craftedge_purge.md).
 *
 * A purge is the admin purge route's JSON ({"tags":[...]}, "urls",
 * "prefixes", "hosts", "all"; "mode": "hard" or "soft", absent for
 * craftedge's purge_mode) POSTed with Standard Webhooks signing, the
 * endpoint's default scheme: headers webhook-id, webhook-timestamp (unix
 * seconds) and webhook-signature "v1,<base64 HMAC-SHA256 of
 * id.timestamp.body>", keyed with the base64-decoded part of the
 * "whsec_..." secret.
 *
 * Tags are sent in batches of at most batch_size entries and at most
 * max_body_bytes of JSON (the endpoint takes 64 KiB bodies by default).
 * Each batch is retried on transport errors, 5xx, 408 and 429, with
 * exponential backoff and full jitter, keeping its webhook-id (so a batch
 * that was applied but whose answer was lost is answered "duplicate",
 * not purged twice) and signing a fresh timestamp each time. Other 4xx
 * answers (a wrong secret, a malformed purge) are not retried. Failures
 * are logged and reported in the result; they never throw, so a failed
 * purge never fails the save that caused it.
 */
final class PurgeClient
{
    /** craftedge_purge's default max_body_size (64 KiB). */
    public const MAX_BODY_BYTES = 65536;

    /** @var callable(string, string, array<string, mixed>): void */
    private $logger;
    /** @var callable(int): void */
    private $sleeper;
    /** @var callable(): int */
    private $clock;
    private readonly string $key;

    /**
     * @param string $url the endpoint, e.g. https://www.example.com/.craftedge/purge
     * @param string $secret the craftedge_purge secret, "whsec_<base64>"
     * @param callable|null $logger fn(string $level, string $message, array $context)
     * @param array{batch_size?: int, max_body_bytes?: int, max_attempts?: int, backoff_ms?: int, max_backoff_ms?: int, timeout?: float} $options
     * @param callable|null $sleeper fn(int $microseconds), usleep by default
     * @param callable|null $clock fn(): int unix seconds, time() by default
     */
    public function __construct(
        private readonly string $url,
        string $secret,
        ?callable $logger = null,
        private readonly array $options = [],
        ?callable $sleeper = null,
        ?callable $clock = null,
    ) {
        if (!preg_match('~^https?://[^/]+~i', $url)) {
            throw new InvalidArgumentException(sprintf('craftedge purge URL %s: want an absolute http(s) URL such as https://www.example.com/.craftedge/purge', json_encode($url)));
        }
        $this->key = self::decodeSecret($secret);
        $this->logger = $logger ?? static function (string $level, string $message, array $context): void {
            error_log("craftedge [$level] $message " . json_encode($context));
        };
        $this->sleeper = $sleeper ?? static function (int $us): void {
            usleep($us);
        };
        $this->clock = $clock ?? 'time';
    }

    /**
     * Decodes a Standard Webhooks secret: "whsec_" and base64 (padding
     * optional), as craftedge does (webhook/webhook.go).
     */
    public static function decodeSecret(string $secret): string
    {
        $b64 = str_starts_with($secret, 'whsec_') ? substr($secret, 6) : $secret;
        $b64 = rtrim($b64, '=');
        $key = $b64 === '' ? false : base64_decode($b64 . str_repeat('=', (4 - strlen($b64) % 4) % 4), true);
        if ($key === false || $key === '') {
            throw new InvalidArgumentException('craftedge purge secret: want "whsec_" followed by base64 (generate one with: echo "whsec_$(head -c 32 /dev/urandom | base64)")');
        }
        return $key;
    }

    /**
     * Signs a body as craftedge_purge's standard scheme expects.
     *
     * @return array<string, string> the three webhook-* headers
     */
    public function sign(string $id, int $timestamp, string $body): array
    {
        $mac = base64_encode(hash_hmac('sha256', "$id.$timestamp.$body", $this->key, true));
        return [
            'webhook-id' => $id,
            'webhook-timestamp' => (string) $timestamp,
            'webhook-signature' => "v1,$mac",
        ];
    }

    /** A purge's mode (craftedge_purge's "mode"): removes the copies. */
    public const MODE_HARD = 'hard';
    /** A purge's mode: marks the copies stale, kept for a slow Craft. */
    public const MODE_SOFT = 'soft';

    /**
     * Purges tags, in batches, in a mode (MODE_HARD, MODE_SOFT), or, when
     * null, in craftedge's purge_mode (soft by default).
     *
     * @param list<string> $tags encoded craftedge tags
     */
    public function purgeTags(array $tags, ?string $mode = null): PurgeResult
    {
        if ($mode !== null && $mode !== self::MODE_HARD && $mode !== self::MODE_SOFT) {
            throw new InvalidArgumentException(sprintf('craftedge purge mode %s: want "hard", "soft" or null', json_encode($mode)));
        }
        $tags = array_values(array_unique(array_filter($tags, static fn ($t) => is_string($t) && $t !== '')));
        $extra = $mode === null ? [] : ['mode' => $mode];
        $result = new PurgeResult();
        foreach ($this->batches('tags', $tags, $extra) as $batch) {
            $result->add($this->send(['tags' => $batch] + $extra), count($batch));
        }
        return $result;
    }

    /**
     * Purges absolute URLs (a URL without a query purges every query
     * variant of its path), in batches.
     *
     * @param list<string> $urls
     */
    public function purgeUrls(array $urls): PurgeResult
    {
        $result = new PurgeResult();
        foreach ($this->batches('urls', array_values(array_unique($urls))) as $batch) {
            $result->add($this->send(['urls' => $batch]), count($batch));
        }
        return $result;
    }

    /**
     * Splits entries into batches of at most batch_size entries whose JSON
     * body ({"<field>":[...]}) is at most max_body_bytes, craftedge_purge's
     * max_body_size (64 KiB by default): a larger body is refused with 413
     * and not retried. An entry too large on its own is sent alone (and
     * refused, and logged).
     *
     * @param list<string> $entries
     * @param array<string, string> $extra other fields of the body ("mode")
     * @return list<list<string>>
     */
    private function batches(string $field, array $entries, array $extra = []): array
    {
        $maxCount = max(1, $this->options['batch_size'] ?? 500);
        $maxBytes = max(64, $this->options['max_body_bytes'] ?? self::MAX_BODY_BYTES);
        $empty = strlen(json_encode([$field => []] + $extra, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR));
        $out = [];
        $batch = [];
        $bytes = $empty;
        foreach ($entries as $e) {
            $add = strlen(json_encode($e, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR)) + ($batch === [] ? 0 : 1);
            if ($batch !== [] && (count($batch) >= $maxCount || $bytes + $add > $maxBytes)) {
                $out[] = $batch;
                $batch = [];
                $bytes = $empty;
                $add--;
            }
            $batch[] = $e;
            $bytes += $add;
        }
        if ($batch !== []) {
            $out[] = $batch;
        }
        return $out;
    }

    /**
     * Sends one purge body: {"tags": ...}, {"prefixes": ...}, {"all": true}...
     *
     * @param array<string, mixed> $purge
     * @return array{ok: bool, status: int, attempts: int, body: string, error: string, purged: int}
     */
    public function send(array $purge): array
    {
        $body = json_encode($purge, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
        $id = 'craft_' . bin2hex(random_bytes(12));
        $max = max(1, $this->options['max_attempts'] ?? 4);
        $status = 0;
        $answer = '';
        $error = '';
        for ($attempt = 1; $attempt <= $max; $attempt++) {
            [$status, $answer, $error] = $this->post($body, $this->sign($id, ($this->clock)(), $body));
            if ($status >= 200 && $status < 300) {
                $decoded = json_decode($answer, true);
                return [
                    'ok' => true, 'status' => $status, 'attempts' => $attempt, 'body' => $answer, 'error' => '',
                    'purged' => is_array($decoded) && is_int($decoded['purged'] ?? null) ? $decoded['purged'] : 0,
                ];
            }
            $retryable = $status === 0 || $status >= 500 || $status === 408 || $status === 429;
            if (!$retryable || $attempt === $max) {
                break;
            }
            ($this->logger)('warning', 'craftedge purge failed, retrying', [
                'url' => $this->url, 'delivery' => $id, 'attempt' => $attempt, 'status' => $status,
                'error' => $error !== '' ? $error : self::excerpt($answer),
            ]);
            ($this->sleeper)($this->backoff($attempt));
        }
        ($this->logger)('error', 'craftedge purge failed; the pages stay cached until their ttl or the next purge', [
            'url' => $this->url, 'delivery' => $id, 'attempts' => $attempt, 'status' => $status,
            'error' => $error !== '' ? $error : self::excerpt($answer), 'purge' => self::excerpt($body),
        ]);
        return ['ok' => false, 'status' => $status, 'attempts' => $attempt, 'body' => $answer, 'error' => $error, 'purged' => 0];
    }

    /** Microseconds to wait after a failed attempt: full jitter, capped. */
    public function backoff(int $attempt): int
    {
        $base = max(1, $this->options['backoff_ms'] ?? 200);
        $cap = max($base, $this->options['max_backoff_ms'] ?? 5000);
        $ceil = min($cap, $base * (2 ** ($attempt - 1)));
        return random_int((int) ($ceil / 2), $ceil) * 1000;
    }

    /**
     * @param array<string, string> $headers
     * @return array{0: int, 1: string, 2: string} status (0 on a transport error), body, error
     */
    private function post(string $body, array $headers): array
    {
        $lines = ['Content-Type: application/json', 'User-Agent: craftedge-craft'];
        foreach ($headers as $k => $v) {
            $lines[] = "$k: $v";
        }
        $timeout = (float) ($this->options['timeout'] ?? 5.0);
        $ch = curl_init($this->url);
        curl_setopt_array($ch, [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_HTTPHEADER => $lines,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_CONNECTTIMEOUT_MS => (int) ($timeout * 1000),
            CURLOPT_TIMEOUT_MS => (int) ($timeout * 1000),
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
        ]);
        $answer = curl_exec($ch);
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $error = $answer === false ? curl_error($ch) : '';
        curl_close($ch);
        return [$answer === false ? 0 : $status, $answer === false ? '' : (string) $answer, $error];
    }

    private static function excerpt(string $s): string
    {
        return strlen($s) > 300 ? substr($s, 0, 300) . '…' : $s;
    }
}
