// Package commands registers craftedge's subcommands of the caddy binary
// (`craftedge backfill`, `craftedge reindex`, `craftedge reencrypt`), as caddypki registers
// `trust`: any binary built with craftedge's modules has them, including
// one built by `xcaddy build --with github.com/craftedge/craftedge`. The
// `demo` command stays in cmd/craftedge, which is the ready-made binary.
package commands
