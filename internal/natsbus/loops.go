package natsbus

import (
	"errors"

	"github.com/nats-io/nats.go"
)

// A Bus runs three goroutines, whatever the number of subscriptions:
// dispatchLoop delivers inbound messages, publishLoop hands outbound ones
// to nats.go (whose Publish can block for a dial while reconnecting), and
// syncLoop creates and removes NATS subscriptions and runs the wake-ups
// that must follow a round trip.

// dispatchLoop delivers messages from every NATS subscription. All
// subscriptions share b.msgs, so an idle subscription costs no goroutine.
func (b *Bus) dispatchLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.stop:
			return
		case m := <-b.msgs:
			b.deliver(m.Subject, m.Data)
		}
	}
}

// publishLoop sends queued messages to NATS. While disconnected nats.go
// buffers them (8 MiB by default) and sends them on reconnect.
func (b *Bus) publishLoop() {
	defer b.wg.Done()
	failing := false
	for {
		select {
		case <-b.stop:
			return
		case m := <-b.pubs:
			err := b.nc.Publish(m.subject, m.data)
			switch {
			case err != nil && !failing:
				failing = true
				b.log.Warn("natsbus: publishing to NATS fails; wake-ups are lost until it works", "err", err)
			case err == nil && failing:
				failing = false
				b.log.Info("natsbus: publishing to NATS works again")
			}
			if len(b.pubs) == 0 && b.queueFull.CompareAndSwap(true, false) {
				b.log.Info("natsbus: publish queue drained")
			}
		}
	}
}

// syncLoop makes the NATS subscriptions match b.topics and wakes
// subscribers that need it: new subscriptions once NATS has confirmed
// them (a PING/PONG after the SUB), everyone after a reconnect, and
// devices whose messages NATS dropped.
func (b *Bus) syncLoop() {
	defer b.wg.Done()
	subs := map[string]*nats.Subscription{} // owned by this goroutine
	for {
		select {
		case <-b.stop:
			return
		case <-b.kick:
		}
		b.syncMu.Lock()
		dirty, wake, all := b.dirty, b.toWake, b.wakeAll
		b.dirty, b.toWake, b.wakeAll = map[string]struct{}{}, map[string]struct{}{}, false
		b.syncMu.Unlock()

		// Subscribe and cancel mark a subject dirty after changing
		// b.topics, so reading the wanted state now and acting on it
		// converges even when they race with this loop.
		want := make(map[string]bool, len(dirty))
		b.topicsMu.RLock()
		for s := range dirty {
			_, want[s] = b.topics[s]
		}
		b.topicsMu.RUnlock()
		for s, w := range want {
			sub := subs[s]
			switch {
			case w && sub == nil:
				sub, err := b.nc.ChanSubscribe(s, b.msgs)
				if err != nil {
					// Only a closed connection or a bad subject gets
					// here, and subjects are checked when made.
					b.log.Error("natsbus: subscribe", "err", err)
					continue
				}
				subs[s] = sub
				wake[s] = struct{}{}
			case !w && sub != nil:
				if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
					b.log.Error("natsbus: unsubscribe", "err", err)
				}
				delete(subs, s)
			}
		}

		if len(wake) == 0 && !all {
			continue
		}
		// While disconnected there is nothing to confirm: nats.go resends
		// the subscriptions on reconnect and the reconnect wakes everyone.
		if b.connected.Load() {
			if err := b.nc.FlushTimeout(confirmTimeout); err != nil {
				b.log.Debug("natsbus: confirming subscriptions", "err", err)
			}
		}
		b.wakeLocal(wake, all)
	}
}
