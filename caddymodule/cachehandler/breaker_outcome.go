package cachehandler

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/vendors"
)

// upstreamOutcome classifies a failed or successful upstream call for the
// breaker; written is the status the upstream wrote (0: none). A transport
// error is a connection failure, counted whatever the path: reverse_proxy
// or php_fastcgi returned a 502 or 503 HandlerError without writing a
// response (connection refused, dial timeout, reset or
// closed connection, no upstream available). A written 5xx, our timeout
// and the proxy's own 504 may be one page's bug (a broken template, a slow
// search): failures of their path; so are a live vendor route's vendor 5xx
// and timeouts.
func upstreamOutcome(path string, res *fetchResult, written int) circuit.Outcome {
	if !res.failed {
		return circuit.Outcome{Kind: circuit.Success, Path: path}
	}
	o := circuit.Outcome{Kind: circuit.Failure, Path: path}
	var he caddyhttp.HandlerError
	var vse *vendors.StatusError
	switch {
	case errors.Is(res.failErr, errUpstreamTimeout), errors.Is(res.failErr, vendors.ErrTimeout):
		o.Reason = "timeout"
	case res.errStatus != 0:
		o.Reason = "status " + strconv.Itoa(res.errStatus)
	case errors.As(res.failErr, &vse):
		// A live vendor route (vendorProxy) relays the vendor's 5xx as a
		// HandlerError: still one item's answer, not a transport error.
		o.Reason = "status " + strconv.Itoa(vse.Code)
	case written == 0 && errors.As(res.failErr, &he) &&
		(he.StatusCode == http.StatusBadGateway || he.StatusCode == http.StatusServiceUnavailable):
		o.Kind, o.Reason = circuit.ConnFailure, errText(he.Err)
	case errors.As(res.failErr, &he):
		o.Reason = "status " + strconv.Itoa(he.StatusCode) + ": " + errText(he.Err)
	default:
		o.Reason = "status " + strconv.Itoa(res.failStatus) + ": " + errText(res.failErr)
	}
	return o
}

func errText(err error) string {
	if err == nil {
		return "no response"
	}
	return err.Error()
}
