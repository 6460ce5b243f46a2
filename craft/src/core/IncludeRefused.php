<?php

declare(strict_types=1);

namespace craftedge\craft\core;

/** An include URL that must not be rendered (unsigned, tampered, expired). */
final class IncludeRefused extends \RuntimeException
{
}
