package jobs

import "time"

// backoff returns the delay before retrying a job whose attempts-th attempt
// failed: full jitter, uniform in [0, min(cfg.MaxBackoff,
// cfg.BaseBackoff·2^(attempts-1))]. jitter(n) must return a uniform value in
// [0, n].
func backoff(cfg KindConfig, attempts int, jitter func(n int64) int64) time.Duration {
	return time.Duration(jitter(int64(backoffCeiling(cfg, attempts))))
}

// backoffCeiling is the upper bound of the delay after the attempts-th
// failed attempt, computed without overflow.
func backoffCeiling(cfg KindConfig, attempts int) time.Duration {
	d := cfg.BaseBackoff
	for i := 1; i < attempts && d < cfg.MaxBackoff; i++ {
		if d > cfg.MaxBackoff/2 {
			return cfg.MaxBackoff
		}
		d *= 2
	}
	return min(d, cfg.MaxBackoff)
}
