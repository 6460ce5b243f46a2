package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
)

// handleJobs serves the job queue's operator routes:
//
//	GET    /craftedge/jobs?kind=&state=&after=&limit=  list jobs, with counts and queue age
//	GET    /craftedge/jobs/stats                      counts by kind and state, queue age
//	GET    /craftedge/jobs/{id}                       one job with its attempts
//	POST   /craftedge/jobs/{id}/retry                 run a ready or dead job now
//	POST   /craftedge/jobs/dead/{kind}/replay         replay every dead letter of a kind
//	DELETE /craftedge/jobs/dead/{kind}                flush (delete) the dead letters of a kind
func (adminAPI) handleJobs(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/craftedge/jobs"), "/")
	parts := []string{}
	if rest != "" {
		parts = strings.Split(rest, "/")
	}
	switch {
	case len(parts) == 0:
		if err := requireMethod(r, http.MethodGet); err != nil {
			return err
		}
		return app.listJobs(w, r)
	case len(parts) == 1 && parts[0] == "stats":
		if err := requireMethod(r, http.MethodGet); err != nil {
			return err
		}
		st, err := app.jobs.Stats()
		if err != nil {
			return jobsAPIError(err)
		}
		return writeJSON(w, http.StatusOK, st)
	case len(parts) == 3 && parts[0] == "dead" && parts[2] == "replay":
		if err := requireMethod(r, http.MethodPost); err != nil {
			return err
		}
		n, err := app.jobs.ReplayDead(parts[1])
		if err != nil {
			return jobsAPIError(err)
		}
		app.logger.Warn("dead letters replayed", zap.String("kind", parts[1]), zap.Int("jobs", n))
		return writeJSON(w, http.StatusOK, map[string]int{"replayed": n})
	case len(parts) == 2 && parts[0] == "dead":
		if err := requireMethod(r, http.MethodDelete); err != nil {
			return err
		}
		n, err := app.jobs.FlushDead(parts[1])
		if err != nil {
			return jobsAPIError(err)
		}
		app.logger.Warn("dead letters flushed", zap.String("kind", parts[1]), zap.Int("jobs", n))
		return writeJSON(w, http.StatusOK, map[string]int{"flushed": n})
	case len(parts) == 1:
		if err := requireMethod(r, http.MethodGet); err != nil {
			return err
		}
		job, err := app.jobs.Get(parts[0])
		if err != nil {
			return jobsAPIError(err)
		}
		return writeJSON(w, http.StatusOK, job)
	case len(parts) == 2 && parts[1] == "retry":
		if err := requireMethod(r, http.MethodPost); err != nil {
			return err
		}
		if err := app.jobs.RetryNow(parts[0]); err != nil {
			return jobsAPIError(err)
		}
		job, err := app.jobs.Get(parts[0])
		if err != nil {
			return jobsAPIError(err)
		}
		app.logger.Info("job retried by operator", zap.String("job_id", job.ID), zap.String("kind", job.Kind))
		return writeJSON(w, http.StatusOK, job)
	}
	return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no jobs route %s %s", r.Method, r.URL.Path)}
}

// jobsList is the body of GET /craftedge/jobs.
type jobsList struct {
	Jobs  []jobs.Job `json:"jobs"`
	Next  string     `json:"next,omitempty"`
	Stats jobs.Stats `json:"stats"`
}

func (a *App) listJobs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := jobs.ListFilter{Kind: q.Get("kind"), After: q.Get("after")}
	if s := q.Get("state"); s != "" {
		st, err := jobs.ParseState(s)
		if err != nil {
			return jobsAPIError(err)
		}
		f.State = st
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return badRequest(fmt.Errorf("limit must be a number from 1 to 1000, got %q", s))
		}
		f.Limit = n
	}
	list, err := a.jobs.List(f)
	if err != nil {
		return jobsAPIError(err)
	}
	st, err := a.jobs.Stats()
	if err != nil {
		return jobsAPIError(err)
	}
	out := jobsList{Jobs: list, Stats: st}
	if out.Jobs == nil {
		out.Jobs = []jobs.Job{}
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	if len(list) == limit {
		out.Next = list[len(list)-1].ID
	}
	return writeJSON(w, http.StatusOK, out)
}

// jobsAPIError maps the queue's errors to admin API statuses.
func jobsAPIError(err error) error {
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: err}
	case errors.Is(err, jobs.ErrInvalidID), errors.Is(err, jobs.ErrUnknownState),
		errors.Is(err, jobs.ErrUnknownKind), errors.Is(err, jobs.ErrInvalid):
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	case errors.Is(err, jobs.ErrBadState):
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: err}
	}
	return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
}
