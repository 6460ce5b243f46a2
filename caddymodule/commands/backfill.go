package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/craftedge/craftedge/caddymodule"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "backfill",
		Usage: "[--config <path> [--adapter <name>]] [--address <admin>] [--restart] <vendor> <resource>",
		Short: "Lists every item of a vendor resource again into the records (a full sync pass)",
		Long: `
Runs a backfill of one vendor resource: a sync pass that lists every item
from the first page, whatever the delta-sync cursor, stores the normalized
records and purges their cache tags. The vendor and its resource come from
the config (--config, as for 'run'; default the Caddyfile in the current
directory).

If a craftedge instance answers on the admin API (--address, or the config's
admin address), the backfill runs there as a durable vendor.sync job (the
bbolt file stays with its owner) and this command shows its progress; an
active backfill of the same resource is joined rather than started twice.
Ctrl+C stops watching; the job goes on in the instance, and a rerun shows it
again.

Otherwise the command runs the backfill itself against the config's bbolt
file. It saves its progress after every page: Ctrl+C stops it cleanly after
the page in flight, and a rerun resumes from there (--restart starts over).

The progress bar shows records, pages, the rate and, when the vendor's list
reports a total ('total <path>' in the resource's list), the ETA.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("config", "c", "", "Configuration file")
			cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
			cmd.Flags().String("address", "", "Address of the running instance's admin API")
			cmd.Flags().Bool("restart", false, "Drop saved progress and start from the first page (local runs)")
			cmd.Args = cobra.ExactArgs(2)
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdBackfill)
		},
	})
}

func cmdBackfill(fl caddycmd.Flags) (int, error) {
	vendor, resource := fl.Arg(0), fl.Arg(1)
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

	status, remote, err := startRemoteBackfill(addr, vendor, resource)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if remote {
		if fl.Bool("restart") {
			fmt.Fprintln(out, "note: --restart applies to local runs; the running instance's backfill starts at page 1 unless one is already active")
		}
		fmt.Fprintf(out, "backfill of %s/%s runs in the instance at %s as job %s\n", vendor, resource, addr, status.JobID)
		return watchRemoteBackfill(ctx, addr, status, out)
	}

	fmt.Fprintf(out, "no craftedge instance answers at %s: running the backfill of %s/%s here\n", addr, vendor, resource)
	bar := newBackfillBar(out)
	final, err := caddymodule.Backfill(ctx, caddymodule.BackfillOptions{
		Config: cfg, Vendor: vendor, Resource: resource, Restart: fl.Bool("restart"),
		Progress: func(s caddymodule.BackfillStatus) { updateBackfillBar(bar, s) },
	})
	return finishBackfill(bar, final, err, out)
}

// startRemoteBackfill asks a running instance to start (or join) the
// backfill. remote is false when nothing listens at the admin address.
func startRemoteBackfill(addr, vendor, resource string) (caddymodule.BackfillStatus, bool, error) {
	var status caddymodule.BackfillStatus
	if !adminListening(addr) {
		return status, false, nil
	}
	err := adminJSON(addr, http.MethodPost, "/craftedge/backfill", map[string]string{"vendor": vendor, "resource": resource}, &status)
	if err != nil {
		return status, false, fmt.Errorf("asking the running instance at %s: %w", addr, err)
	}
	return status, true, nil
}

// adminListening reports whether something accepts connections at the
// admin address.
func adminListening(addr string) bool {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return false
	}
	conn, err := net.DialTimeout(na.Network, na.JoinHostPort(0), time.Second)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// watchRemoteBackfill polls the instance until the backfill ends or ctx is
// cancelled (the job then goes on in the instance).
func watchRemoteBackfill(ctx context.Context, addr string, status caddymodule.BackfillStatus, out io.Writer) (int, error) {
	bar := newBackfillBar(out)
	status, stopped, err := watchJob(ctx, addr, "/craftedge/backfill/"+status.JobID, status,
		func(s caddymodule.BackfillStatus) bool { return s.State == caddymodule.BackfillRunning },
		func(s caddymodule.BackfillStatus) { updateBackfillBar(bar, s) })
	if stopped {
		_ = bar.Exit()
		fmt.Fprintf(out, "\nstopped watching: backfill job %s goes on in the instance; rerun to watch it\n", status.JobID)
		return 0, nil
	}
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("backfill: %w", err)
	}
	if status.State == caddymodule.BackfillFailed {
		err = errors.New(status.Error)
	}
	return finishBackfill(bar, status, err, out)
}

func newBackfillBar(out io.Writer) *progressbar.ProgressBar {
	return progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(out),
		progressbar.OptionSetDescription("backfill"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("records"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionFullWidth(),
		// No spinner goroutine: with an unknown length the library
		// renders from a ticker of its own, concurrently with our updates
		// and with what we print after Exit (a race seen under -race).
		// The bar moves on every update instead.
		progressbar.OptionSetSpinnerChangeInterval(0),
	)
}

// updateBackfillBar shows a status: records as the count, pages in the
// description, the total (when the vendor reports one) as the bar's end.
func updateBackfillBar(bar *progressbar.ProgressBar, s caddymodule.BackfillStatus) {
	if s.Total > 0 && bar.GetMax64() != int64(s.Total) {
		bar.ChangeMax64(int64(s.Total))
	}
	bar.Describe(fmt.Sprintf("%s/%s: page %d, %d pages,", s.Vendor, s.Resource, max(s.Page, 1), s.Pages))
	_ = bar.Set64(int64(s.Records))
}

func finishBackfill(bar *progressbar.ProgressBar, s caddymodule.BackfillStatus, err error, out io.Writer) (int, error) {
	_ = bar.Exit()
	fmt.Fprintln(out)
	switch s.State {
	case caddymodule.BackfillDone:
		fmt.Fprintf(out, "backfill of %s/%s done: %d records in %d pages, %d changed; cursor %s\n",
			s.Vendor, s.Resource, s.Records, s.Pages, s.Changed, s.Cursor.Format(time.RFC3339))
		return 0, nil
	case caddymodule.BackfillStopped:
		fmt.Fprintf(out, "backfill of %s/%s stopped before page %d (%d records so far); rerun to resume\n",
			s.Vendor, s.Resource, s.Page, s.Records)
		return 0, nil
	}
	if err == nil {
		err = errors.New(s.Error)
	}
	return caddy.ExitCodeFailedStartup, fmt.Errorf("backfill of %s/%s failed: %w", s.Vendor, s.Resource, err)
}
