package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Member is one node following the purge stream, as JetStream sees its
// durable consumer: the nodes of a cluster are the consumers of its purge
// stream (a node's consumer is removed after max(PurgeMaxAge, 1h) without
// the node).
type Member struct {
	// Name is the node's name.
	Name string `json:"name"`
	// Following is true while the node has a pull request waiting on
	// its consumer: it is connected and following the stream.
	Following bool `json:"following"`
	// Acked is the last stream sequence it acknowledged.
	Acked uint64 `json:"acked"`
	// Lag is how many purges of the stream it has not acknowledged.
	Lag uint64 `json:"lag"`
	// LastDelivered is when it was last given a purge (nil: never).
	LastDelivered *time.Time `json:"last_delivered,omitempty"`
}

// Members is the purge stream's state and its followers.
type Members struct {
	// FirstSeq and LastSeq bound the purges the stream holds.
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Members are the nodes with a consumer, sorted by name.
	Members []Member `json:"members"`
}

// Members asks JetStream for the purge stream's state and its consumers,
// one per node. It needs NATS (ErrNotConnected otherwise) and waits at
// most Config.Timeout: for health pages and metrics, never a request path.
func (n *Node) Members(ctx context.Context) (Members, error) {
	if !n.nc.IsConnected() {
		return Members{}, errNotConnected
	}
	ctx, cancel := n.opCtx(ctx)
	defer cancel()
	s, err := n.js.Stream(ctx, n.name("purges"))
	if err != nil {
		return Members{}, fmt.Errorf("cluster: purge stream %s: %w", n.name("purges"), err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return Members{}, fmt.Errorf("cluster: purge stream info: %w", err)
	}
	out := Members{FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq}
	list := s.ListConsumers(ctx)
	for ci := range list.Info() {
		m := Member{
			Name:      ci.Name,
			Following: ci.NumWaiting > 0,
			Acked:     ci.AckFloor.Stream,
			Lag:       ci.NumPending + uint64(max(ci.NumAckPending, 0)),
		}
		if ci.Delivered.Last != nil {
			t := ci.Delivered.Last.UTC()
			m.LastDelivered = &t
		}
		out.Members = append(out.Members, m)
	}
	if err := list.Err(); err != nil {
		return out, fmt.Errorf("cluster: listing the purge stream's consumers: %w", err)
	}
	slices.SortFunc(out.Members, func(a, b Member) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}
