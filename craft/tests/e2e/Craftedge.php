<?php

declare(strict_types=1);

namespace craftedge\craft\tests\e2e;

use RuntimeException;

/**
 * A real craftedge binary in front of a PHP built-in server, on free
 * loopback ports, for the end-to-end tests. The binary is CRAFTEDGE_BIN
 * (the Go test that runs phpunit builds it), else it is built with
 * `go build ./cmd/craftedge` into a temporary directory.
 */
final class Craftedge
{
    public const INCLUDE_KEY = 'include-key-for-the-end-to-end-tests-0123';
    public const PURGE_SECRET = 'whsec_Y3JhZnRlZGdlLXBsdWdpbi10ZXN0LXNlY3JldC0zMmJ5dGVz';
    public const STATUS_USER = 'editor';
    public const STATUS_PASSWORD = 'craftedge-demo';
    private const STATUS_HASH = '$2a$10$.4UP39wv5.F5RhWj4EEDv.bixbZcns88qIZdqP3ENqzXzSV9TwLo2';

    public string $site;
    public string $originUrl;
    private string $dir;
    /** @var list<resource> */
    private array $procs = [];

    public static function binary(): string
    {
        $bin = getenv('CRAFTEDGE_BIN');
        if ($bin !== false && $bin !== '') {
            if (!is_executable($bin)) {
                throw new RuntimeException("CRAFTEDGE_BIN=$bin is not executable");
            }
            return $bin;
        }
        static $built = null;
        if ($built === null) {
            $out = sys_get_temp_dir() . '/craftedge-phpunit-' . getmypid();
            @mkdir($out);
            $repo = realpath(__DIR__ . '/../../..');
            exec('cd ' . escapeshellarg($repo) . ' && go build -o ' . escapeshellarg("$out/craftedge") . ' ./cmd/craftedge 2>&1', $lines, $rc);
            if ($rc !== 0) {
                throw new RuntimeException("building craftedge failed (set CRAFTEDGE_BIN to a built binary):\n" . implode("\n", $lines));
            }
            $built = "$out/craftedge";
        }
        return $built;
    }

    public static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        if ($s === false) {
            throw new RuntimeException("no free port: $errstr");
        }
        $name = stream_socket_get_name($s, false);
        fclose($s);
        return (int) substr($name, strrpos($name, ':') + 1);
    }

    public function start(): void
    {
        $this->dir = sys_get_temp_dir() . '/craftedge-e2e-' . bin2hex(random_bytes(6));
        mkdir($this->dir);
        $origin = self::freePort();
        $this->originUrl = "http://127.0.0.1:$origin";
        $this->spawn([PHP_BINARY, '-S', "127.0.0.1:$origin", __DIR__ . '/../fixtures/origin.php'], 'origin', ['CRAFTEDGE_INCLUDE_KEY' => self::INCLUDE_KEY]);
        self::waitForPort($origin);

        $port = self::freePort();
        $admin = self::freePort();
        $this->site = "http://127.0.0.1:$port";
        $caddyfile = <<<CADDY
{
	admin 127.0.0.1:$admin
	persist_config off
	auto_https off
	craftedge {
		storage {$this->dir}/craftedge.db
		memory 16MiB
	}
}

http://127.0.0.1:$port {
	bind 127.0.0.1
	basic_auth /status* {
		{$this->statusUser()} {$this->statusHash()}
	}
	craftedge_status /status*
	craftedge_purge {
		secret {$this->purgeSecret()}
	}
	craftedge {
		upstream craft
		ttl 5m
	}
	reverse_proxy 127.0.0.1:$origin
}
CADDY;
        file_put_contents("{$this->dir}/Caddyfile", $caddyfile);
        $this->spawn([self::binary(), 'run', '--config', "{$this->dir}/Caddyfile", '--adapter', 'caddyfile'], 'craftedge');
        self::waitForPort($port);
    }

    private function statusUser(): string
    {
        return self::STATUS_USER;
    }

    private function statusHash(): string
    {
        return self::STATUS_HASH;
    }

    private function purgeSecret(): string
    {
        return self::PURGE_SECRET;
    }

    public function stop(): void
    {
        foreach (array_reverse($this->procs) as $p) {
            proc_terminate($p);
            proc_close($p);
        }
        $this->procs = [];
    }

    /** The log of a started process, for failure messages. */
    public function log(string $name): string
    {
        return (string) @file_get_contents("{$this->dir}/$name.log");
    }

    /**
     * GET (or another method) through craftedge.
     *
     * @param list<string> $requestHeaders "Name: value" lines
     * @return array{status: int, headers: array<string, string>, body: string}
     */
    public function request(string $method, string $path, array $requestHeaders = []): array
    {
        $headers = [];
        $ch = curl_init($this->site . $path);
        curl_setopt_array($ch, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_HTTPHEADER => $requestHeaders,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => 10,
            CURLOPT_HEADERFUNCTION => static function ($ch, string $line) use (&$headers): int {
                $kv = explode(':', $line, 2);
                if (count($kv) === 2) {
                    $headers[strtolower(trim($kv[0]))] = trim($kv[1]);
                }
                return strlen($line);
            },
        ]);
        $body = curl_exec($ch);
        if ($body === false) {
            throw new RuntimeException("$method $path: " . curl_error($ch) . "\n" . $this->log('craftedge'));
        }
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        curl_close($ch);
        return ['status' => $status, 'headers' => $headers, 'body' => (string) $body];
    }

    /**
     * @param list<string> $cmd
     * @param array<string, string> $env added to this process's environment
     */
    private function spawn(array $cmd, string $name, array $env = []): void
    {
        $log = "{$this->dir}/$name.log";
        $p = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', $log, 'a'], 2 => ['file', $log, 'a']], $pipes, $this->dir, $env + getenv());
        if ($p === false) {
            throw new RuntimeException("starting $name failed");
        }
        $this->procs[] = $p;
    }

    /** Readiness: polls until the port accepts connections, at most 30 s. */
    private static function waitForPort(int $port): void
    {
        $deadline = microtime(true) + 30;
        while (microtime(true) < $deadline) {
            $s = @fsockopen('127.0.0.1', $port, $errno, $errstr, 0.2);
            if ($s !== false) {
                fclose($s);
                return;
            }
            usleep(20_000);
        }
        throw new RuntimeException("nothing listens on 127.0.0.1:$port after 30 s");
    }
}
