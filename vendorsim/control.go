package vendorsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Control route paths.
const (
	ControlChaosPath    = ControlPrefix + "chaos"
	ControlRequestsPath = ControlPrefix + "requests"
)

// chaosWire is the JSON form of the knobs on the control routes. Durations
// are Go duration strings ("250ms") or integer nanoseconds.
type chaosWire struct {
	Latency         jsonDuration `json:"latency"`
	Jitter          jsonDuration `json:"jitter"`
	ErrorRate       float64      `json:"error_rate"`
	ThrottleNext    int          `json:"throttle_next"`
	ThrottleRate    float64      `json:"throttle_rate"`
	RetryAfter      jsonDuration `json:"retry_after"`
	SchemaChange    bool         `json:"schema_change"`
	Outage          OutageMode   `json:"outage"`
	FailAfterWrite  float64      `json:"fail_after_write"`
	Only            []string     `json:"only"`
	WebhookDropRate float64      `json:"webhook_drop_rate"`
}

func toWire(c ChaosConfig, dropRate float64) chaosWire {
	return chaosWire{
		Latency: jsonDuration(c.Latency), Jitter: jsonDuration(c.Jitter),
		ErrorRate: c.ErrorRate, ThrottleNext: c.ThrottleNext, ThrottleRate: c.ThrottleRate,
		RetryAfter: jsonDuration(c.RetryAfter), SchemaChange: c.SchemaChange, Outage: c.Outage,
		FailAfterWrite: c.FailAfterWrite, Only: c.Only, WebhookDropRate: dropRate,
	}
}

func (w chaosWire) config() ChaosConfig {
	return ChaosConfig{
		Latency: time.Duration(w.Latency), Jitter: time.Duration(w.Jitter),
		ErrorRate: w.ErrorRate, ThrottleNext: w.ThrottleNext, ThrottleRate: w.ThrottleRate,
		RetryAfter: time.Duration(w.RetryAfter), SchemaChange: w.SchemaChange, Outage: w.Outage,
		FailAfterWrite: w.FailAfterWrite, Only: w.Only,
	}
}

// jsonDuration is a time.Duration in JSON: a duration string or integer
// nanoseconds in, a duration string out.
type jsonDuration time.Duration

// MarshalJSON writes the duration as a string such as "250ms".
func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or integer nanoseconds.
func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = jsonDuration(v)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("duration %s: want a string such as \"250ms\" or integer nanoseconds", b)
	}
	*d = jsonDuration(n)
	return nil
}

func (e *Endpoint) registerControl() {
	e.control.HandleFunc("GET "+ControlChaosPath, e.getChaos)
	e.control.HandleFunc("POST "+ControlChaosPath, e.postChaos)
	e.control.HandleFunc("DELETE "+ControlChaosPath, e.deleteChaos)
	e.control.HandleFunc("GET "+ControlRequestsPath, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, e.Requests())
	})
	e.control.HandleFunc("DELETE "+ControlRequestsPath, func(w http.ResponseWriter, _ *http.Request) {
		e.Reset()
		writeJSON(w, http.StatusOK, e.Requests())
	})
}

func (e *Endpoint) currentWire() chaosWire {
	return toWire(e.chaos.Get(), e.sim.WebhookDropRate())
}

func (e *Endpoint) getChaos(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, e.currentWire())
}

// postChaos merges the body into the current knobs: fields present in the
// body replace their value, absent ones keep it. Unknown fields and
// out-of-range values are refused with 400 and change nothing.
func (e *Endpoint) postChaos(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeControlError(w, http.StatusBadRequest, fmt.Errorf("reading body: %w", err))
		return
	}
	var dropRate float64
	err = e.chaos.update(func(cur *ChaosConfig) error {
		wire := toWire(*cur, e.sim.WebhookDropRate())
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&wire); err != nil {
			return fmt.Errorf("decoding chaos knobs: %w", err)
		}
		if err := validDropRate(wire.WebhookDropRate); err != nil {
			return err
		}
		*cur = wire.config()
		dropRate = wire.WebhookDropRate
		return nil
	})
	if err != nil {
		writeControlError(w, http.StatusBadRequest, err)
		return
	}
	_ = e.sim.SetWebhookDropRate(dropRate) // validated above
	writeJSON(w, http.StatusOK, e.currentWire())
}

func (e *Endpoint) deleteChaos(w http.ResponseWriter, _ *http.Request) {
	e.chaos.Clear()
	_ = e.sim.SetWebhookDropRate(0)
	writeJSON(w, http.StatusOK, e.currentWire())
}

func writeControlError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]any{"error": err.Error()})
}
