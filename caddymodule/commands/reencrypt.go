package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/craftedge/craftedge/caddymodule"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "reencrypt",
		Usage: "[--config <path> [--adapter <name>]] [--address <admin>]",
		Short: "Seals every sensitive vendor value again with the current encryption key",
		Long: `
Re-encrypts the values of sensitive vendor fields (records and outbox job
payloads) under the current encryption_key of the config (--config, as for
'run'; default the Caddyfile in the current directory), seals or unseals
fields whose 'sensitive' marking changed, and deletes the snapshots of live
reads of vendors with sensitive fields. Run it after adding a new current
key and before removing the old one, and after marking a field sensitive.

If a craftedge instance answers on the admin API (--address, or the
config's admin address), the instance does it (POST /craftedge/reencrypt):
give the instance the new config first ('craftedge reload'). Old
ciphertexts can then survive in the bbolt file's free pages until they are
reused.

Otherwise the command does it itself against the config's bbolt file, then
compacts the file so that nothing sealed with an old key (or stored in
clear) is left in it. Use this, with the instance stopped, after a key is
compromised.

Values whose key is not in the config are reported and left as they are;
the command then fails and the file is not compacted.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("config", "c", "", "Configuration file")
			cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply")
			cmd.Flags().String("address", "", "Address of the running instance's admin API")
			cmd.Args = cobra.NoArgs
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdReencrypt)
		},
	})
}

func cmdReencrypt(fl caddycmd.Flags) (int, error) {
	cfg, configFile, adapter, err := caddycmd.LoadConfig(fl.String("config"), fl.String("adapter"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("loading config: %w", err)
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), cfg, configFile, adapter)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	out := os.Stderr
	if adminListening(addr) {
		fmt.Fprintf(out, "re-encrypting in the instance at %s\n", addr)
		resp, err := caddycmd.AdminAPIRequest(addr, http.MethodPost, "/craftedge/reencrypt", nil, nil)
		if err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("asking the running instance at %s: %w", addr, err)
		}
		defer resp.Body.Close()
		var rep caddymodule.ReencryptReport
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rep); err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("decoding the instance's answer: %w", err)
		}
		printReencrypt(out, rep)
		fmt.Fprintln(out, "note: old ciphertexts may remain in the bbolt file's free pages until reused; stop the instance and rerun this command to compact the file")
		if rep.Records.Failed+rep.OutboxFailed > 0 {
			return caddy.ExitCodeFailedStartup, errors.New("some values could not be opened: keep their key configured")
		}
		return 0, nil
	}
	fmt.Fprintf(out, "no craftedge instance answers at %s: re-encrypting the bbolt file here\n", addr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := caddymodule.Reencrypt(ctx, caddymodule.ReencryptOptions{Config: cfg})
	printReencrypt(out, rep)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("reencrypt: %w", err)
	}
	return 0, nil
}

func printReencrypt(out io.Writer, rep caddymodule.ReencryptReport) {
	fmt.Fprintf(out, "current key %q: %d records scanned, %d sealed again, %d unreadable; %d outbox jobs sealed again, %d unreadable; %d live snapshots deleted",
		rep.CurrentKey, rep.Records.Scanned, rep.Records.Resealed, rep.Records.Failed, rep.OutboxJobs, rep.OutboxFailed, rep.LiveSnapshotsDeleted)
	if rep.Compacted {
		fmt.Fprint(out, "; file compacted")
	}
	fmt.Fprintln(out)
	errs := append(append([]string(nil), rep.Records.Errors...), rep.Errors...)
	if len(errs) > 0 {
		fmt.Fprintln(out, "  "+strings.Join(errs, "\n  "))
	}
}
