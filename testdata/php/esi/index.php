<?php
// Test origin for craftedge's edge-side includes (issue 19): a Craft-like
// site whose contact form carries Yii's CSRF token from a private ESI
// fragment, so the page itself is public and cacheable. Served by php-cgi
// behind `php_fastcgi` (every path reaches this front controller).
//
// CSRF as Yii 2 and Craft 5 do it, simplified where noted:
//   - yiisoft/yii2 framework/web/Request.php: getCsrfToken() loads the raw
//     token from the CSRF cookie (loadCsrfToken) or generates one
//     (generateCsrfToken, which adds the cookie to the response), and returns
//     Security::maskToken($token); validateCsrfToken() skips GET/HEAD/OPTIONS
//     and compares Security::unmaskToken(<posted value>) with the cookie's
//     token (compareString, i.e. hash_equals). A failure is
//     BadRequestHttpException('Unable to verify your data submission.').
//   - yiisoft/yii2 framework/base/Security.php: maskToken($token) is
//     base64UrlEncode($mask . ($mask ^ $token)) with a random mask as long as
//     the token; unmaskToken() decodes, halves, XORs, and answers '' for an
//     odd length. StringHelper::base64UrlEncode is strtr(base64_encode(),
//     '+/', '-_').
//   - craftcms/cms src/web/Request.php: generateCsrfToken() uses a nonce of
//     generateRandomString(40) as the token of a guest (signed in users get
//     nonce|hash, not modelled here); the parameter and cookie are named
//     CRAFT_CSRF_TOKEN (config csrfTokenName).
// Simplification: Craft signs its cookies (Yii cookie validation); here the
// cookie holds the raw token, which changes nothing the edge sees.

const CSRF_PARAM = 'CRAFT_CSRF_TOKEN';

function base64url_encode(string $s): string { return strtr(base64_encode($s), '+/', '-_'); }
function base64url_decode(string $s): string { return (string) base64_decode(strtr($s, '-_', '+/')); }

function mask_token(string $token): string {
    $mask = random_bytes(strlen($token));
    return base64url_encode($mask . ($mask ^ $token));
}

function unmask_token(string $masked): string {
    $decoded = base64url_decode($masked);
    $length = strlen($decoded) / 2;
    if (!is_int($length)) {
        return '';
    }
    return substr($decoded, $length, $length) ^ substr($decoded, 0, $length);
}

// generate_token is Craft's guest token: 40 characters of [A-Za-z0-9_-].
function generate_token(): string {
    return substr(base64url_encode(random_bytes(30)), 0, 40);
}

// csrf_token returns the masked token for this visitor, issuing the cookie
// to a visitor without a (well-formed) one, as getCsrfToken() does.
function csrf_token(): string {
    $token = $_COOKIE[CSRF_PARAM] ?? '';
    if (!is_string($token) || !preg_match('/^[A-Za-z0-9_-]{40}$/', $token)) {
        $token = generate_token();
        setcookie(CSRF_PARAM, $token, ['path' => '/', 'httponly' => true, 'samesite' => 'Lax']);
        $_COOKIE[CSRF_PARAM] = $token;
    }
    return mask_token($token);
}

function csrf_valid(): bool {
    $true = $_COOKIE[CSRF_PARAM] ?? null;
    $posted = $_POST[CSRF_PARAM] ?? null;
    if (!is_string($true) || $true === '' || !is_string($posted)) {
        return false;
    }
    return hash_equals($true, unmask_token($posted));
}

function csrf_input(): string {
    return '<input type="hidden" name="' . CSRF_PARAM . '" value="' . htmlspecialchars(csrf_token()) . '">';
}

function form(string $tokenMarkup): string {
    return "<form method=\"post\" action=\"/contact\">\n" . $tokenMarkup . "\n"
        . "<input name=\"message\"><button>Send</button>\n</form>\n";
}

$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH) ?: '/';
$method = $_SERVER['REQUEST_METHOD'] ?? 'GET';

if ($method === 'POST') {
    if (!csrf_valid()) {
        http_response_code(400);
        header('Content-Type: text/plain; charset=utf-8');
        header('Cache-Control: no-store');
        echo "Unable to verify your data submission.\n";
        exit;
    }
    header('Content-Type: text/plain; charset=utf-8');
    header('Cache-Control: no-store');
    echo "Thanks\n";
    exit;
}

switch ($path) {
case '/_fragments/csrf':
    // The private island: this visitor's own masked token (and cookie).
    header('Content-Type: text/html; charset=utf-8');
    header('Cache-Control: private, no-store');
    echo csrf_input();
    exit;

case '/contact':
    // The public page: no cookie, no token of anyone's; the edge fills the
    // island per visitor. The <esi:remove> content is what a client sees
    // when no ESI processor is in front (a link to the form without ESI).
    header('Content-Type: text/html; charset=utf-8');
    header('Cache-Control: public, max-age=300');
    header('Surrogate-Control: content="ESI/1.0"');
    header('Cache-Tag: page-contact');
    echo "<!doctype html>\n<html><body><h1>Contact</h1>\n";
    echo form('<esi:include src="/_fragments/csrf"/><esi:remove><a href="/contact-inline">Use the form without ESI</a></esi:remove>');
    echo "</body></html>\n";
    exit;

case '/contact-inline':
    // The page as Craft renders it without ESI: the token (and, for a new
    // visitor, the cookie) inside the page. Cached, it serves one visitor's
    // token to everybody (the failure issue 19 describes).
    header('Content-Type: text/html; charset=utf-8');
    header('Cache-Control: public, max-age=300');
    echo "<!doctype html>\n<html><body><h1>Contact</h1>\n" . form(csrf_input()) . "</body></html>\n";
    exit;
}

http_response_code(404);
header('Content-Type: text/plain; charset=utf-8');
echo "not found\n";
