package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Cursor is the position of the last purge a node applied: the purge
// stream it refers to (by creation time, which changes when the stream is
// created again) and the stream sequence.
type Cursor struct {
	Stream time.Time `json:"stream"`
	Seq    uint64    `json:"seq"`
}

// CursorStore persists a node's Cursor. It is called from the purge
// goroutine only, after purges were applied (coalesced: at most every
// 100 purges and whenever the node has caught up), so a crash re-applies
// at most the purges after the last stored cursor.
type CursorStore interface {
	// LoadCursor returns the stored cursor; ok is false if there is none.
	LoadCursor(ctx context.Context) (c Cursor, ok bool, err error)
	// StoreCursor replaces the stored cursor.
	StoreCursor(ctx context.Context, c Cursor) error
}

func loadCursor(ctx context.Context, s CursorStore, timeout time.Duration) (Cursor, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, ok, err := s.LoadCursor(ctx)
	if err != nil {
		return c, false, fmt.Errorf("cluster: loading the purge cursor: %w", err)
	}
	return c, ok, nil
}

func storeCursor(ctx context.Context, s CursorStore, c Cursor, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.StoreCursor(ctx, c); err != nil {
		return fmt.Errorf("cluster: storing the purge cursor: %w", err)
	}
	return nil
}

// kvCursors keeps the cursor in the cursors bucket under the node's name.
type kvCursors struct {
	kv      jetstream.KeyValue
	key     string
	timeout time.Duration
}

func (k *kvCursors) LoadCursor(ctx context.Context) (Cursor, bool, error) {
	e, err := k.kv.Get(ctx, k.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Cursor{}, false, nil
	}
	if err != nil {
		return Cursor{}, false, err
	}
	var c Cursor
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Cursor{}, false, nil // unreadable: treated as missing, hence a gap
	}
	return c, true, nil
}

func (k *kvCursors) StoreCursor(ctx context.Context, c Cursor) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = k.kv.Put(ctx, k.key, data)
	return err
}
