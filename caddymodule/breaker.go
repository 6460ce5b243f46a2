package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/circuit"
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
