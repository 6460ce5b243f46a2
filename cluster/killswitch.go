package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Kill-switch keys: "all" for every upstream, "u.<base64url(name)>" for
// one upstream (names may hold characters keys may not).
const (
	killAll    = "all"
	killPrefix = "u."
)

func killKey(upstream string) string {
	if upstream == "" {
		return killAll
	}
	return killPrefix + base64.RawURLEncoding.EncodeToString([]byte(upstream))
}

// maxUpstreamName bounds the upstream names of kill-switch keys: no
// upstream a node configures has a longer one.
const maxUpstreamName = 256

// killUpstream returns the upstream of a key, false for a key no node
// writes (a name that is empty, not UTF-8, holds control characters or is
// longer than maxUpstreamName).
func killUpstream(key string) (string, bool) {
	if key == killAll {
		return "", true
	}
	rest, ok := strings.CutPrefix(key, killPrefix)
	if !ok {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) == 0 || len(b) > maxUpstreamName || !utf8.Valid(b) ||
		strings.ContainsFunc(string(b), unicode.IsControl) {
		return "", false
	}
	return string(b), true
}

// killValue is what an override key holds, for operators reading the
// bucket with the nats CLI.
type killValue struct {
	Upstream string    `json:"upstream"`
	By       string    `json:"by"`
	At       time.Time `json:"at"`
}

// SetSnapshotOnly turns the cluster-wide kill-switch override for
// upstream ("" = every upstream) on or off. It returns once JetStream
// stored it (every node's Handlers.KillSwitch then hears of it, and it
// survives restarts), or an error (ErrNotConnected when NATS is
// unreachable): the caller then keeps its local override, which other
// nodes do not see.
func (n *Node) SetSnapshotOnly(ctx context.Context, upstream string, on bool) error {
	n.mu.Lock()
	kv := n.kill
	n.mu.Unlock()
	if kv == nil || !n.nc.IsConnected() {
		return errNotConnected
	}
	ctx, cancel := n.opCtx(ctx)
	defer cancel()
	key := killKey(upstream)
	var err error
	if on {
		data, _ := json.Marshal(killValue{Upstream: upstream, By: n.cfg.NodeName, At: time.Now()})
		_, err = kv.Put(ctx, key, data)
	} else {
		err = kv.Delete(ctx, key)
	}
	if err != nil {
		return fmt.Errorf("cluster: setting kill switch for upstream %q: %w", upstream, err)
	}
	return nil
}

// SnapshotOnlyOverrides returns the last known cluster-wide overrides
// (upstream → on, "" = all); empty before the first connection.
func (n *Node) SnapshotOnlyOverrides() map[string]bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.overrides)
}

// watchKillSwitch reports the whole set of overrides once the initial
// values are read, then after each change, until ctx ends.
func (n *Node) watchKillSwitch(ctx context.Context, kv jetstream.KeyValue) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("cluster: watching the kill switch: %w", err)
	}
	defer w.Stop()
	set := map[string]bool{}
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("cluster: kill-switch watch closed")
			}
			if e == nil { // initial values done
				initial = false
				n.publishOverrides(set)
				continue
			}
			up, ok := killUpstream(e.Key())
			if !ok {
				n.log.Warn("ignoring a kill-switch key no node writes", zap.String("key", e.Key()))
				continue
			}
			if e.Operation() == jetstream.KeyValuePut {
				set[up] = true
			} else {
				delete(set, up)
			}
			if !initial {
				n.publishOverrides(set)
			}
		}
	}
}

func (n *Node) publishOverrides(set map[string]bool) {
	n.mu.Lock()
	n.overrides = maps.Clone(set)
	n.mu.Unlock()
	if h := n.handlers(); h.KillSwitch != nil {
		h.KillSwitch(maps.Clone(set))
	}
}
