package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// backfillPollInterval is how often a command asks a running instance for
// a job's progress (a backfill's, a rebuild's).
const backfillPollInterval = 200 * time.Millisecond

// adminJSON sends one request to the running instance's admin API (body,
// if not nil, as JSON) and decodes its JSON answer into v. An error answer
// is an error quoting it.
func adminJSON(addr, method, path string, body, v any) error {
	var rd io.Reader
	var h http.Header
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd, h = bytes.NewReader(b), http.Header{"Content-Type": {"application/json"}}
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, path, h, rd)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("decoding the instance's answer: %w", err)
	}
	return nil
}

// watchJob polls path (a job's progress) every backfillPollInterval while
// running(status), showing every status it reads. It returns the last
// status, or stopped when ctx ended first (the job goes on in the
// instance).
func watchJob[S any](ctx context.Context, addr, path string, status S, running func(S) bool, show func(S)) (last S, stopped bool, err error) {
	show(status)
	tick := time.NewTicker(backfillPollInterval)
	defer tick.Stop()
	for running(status) {
		select {
		case <-ctx.Done():
			return status, true, nil
		case <-tick.C:
		}
		var next S
		if err := adminJSON(addr, http.MethodGet, path, nil, &next); err != nil {
			return status, false, fmt.Errorf("reading progress: %w", err)
		}
		status = next
		show(status)
	}
	return status, false, nil
}
