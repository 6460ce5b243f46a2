package caddymodule

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/craftedge/craftedge/webhook/replay"
)

// replaySweepEvery is how often expired delivery ids are deleted, and
// replaySweepBatch the most deleted per pass (one transaction).
const (
	replaySweepEvery = time.Minute
	replaySweepBatch = 10000
)

// provisionWebhooks opens the replay store on the shared bbolt file and
// builds the receiver of every vendor with a webhook block (resolving its
// secrets).
func (a *App) provisionWebhooks() error {
	rs, err := replay.Open(a.store.DB())
	if err != nil {
		return fmt.Errorf("craftedge: %w", err)
	}
	a.replay = rs
	a.webhookReceivers = map[string]*signedReceiver{}
	for _, name := range sortedKeys(a.Vendors) {
		vc := a.Vendors[name]
		if vc.Webhook == nil {
			continue
		}
		if err := vc.checkWebhook(); err != nil {
			return fmt.Errorf("craftedge: vendor %q: %w", name, err)
		}
		rc, err := newSignedReceiver(name, &vc.Webhook.WebhookAuth, "", a.logger)
		if err != nil {
			return fmt.Errorf("craftedge: vendor %q: webhook: %w", name, err)
		}
		a.webhookReceivers[name] = rc
	}
	return nil
}

// startReplaySweeper deletes expired delivery ids until Stop.
func (a *App) startReplaySweeper() {
	ctx, cancel := context.WithCancel(a.ctx)
	done := make(chan struct{})
	a.stopReplaySweeper = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(replaySweepEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var n int
			err := a.guardStorage(func() (err error) {
				n, err = a.replay.Sweep(nowFunc(), replaySweepBatch)
				return err
			})
			if err != nil {
				a.logger.Error("sweeping expired webhook delivery ids", zap.Error(err))
			} else if n > 0 {
				a.logger.Debug("swept expired webhook delivery ids", zap.Int("deleted", n))
			}
		}
	}()
}
