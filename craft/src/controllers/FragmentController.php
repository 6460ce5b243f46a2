<?php

declare(strict_types=1);

namespace craftedge\craft\controllers;

use Craft;
use craft\helpers\Html;
use craft\web\Controller;
use craft\web\View;
use craftedge\craft\core\FragmentGate;
use craftedge\craft\core\IncludeSigner;
use craftedge\craft\Plugin;
use craftedge\craft\twig\CraftedgeVariable;
use yii\web\HttpException;
use yii\web\NotFoundHttpException;
use yii\web\Response;

/**
 * Renders fragments for signed include URLs (/_craftedge/include, see
 * core/IncludeSigner.php; private fragments fetched by the no-ESI script
 * come as the action craftedge/fragment/render, which craftedge bypasses
 * with the visitor's cookies), and nothing else: core/FragmentGate.php refuses
 * an unsigned, tampered with or expired URL, or one signed for another
 * site, with 403 before any template is looked at.
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
 * src/services/Sites.php (getCurrentSite()), src/web/Request.php
 * (getQueryStringWithoutPath()); yiisoft/yii2
 * framework/web/HttpException.php. Craft Cloud's counterpart is
 * src/controllers/EsiController.php (craftcms/cloud-extension-yii2).
 */
class FragmentController extends Controller
{
    protected array|bool|int $allowAnonymous = true;

    public function actionRender(): Response
    {
        $request = Craft::$app->getRequest();
        $response = Craft::$app->getResponse();
        $signer = Plugin::getInstance()->edge()->signer();
        if ($signer === null) {
            $response->getHeaders()->set('Cache-Control', 'no-store');
            throw new NotFoundHttpException('craftedge includes are not configured (CRAFTEDGE_INCLUDE_KEY)');
        }
        $gate = (new FragmentGate($signer))->check(
            $request->getMethod(),
            // Without Craft's path parameter: Craft's Apache rewrite
            // (index.php?p=...) puts it first.
            $request->getQueryStringWithoutPath(),
            Craft::$app->getSites()->getCurrentSite()->handle,
            time(),
        );
        foreach ($gate['headers'] as $name => $value) {
            $response->getHeaders()->set($name, $value);
        }
        $include = $gate['include'];
        if ($include === null) {
            Craft::warning("craftedge include refused ({$gate['reason']}): " . $request->getUrl(), 'craftedge');
            throw new HttpException($gate['status'], 'Invalid include URL.');
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
