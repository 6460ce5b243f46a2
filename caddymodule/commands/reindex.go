package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/craftedge/craftedge/caddymodule"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "reindex",
		Usage: "[--config <path> [--adapter <name>]] [--address <admin>] <vendor> <resource> <target>",
		Short: "Pushes every stored record of a resource to one of its push targets again (rebuilds an index)",
		Long: `
Rebuilds the index of one push target (a search index, an analytics
endpoint: 'push <target> ...' in the resource block) from the stored
records alone: live records are pushed as upserts, deleted ones as
deletes. The source vendor is not called. The resource, its push target
and the target vendor come from the config (--config, as for 'run';
default the Caddyfile in the current directory).

If a craftedge instance answers on the admin API (--address, or the
config's admin address), the rebuild runs there as a durable vendor.reindex
job (resumed from its last page after a failure or a restart; each record
is pushed under its push lock, so a newer version sent meanwhile is never
overwritten) and this command shows its progress; an active rebuild of the
same target is joined. Ctrl+C stops watching; the job goes on.

Otherwise the command pushes the records itself from the config's bbolt
file; Ctrl+C stops it after the record in flight (pushes are idempotent: a
rerun starts over).

The progress bar shows the records pushed out of those stored.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("config", "c", "", "Configuration file")
			cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
			cmd.Flags().String("address", "", "Address of the running instance's admin API")
			cmd.Args = cobra.ExactArgs(3)
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdReindex)
		},
	})
}

func cmdReindex(fl caddycmd.Flags) (int, error) {
	req := caddymodule.ReindexRequest{Vendor: fl.Arg(0), Resource: fl.Arg(1), Target: fl.Arg(2)}
	cfg, configFile, adapter, err := caddycmd.LoadConfig(fl.String("config"), fl.String("adapter"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("loading config: %w", err)
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), cfg, configFile, adapter)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := os.Stderr
	what := fmt.Sprintf("%s/%s to %s", req.Vendor, req.Resource, req.Target)

	if adminListening(addr) {
		status, err := startRemoteReindex(addr, req)
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
		fmt.Fprintf(out, "rebuild of %s runs in the instance at %s as job %s\n", what, addr, status.JobID)
		return watchRemoteReindex(ctx, addr, status, out)
	}
	fmt.Fprintf(out, "no craftedge instance answers at %s: pushing %s from the stored records here\n", addr, what)
	bar := newReindexBar(out)
	final, err := caddymodule.Reindex(ctx, caddymodule.ReindexOptions{
		Config: cfg, Vendor: req.Vendor, Resource: req.Resource, Target: req.Target,
		Progress: func(s caddymodule.ReindexStatus) { updateReindexBar(bar, s) },
	})
	return finishReindex(bar, final, err, out)
}

// startRemoteReindex asks a running instance to start (or join) the
// rebuild.
func startRemoteReindex(addr string, req caddymodule.ReindexRequest) (caddymodule.ReindexStatus, error) {
	var status caddymodule.ReindexStatus
	if err := adminJSON(addr, http.MethodPost, "/craftedge/reindex", req, &status); err != nil {
		// An error answer (404: no such target) is quoted.
		return status, fmt.Errorf("asking the running instance at %s: %w", addr, err)
	}
	return status, nil
}

// watchRemoteReindex polls the instance until the rebuild ends or ctx is
// cancelled (the job then goes on in the instance).
func watchRemoteReindex(ctx context.Context, addr string, status caddymodule.ReindexStatus, out io.Writer) (int, error) {
	bar := newReindexBar(out)
	status, stopped, err := watchJob(ctx, addr, "/craftedge/reindex/"+status.JobID, status,
		func(s caddymodule.ReindexStatus) bool { return s.State == caddymodule.BackfillRunning },
		func(s caddymodule.ReindexStatus) { updateReindexBar(bar, s) })
	if stopped {
		_ = bar.Exit()
		fmt.Fprintf(out, "\nstopped watching: rebuild job %s goes on in the instance; rerun to watch it\n", status.JobID)
		return 0, nil
	}
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("rebuild: %w", err)
	}
	if status.State == caddymodule.BackfillFailed {
		err = errors.New(status.Error)
	}
	return finishReindex(bar, status, err, out)
}

func newReindexBar(out io.Writer) *progressbar.ProgressBar {
	bar := newBackfillBar(out)
	bar.Describe("reindex")
	return bar
}

// updateReindexBar shows a status: records pushed as the count, the
// stored records as the bar's end.
func updateReindexBar(bar *progressbar.ProgressBar, s caddymodule.ReindexStatus) {
	if s.Total > 0 && bar.GetMax64() != int64(s.Total) {
		bar.ChangeMax64(int64(s.Total))
	}
	bar.Describe(fmt.Sprintf("%s/%s to %s: %d deletes,", s.Vendor, s.Resource, s.Target, s.Deleted))
	_ = bar.Set64(int64(s.Records))
}

func finishReindex(bar *progressbar.ProgressBar, s caddymodule.ReindexStatus, err error, out io.Writer) (int, error) {
	_ = bar.Exit()
	fmt.Fprintln(out)
	switch s.State {
	case caddymodule.BackfillDone:
		fmt.Fprintf(out, "rebuild of %s/%s to %s done: %d records pushed, %d of them as deletes\n",
			s.Vendor, s.Resource, s.Target, s.Records, s.Deleted)
		return 0, nil
	case caddymodule.BackfillStopped:
		fmt.Fprintf(out, "rebuild of %s/%s to %s stopped after %d records; rerun to push every record again\n",
			s.Vendor, s.Resource, s.Target, s.Records)
		return 0, nil
	}
	if err == nil {
		err = errors.New(s.Error)
	}
	return caddy.ExitCodeFailedStartup, fmt.Errorf("rebuild of %s/%s to %s failed: %w", s.Vendor, s.Resource, s.Target, err)
}
