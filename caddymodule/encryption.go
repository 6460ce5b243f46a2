package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/jobs"
	"github.com/craftedge/craftedge/sealed"
	"github.com/craftedge/craftedge/snapshot"
	"github.com/craftedge/craftedge/vendors"
)

// Encryption at rest. The values of fields a vendor resource lists as
// sensitive (`sensitive <field...>` in its resource block) are sealed with
// AES-256-GCM (package sealed) before they reach the bbolt file: in records
// (vendors.Records), and in outbox jobs, whose whole write body is sealed
// when the resource has a sensitive field. Live vendor answers that hold a
// sensitive field are not snapshotted (see snapshotAllowed in
// caddymodule/cachehandler).
// Re-encryption under the current key: POST /craftedge/reencrypt on a
// running instance, or Reencrypt (the `craftedge reencrypt` command) on a
// stopped one, which also compacts the file so no old ciphertext survives
// in bbolt's free pages.

// EncryptionKey is one key of the at-rest encryption keyring.
type EncryptionKey struct {
	// ID names the key; it is written in clear in every value the key
	// seals, so a value names the key that opens it. 1 to 64 letters,
	// digits, '_', '.' or '-'.
	ID string `json:"id"`

	// Key is the 32-byte AES-256 key as 64 hex digits or base64, given as
	// a placeholder resolved when the app is provisioned, such as
	// {env.CRAFTEDGE_KEY_1}: a key written in the config itself is
	// refused (configs are shown by the admin API and kept in backups).
	Key string `json:"key"`

	// Current makes this the key new values are sealed with; at most one
	// key is current. Without one, the last key listed is.
	Current bool `json:"current,omitempty"`

	// Source is where the key was configured ("Caddyfile:12"), named by
	// load errors; set by the Caddyfile adapter.
	Source string `json:"source,omitempty"`
}

// unmarshalEncryptionKey parses one line of the global craftedge option
// (the dispenser is on the "encryption_key" token):
//
//	encryption_key <id> <{env.VAR}> [current]
func (a *App) unmarshalEncryptionKey(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 2 || len(args) > 3 || (len(args) == 3 && args[2] != "current") {
		return d.Errf("encryption_key wants <id> <{env.VAR}> [current]")
	}
	k := EncryptionKey{ID: args[0], Key: args[1], Current: len(args) == 3, Source: fmt.Sprintf("%s:%d", d.File(), d.Line())}
	if err := a.checkEncryptionKey(k); err != nil {
		return d.Err(err.Error())
	}
	a.EncryptionKeys = append(a.EncryptionKeys, k)
	return nil
}

// checkEncryptionKey checks a key against the keys already configured,
// without resolving it.
func (a *App) checkEncryptionKey(k EncryptionKey) error {
	if !sealed.ValidID(k.ID) {
		return fmt.Errorf("encryption_key id %q: want 1 to 64 letters, digits, '_', '.' or '-'", k.ID)
	}
	if !strings.Contains(k.Key, "{") {
		return fmt.Errorf("encryption_key %q: give the key as a placeholder such as {env.CRAFTEDGE_KEY_1}, not in the config (configs are shown by the admin API and kept in backups)", k.ID)
	}
	for _, o := range a.EncryptionKeys {
		if o.ID == k.ID {
			return fmt.Errorf("encryption_key %q is defined twice", k.ID)
		}
		if o.Current && k.Current {
			return fmt.Errorf("encryption_key %q: key %q is already current (at most one current key)", k.ID, o.ID)
		}
	}
	return nil
}

// keyring resolves the configured keys; nil when none is configured. Errors
// name the key, where it was configured and the placeholder, never a key.
func (a *App) keyring() (*sealed.Keyring, error) {
	if len(a.EncryptionKeys) == 0 {
		return nil, nil
	}
	repl := caddy.NewReplacer()
	keys := make([]sealed.Key, 0, len(a.EncryptionKeys))
	current := ""
	checked := &App{}
	for _, k := range a.EncryptionKeys {
		where := fmt.Sprintf("encryption_key %q", k.ID)
		if k.Source != "" {
			where += " (" + k.Source + ")"
		}
		if err := checked.checkEncryptionKey(k); err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		checked.EncryptionKeys = append(checked.EncryptionKeys, k)
		val := repl.ReplaceAll(k.Key, "")
		if strings.TrimSpace(val) == "" {
			return nil, fmt.Errorf("%s: %s is empty (is the environment variable set?)", where, k.Key)
		}
		secret, err := sealed.ParseKey(val)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %v", where, k.Key, err)
		}
		keys = append(keys, sealed.Key{ID: k.ID, Secret: secret})
		if k.Current {
			current = k.ID
		}
	}
	return sealed.NewKeyring(keys, current)
}

// sensitiveFields lists the sensitive fields of the configured vendors.
func (a *App) sensitiveFields() vendors.SensitiveFields {
	out := vendors.SensitiveFields{}
	for vn, vc := range a.Vendors {
		if vc == nil {
			continue
		}
		for rn, r := range vc.Resources {
			if r != nil && len(r.Sensitive) > 0 {
				if out[vn] == nil {
					out[vn] = map[string][]string{}
				}
				out[vn][rn] = r.Sensitive
			}
		}
	}
	return out
}

// openRecords opens the records store in db with the app's keys and
// sensitive fields; it also sets a.sealing for the outbox.
func (a *App) openRecords(db *bolt.DB) (*vendors.Records, error) {
	kr, err := a.keyring()
	if err != nil {
		return nil, err
	}
	sensitive := a.sensitiveFields()
	if kr == nil && sensitive.Any() {
		for _, vn := range sortedKeys(sensitive) {
			for _, rn := range sortedKeys(sensitive[vn]) {
				return nil, fmt.Errorf("vendor %q resource %q has sensitive fields but no encryption_key is configured", vn, rn)
			}
		}
	}
	recs, err := vendors.NewRecords(db)
	if err != nil {
		return nil, err
	}
	if err := recs.UseSealing(kr, sensitive); err != nil {
		return nil, err
	}
	a.sealing = &sealing{keyring: kr, sensitive: sensitive}
	return recs, nil
}

// sealing is the provisioned encryption state: the keys and which fields
// are sensitive.
type sealing struct {
	keyring   *sealed.Keyring
	sensitive vendors.SensitiveFields
}

func outboxContext(vendor, resource, id string) string {
	return "outbox\x00" + vendor + "\x00" + resource + "\x00" + id
}

// encodeOutboxPayload returns the payload of an outbox job writing body;
// the body is sealed when the resource has a sensitive field.
func (a *App) encodeOutboxPayload(vendor, resource, id string, body []byte) ([]byte, error) {
	p := outboxPayload{Vendor: vendor, Resource: resource, ID: id, Body: body}
	if err := a.sealing.sealOutbox(&p); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

// sealOutbox seals p.Body under the current key if p's resource has a
// sensitive field, and opens a sealed body if it has none any more.
func (s *sealing) sealOutbox(p *outboxPayload) error {
	if s == nil {
		return nil
	}
	want := len(s.sensitive[p.Vendor][p.Resource]) > 0
	switch {
	case want && p.Sealed == "":
		if s.keyring == nil {
			return vendors.ErrNoKeys
		}
		sv, err := s.keyring.Seal(p.Body, outboxContext(p.Vendor, p.Resource, p.ID))
		if err != nil {
			return err
		}
		p.Sealed, p.Body = sv, nil
	case want && s.keyring.NeedsReseal(p.Sealed), !want && p.Sealed != "":
		body, err := s.openOutbox(*p)
		if err != nil {
			return err
		}
		p.Sealed, p.Body = "", body
		return s.sealOutbox(p)
	}
	return nil
}

// openOutbox returns the body of an outbox payload, opening a sealed one.
func (s *sealing) openOutbox(p outboxPayload) ([]byte, error) {
	if p.Sealed == "" {
		return p.Body, nil
	}
	var kr *sealed.Keyring
	if s != nil {
		kr = s.keyring
	}
	body, err := kr.Open(p.Sealed, outboxContext(p.Vendor, p.Resource, p.ID))
	if err != nil {
		return nil, fmt.Errorf("outbox: write body of %s/%s id %q: %w", p.Vendor, p.Resource, p.ID, err)
	}
	return body, nil
}

// ReencryptReport is the result of a re-encryption pass.
type ReencryptReport struct {
	// CurrentKey is the key everything was sealed with.
	CurrentKey string `json:"current_key,omitempty"`
	// Records is the pass over the records.
	Records vendors.ResealReport `json:"records"`
	// OutboxJobs counts the outbox jobs whose payload was sealed again.
	OutboxJobs int `json:"outbox_jobs"`
	// OutboxFailed counts outbox payloads that could not be opened; see
	// Errors.
	OutboxFailed int      `json:"outbox_failed"`
	Errors       []string `json:"errors,omitempty"`
	// LiveSnapshotsDeleted counts the snapshots of live reads of vendors
	// with sensitive fields that were deleted: snapshotted before a field
	// was marked sensitive, they may hold its value in clear.
	LiveSnapshotsDeleted int `json:"live_snapshots_deleted"`
	// Compacted reports that the bbolt file was rewritten (the command on
	// a stopped instance), leaving no old ciphertext in free pages.
	Compacted bool `json:"compacted,omitempty"`
}

// reencrypt seals every record and outbox payload again under the current
// key and the current sensitive fields, and deletes the snapshots of live
// reads of vendors with sensitive fields (new ones are never written, see
// snapshotAllowed in caddymodule/cachehandler).
func (s *sealing) reencrypt(recs *vendors.Records, q *jobs.Queue, store *snapshot.Store) (ReencryptReport, error) {
	var rep ReencryptReport
	for _, vn := range sortedKeys(s.sensitive) {
		n, err := store.DeleteTagged(vendorTag(vn))
		rep.LiveSnapshotsDeleted += n
		if err != nil {
			return rep, err
		}
	}
	if s.keyring != nil {
		rep.CurrentKey = s.keyring.Current()
	}
	rr, err := recs.Reseal()
	rep.Records = rr
	if err != nil {
		return rep, err
	}
	n, err := q.RewritePayloads(jobKindOutbox, func(payload []byte) ([]byte, bool, error) {
		var p outboxPayload
		if json.Unmarshal(payload, &p) != nil {
			return nil, false, nil
		}
		before := p.Sealed
		if err := s.sealOutbox(&p); err != nil {
			rep.OutboxFailed++
			if len(rep.Errors) < 10 {
				rep.Errors = append(rep.Errors, err.Error())
			}
			return nil, false, nil
		}
		if p.Sealed == before {
			return nil, false, nil
		}
		out, err := json.Marshal(p)
		return out, err == nil, err
	})
	rep.OutboxJobs = n
	return rep, err
}

// handleReencrypt serves POST /craftedge/reencrypt: every record and outbox
// payload of the running instance sealed again under the current key. The
// answer is a ReencryptReport; 409 when some values could not be opened
// (their key is not configured): keep the old key until it answers 200.
func (adminAPI) handleReencrypt(w http.ResponseWriter, r *http.Request) error {
	app, err := runningApp()
	if err != nil {
		return err
	}
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	if app.records == nil || app.jobs == nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errors.New("craftedge: records or jobs are not running")}
	}
	rep, err := app.sealing.reencrypt(app.records, app.jobs, app.store)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	app.logger.Info("re-encrypted at-rest values", zap.String("current_key", rep.CurrentKey),
		zap.Int("records_resealed", rep.Records.Resealed), zap.Int("records_failed", rep.Records.Failed),
		zap.Int("outbox_jobs", rep.OutboxJobs), zap.Int("outbox_failed", rep.OutboxFailed),
		zap.Int("live_snapshots_deleted", rep.LiveSnapshotsDeleted))
	status := http.StatusOK
	if rep.Records.Failed+rep.OutboxFailed > 0 {
		status = http.StatusConflict
	}
	return writeJSON(w, status, rep)
}

// ReencryptOptions configure a re-encryption run by the command itself.
type ReencryptOptions struct {
	// Config is the Caddy JSON config; the craftedge app in it gives the
	// storage path, the keys and the sensitive fields.
	Config []byte
	// LockTimeout is how long to wait for the bbolt file lock before
	// returning ErrStorageLocked. Default 1s.
	LockTimeout time.Duration
}

// Reencrypt seals every record and outbox payload of the bbolt file of the
// craftedge app in opts.Config again under its current key, then compacts
// the file (a fresh copy replaces it), so that no value sealed with an old
// key, and no value stored in clear before its field became sensitive,
// remains in the file's free pages. The instance must be stopped
// (ErrStorageLocked otherwise). The file is compacted only when every value
// opened; otherwise the report's errors name the values and their key.
func Reencrypt(ctx context.Context, opts ReencryptOptions) (ReencryptReport, error) {
	var rep ReencryptReport
	app, err := appFromConfig(opts.Config)
	if err != nil {
		return rep, err
	}
	// Bad keys fail before the file is touched.
	if _, err := app.keyring(); err != nil {
		return rep, err
	}
	path := app.Storage
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), defaultStorageFilename)
	}
	lockTimeout := opts.LockTimeout
	if lockTimeout <= 0 {
		lockTimeout = time.Second
	}
	if _, err := os.Stat(path); err != nil {
		return rep, fmt.Errorf("storage %s: %w", path, err)
	}
	store, err := snapshot.Open(snapshot.Options{Path: path, OpenTimeout: lockTimeout})
	if errors.Is(err, bolt.ErrTimeout) {
		return rep, fmt.Errorf("storage %s: %w", path, ErrStorageLocked)
	}
	if err != nil {
		return rep, fmt.Errorf("storage %s: %w", path, err)
	}
	defer store.Close()
	db := store.DB()
	recs, err := app.openRecords(db)
	if err != nil {
		return rep, err
	}
	q, err := jobs.Open(db, jobs.Options{})
	if err != nil {
		return rep, err
	}
	rep, err = app.sealing.reencrypt(recs, q, store)
	if err != nil {
		return rep, err
	}
	if rep.Records.Failed+rep.OutboxFailed > 0 {
		return rep, fmt.Errorf("%d records and %d outbox jobs could not be opened (their key is not configured?); they are left as they are and the file is not compacted",
			rep.Records.Failed, rep.OutboxFailed)
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	if err := compactInPlace(db, path, store.Close); err != nil {
		return rep, err
	}
	rep.Compacted = true
	return rep, nil
}

// compactInPlace copies db into a fresh file next to path, closes db with
// closeSrc and renames the copy over path.
func compactInPlace(db *bolt.DB, path string, closeSrc func() error) error {
	tmp := path + ".reencrypt"
	_ = os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("compacting %s: %w", path, err)
	}
	if err := bolt.Compact(dst, db, 64<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compacting %s: %w", path, err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compacting %s: %w", path, err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compacting %s: %w", path, err)
	}
	if err := closeSrc(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("closing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing %s with its compacted copy: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// recordsReadError answers a failed records read: a value that cannot be
// opened (its key is not configured, or it was altered) is a 500 saying so,
// never a wrong value. The record, field and key are logged (and listed by
// POST /craftedge/reencrypt), not told to the reader, who may be anonymous.
func recordsReadError(w http.ResponseWriter, logger *zap.Logger, err error) error {
	if errors.Is(err, sealed.ErrUnknownKey) || errors.Is(err, sealed.ErrTampered) || errors.Is(err, sealed.ErrMalformed) {
		logger.Error("a sealed record value cannot be opened", zap.Error(err))
		return writeAPIError(w, http.StatusInternalServerError, "a stored value cannot be opened (its encryption key is not configured, or it was altered); the error is logged")
	}
	return caddyhttp.Error(http.StatusInternalServerError, err)
}

// redact returns rec with the values of its sensitive fields replaced by
// "REDACTED", for operator output (lineage).
func (s *sealing) redact(rec vendors.Record) vendors.Record {
	if s == nil {
		return rec
	}
	names := s.sensitive[rec.Vendor][rec.Resource]
	if len(names) == 0 {
		return rec
	}
	fields := maps.Clone(rec.Fields)
	for _, name := range names {
		if _, ok := fields[name]; ok {
			fields[name] = "REDACTED"
		}
	}
	rec.Fields = fields
	return rec
}

// keepPrivate marks a read-model answer of a resource with sensitive fields
// "private, no-store": it holds their decrypted values, so no shared cache
// may keep it (a craftedge handler in front would store it in memory and in
// the bbolt snapshots in clear; a CDN would serve it to anyone).
func (s *sealing) keepPrivate(hdr http.Header, vendor, resource string) {
	if s != nil && len(s.sensitive[vendor][resource]) > 0 {
		hdr.Set("Cache-Control", "private, no-store")
	}
}
