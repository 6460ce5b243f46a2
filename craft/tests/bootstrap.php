<?php

declare(strict_types=1);

// The Craft-free classes (src/core) and the test helpers, without Composer:
// Craft and its registry are not needed to test them.
spl_autoload_register(static function (string $class): void {
    foreach (['craftedge\\craft\\core\\' => __DIR__ . '/../src/core/', 'craftedge\\craft\\tests\\' => __DIR__ . '/'] as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }
        }
    }
});
