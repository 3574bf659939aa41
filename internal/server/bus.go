package server

import (
	"sync"

	"github.com/hush-chat/hush/internal/store"
)

// Bus carries wake-ups: "device X may have something new". It never
// carries data. The store is the source of truth, so a woken subscriber
// reads the store, and a lost or coalesced wake-up loses nothing as long
// as one wake-up arrives after the last write. A NATS-backed Bus (whose
// subscriptions are callbacks too) replaces the in-process one when the
// server runs on several nodes.
//
// Subscriptions are callbacks rather than channels so that an idle
// connection needs no goroutine waiting on a channel: the server starts a
// goroutine only when there is something to push.
type Bus interface {
	// Publish wakes every subscriber of ref. It does not block on them.
	Publish(ref store.DeviceRef)
	// Subscribe calls wake after each Publish for ref until cancel is
	// called. wake must return quickly and must not call the Bus.
	Subscribe(ref store.DeviceRef, wake func()) (cancel func())
}

// localBus is the in-process Bus.
type localBus struct {
	mu   sync.RWMutex // publishers share it; only (un)subscribing excludes
	subs map[store.DeviceRef]map[*func()]struct{}
}

// NewLocalBus returns an in-process Bus.
func NewLocalBus() Bus {
	return &localBus{subs: map[store.DeviceRef]map[*func()]struct{}{}}
}

func (b *localBus) Publish(ref store.DeviceRef) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for wake := range b.subs[ref] {
		(*wake)()
	}
}

func (b *localBus) Subscribe(ref store.DeviceRef, wake func()) func() {
	key := &wake
	b.mu.Lock()
	m := b.subs[ref]
	if m == nil {
		m = map[*func()]struct{}{}
		b.subs[ref] = m
	}
	m[key] = struct{}{}
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs[ref], key)
		if len(b.subs[ref]) == 0 {
			delete(b.subs, ref)
		}
	}
}
