<?php

declare(strict_types=1);

namespace craftedge\craft\controllers;

use Craft;
use craft\helpers\Html;
use craft\web\Controller;
use craft\web\View;
use craftedge\craft\core\IncludeRefused;
use craftedge\craft\core\IncludeSigner;
use craftedge\craft\Plugin;
use craftedge\craft\twig\CraftedgeVariable;
use yii\web\ForbiddenHttpException;
use yii\web\NotFoundHttpException;
use yii\web\Response;

/**
 * Renders fragments for signed include URLs (/_craftedge/include, see
 * core/IncludeSigner.php), and nothing else: an unsigned, tampered with or
 * expired URL, or one signed for another site, is answered 403 and never
 * renders a template.
 *
 * A cached fragment ("c") is an ordinary site response: the plugin tags it
 * with Craft's cache info and states its expiry, like a page, so a save
 * purges exactly the fragments that show the entry. A private fragment
 * ("p") is rendered with the visitor's cookies and answered
 * `Cache-Control: private, no-store`, so it is never stored or tagged;
 * Craft's CSRF cookie it may set reaches the visitor.
 *
 * Craft APIs (craftcms/cms): src/web/Controller.php ($allowAnonymous,
 * renderTemplate()), src/web/View.php (doesTemplateExist(),
 * TEMPLATE_MODE_SITE), src/helpers/Html.php (csrfInput()),
 * src/services/Sites.php (getCurrentSite()). Craft Cloud's counterpart is
 * src/controllers/EsiController.php (craftcms/cloud-extension-yii2).
 */
class FragmentController extends Controller
{
    protected array|bool|int $allowAnonymous = true;

    public function actionRender(): Response
    {
        $request = Craft::$app->getRequest();
        $response = Craft::$app->getResponse();
        $response->getHeaders()->set('X-Robots-Tag', 'noindex');
        if (!$request->getIsGet() && !$request->getIsHead()) {
            $response->getHeaders()->set('Cache-Control', 'no-store');
            throw new ForbiddenHttpException('craftedge includes are fetched with GET');
        }
        $signer = Plugin::getInstance()->edge()->signer();
        if ($signer === null) {
            $response->getHeaders()->set('Cache-Control', 'no-store');
            throw new NotFoundHttpException('craftedge includes are not configured (CRAFTEDGE_INCLUDE_KEY)');
        }
        try {
            $include = $signer->verify($request->getQueryParams(), time());
        } catch (IncludeRefused $e) {
            Craft::warning('craftedge include refused: ' . $e->getMessage() . ' (' . $request->getUrl() . ')', 'craftedge');
            $response->getHeaders()->set('Cache-Control', 'no-store');
            throw new ForbiddenHttpException('Invalid include URL.');
        }
        if ($include['site'] !== Craft::$app->getSites()->getCurrentSite()->handle) {
            $response->getHeaders()->set('Cache-Control', 'no-store');
            throw new ForbiddenHttpException('Invalid include URL.');
        }

        if ($include['kind'] === IncludeSigner::KIND_PRIVATE) {
            $response->getHeaders()->set('Cache-Control', 'private, no-store');
        }
        if ($include['template'] === CraftedgeVariable::CSRF_TEMPLATE && $include['kind'] === IncludeSigner::KIND_PRIVATE) {
            $response->format = Response::FORMAT_HTML;
            $response->data = Html::csrfInput();
            return $response;
        }
        if (!Craft::$app->getView()->doesTemplateExist($include['template'], View::TEMPLATE_MODE_SITE)) {
            $response->getHeaders()->set('Cache-Control', 'no-store');
            throw new NotFoundHttpException('Fragment template not found.');
        }
        return $this->renderTemplate($include['template'], $include['vars'], View::TEMPLATE_MODE_SITE);
    }
}
