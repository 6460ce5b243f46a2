package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/craftedge/craftedge/internal/boltsafe"
	"github.com/craftedge/craftedge/snapshot"
)

// defaultStorageCheckMaxSize is the largest bbolt file checked page by
// page when it is opened (storage_check_max_size).
const defaultStorageCheckMaxSize = snapshot.DefaultCheckMaxBytes

// storageGenerations counts, per storage path, the files found damaged
// there. The store's pool key carries it: once a file is found damaged
// (and moved aside) the next config load opens a fresh file at the path
// instead of reusing the damaged store.
var storageGenerations sync.Map // path → *atomic.Uint64

func storageGeneration(path string) *atomic.Uint64 {
	v, _ := storageGenerations.LoadOrStore(path, new(atomic.Uint64))
	return v.(*atomic.Uint64)
}

// storePoolKey is the usage-pool key of the store at path.
func storePoolKey(path string) string {
	return fmt.Sprintf("store:%s#%d", path, storageGeneration(path).Load())
}

// openStore opens (or reuses) the snapshot store at path. It never panics
// and never leaves the usage pool locked: a panic in the constructor would
// leave the pool entry locked, wedging every later load of this path.
func (a *App) openStore(path string) (*snapshot.Store, string, error) {
	key := storePoolKey(path)
	val, _, err := statePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		var s *snapshot.Store
		err := boltsafe.Run(func() (err error) {
			s, err = snapshot.Open(snapshot.Options{
				Path:          path,
				MaxBytes:      a.SnapshotMaxSize,
				MaxAge:        time.Duration(a.SnapshotMaxAge),
				CheckMaxBytes: a.StorageCheckMaxSize,
				Logger:        a.logger.Named("snapshot"),
				Now:           nowFunc,
				OnFlush:       observeSnapshotFlush,
				OnDamaged: func(*snapshot.DamagedError) {
					storageGeneration(path).Add(1)
				},
			})
			return err
		})
		var p *boltsafe.PanicError
		if errors.As(err, &p) {
			return nil, fmt.Errorf("opening %s: %w", path, err)
		}
		if err != nil {
			return nil, err
		}
		return storeResource{s}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return val.(storeResource).Store, key, nil
}

// storageAvailable is the job queue's Options.Available: durable jobs are
// refused once the file is found damaged.
func (a *App) storageAvailable() error {
	if d := a.store.Damaged(); d != nil {
		return d
	}
	return nil
}

// storagePanicked is the job queue's Options.OnPanic: bbolt panicked in a
// job transaction, so the shared file is damaged.
func (a *App) storagePanicked(err error) {
	_ = a.store.MarkDamaged(err)
}

// guardStorage runs fn, which touches the shared bbolt file from a
// background goroutine, turning a panic of bbolt (or a memory fault on the
// mapped file) into the store's damage instead of a crash of the process.
func (a *App) guardStorage(fn func() error) error {
	err := boltsafe.Run(fn)
	var p *boltsafe.PanicError
	if errors.As(err, &p) {
		return a.store.MarkDamaged(err)
	}
	return err
}

// storageHealth is the storage part of /craftedge/health.
func (a *App) storageHealth() StorageHealth {
	h := StorageHealth{Path: a.Storage}
	if d := a.store.Damaged(); d != nil {
		at := d.At.UTC()
		h.Damaged, h.Error, h.MovedTo, h.Since = true, d.Cause.Error(), d.MovedTo, &at
		if d.MoveErr != nil {
			h.Error += "; moving it aside failed: " + d.MoveErr.Error()
		}
	}
	return h
}

// refuseDurableWrite answers a durable write (an outbox job) refused
// because the storage file is damaged: 503 with a body that says so (the
// file's path stays in the log, not in the answer), and an error log line.
func (a *App) refuseDurableWrite(w http.ResponseWriter, what string, err error) error {
	if errors.Is(err, errClusterOutboxUnreachable) {
		return a.refuseClusterWrite(w, what, err)
	}
	a.logger.Error(what+" refused: the storage file is damaged", zap.Error(err))
	w.Header().Set("Retry-After", "60")
	return writeAPIError(w, http.StatusServiceUnavailable,
		"%s not accepted: the storage file is damaged, durable writes are refused until it is replaced (see /craftedge/health); nothing was stored, retry later", what)
}
