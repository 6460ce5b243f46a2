package caddymodule

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/circuit"
	"github.com/craftedge/craftedge/vendors"
)

// upstreamBreaker is a pooled circuit breaker of a Craft upstream: it
// survives a reload that keeps the upstream's breaker settings.
type upstreamBreaker struct{ *circuit.Breaker }

// Destruct implements caddy.Destructor (breakers live in the usage pool).
func (upstreamBreaker) Destruct() error { return nil }

// newUpstreamBreaker returns the breaker of a Craft upstream: transitions
// are logged with the upstream's name and counted in
// craftedge_breaker_transitions_total.
func newUpstreamBreaker(name string, cfg circuit.Config, log *zap.Logger) upstreamBreaker {
	initMetrics()
	return upstreamBreaker{circuit.New(cfg, circuit.Options{
		Logger: log.With(zap.String("upstream", name)),
		Now:    nowFunc,
		OnChange: func(_, to circuit.State, _ string) {
			metrics.breakerTransitions.WithLabelValues(name, to.String()).Inc()
		},
	})}
}

// status describes the breaker for health output.
func (b upstreamBreaker) status() (state string, since time.Time, opens uint64) {
	st := b.Status()
	return st.State.String(), st.Since, st.Transitions[circuit.Open]
}

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

// parseBreaker parses the breaker subdirective of the craftedge handler and
// of a vendor block (the dispenser is on the "breaker" token):
//
//	breaker off
//	breaker {
//	    failures  <n>         # consecutive failures that open it (default 5)
//	    min_paths <n>         # distinct paths they must span (default 3)
//	    successes <n>         # trial successes that close it (default 1)
//	    cooldown  <duration>  # how long it stays open (default 30s)
//	}
//
// Zero or negative values are errors naming the line: no threshold is
// meaningful at zero, and `breaker off` is how to turn it off. The options
// amend cfg (a later breaker block amends an earlier one).
func parseBreaker(d *caddyfile.Dispenser, cfg circuit.Config) (circuit.Config, error) {
	if d.NextArg() {
		if d.Val() != "off" {
			return cfg, d.Errf("breaker takes 'off' or a block, got %q", d.Val())
		}
		if d.NextArg() {
			return cfg, d.ArgErr()
		}
		if d.NextBlock(d.Nesting()) {
			return cfg, d.Errf("breaker off takes no block")
		}
		cfg.Disabled = true
		return cfg, nil
	}
	cfg.Disabled = false
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "failures", "min_paths", "successes":
			hint := ""
			if opt == "failures" {
				hint = " (use 'breaker off' to turn the breaker off)"
			}
			if opt == "min_paths" {
				hint = " (1 means failures on any paths open it)"
			}
			n, err := parseIntArg(d, "breaker "+opt, 1, 1<<16, hint)
			if err != nil {
				return cfg, err
			}
			switch opt {
			case "failures":
				cfg.Failures = n
			case "min_paths":
				cfg.MinPaths = n
			default:
				cfg.Successes = n
			}
		case "cooldown":
			dur, err := parseDuration(d)
			if err != nil {
				return cfg, err
			}
			if dur == 0 {
				return cfg, d.Errf("breaker cooldown must be positive (use 'breaker off' to turn the breaker off)")
			}
			if d.NextArg() {
				return cfg, d.ArgErr()
			}
			cfg.Cooldown = circuit.Duration(dur)
		default:
			return cfg, d.Errf("unrecognized breaker option %q (want failures, min_paths, successes or cooldown)", opt)
		}
	}
	return cfg, nil
}

// upstreamState is one named upstream of a config: its breaker settings
// and the (pooled, reload-surviving) breaker.
type upstreamState struct {
	name    string
	config  circuit.Config
	breaker upstreamBreaker
	// handlerSnapshotOnly: a handler of this upstream has snapshot_only on.
	handlerSnapshotOnly bool
}

var _ caddy.Destructor = upstreamBreaker{}
