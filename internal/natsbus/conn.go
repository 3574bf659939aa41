package natsbus

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
)

// options returns the nats.go options: reconnect forever with capped,
// jittered exponential backoff, and callbacks that keep b.connected and
// the logs current. up is called once the first connection is made.
func (b *Bus) options(maxWait time.Duration, up func()) []nats.Option {
	return []nats.Option{
		nats.Name("hush"),
		nats.MaxReconnects(-1),
		// A NATS outage at start-up is then one more reconnect, and ctx
		// in New decides how long to wait for it.
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(backoff(maxWait)),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.ConnectHandler(func(nc *nats.Conn) {
			b.connected.Store(true)
			b.log.Info("natsbus: connected to NATS", "url", nc.ConnectedUrlRedacted())
			up()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if b.closed.Load() {
				return
			}
			b.connected.Store(false)
			b.log.Warn("natsbus: lost NATS connection; waking local subscribers directly until it is back", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.connected.Store(true)
			b.log.Info("natsbus: reconnected to NATS; waking every local subscriber", "url", nc.ConnectedUrlRedacted())
			// Wake-ups published while we were away are lost.
			b.markWakeAll()
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			b.errMu.Lock()
			b.lastErr = err
			b.errMu.Unlock()
			b.log.Debug("natsbus: NATS connection attempt failed", "err", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
				// NATS dropped messages for sub because dispatchLoop fell
				// behind; wake its subscribers directly instead.
				b.log.Warn("natsbus: dispatcher fell behind; NATS dropped messages", "err", err)
				b.markWake(sub.Subject)
				return
			}
			b.log.Error("natsbus: NATS error", "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			b.log.Debug("natsbus: NATS connection closed")
		}),
	}
}

// backoff returns the delay before reconnect round attempts (1, 2, …):
// 100ms doubling up to maxWait, with "equal jitter" (a random half) so
// that the nodes of a cluster do not reconnect in lockstep after a NATS
// restart.
func backoff(maxWait time.Duration) nats.ReconnectDelayHandler {
	return func(attempts int) time.Duration {
		d := maxWait
		if attempts >= 1 && attempts <= 30 {
			d = min(minReconnectWait<<(attempts-1), maxWait)
		}
		return d/2 + rand.N(d/2+1)
	}
}
