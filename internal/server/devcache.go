package server

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// maxCachedAccounts bounds the device cache; past it the cache starts
// over (a miss costs one store read, nothing else).
const maxCachedAccounts = 100_000

// deviceCache remembers each account's current device ids, so checking a
// send's copies against the device list needs no store read. The node
// that changes a device list drops the entry (invalidate) and tells the
// other nodes to drop theirs (cluster.go). Since that message can be
// lost, entries on a node of several also expire after ttl.
type deviceCache struct {
	ttl time.Duration // 0: entries live until invalidated

	mu  sync.Mutex
	gen uint64 // bumped by every invalidation
	m   map[string]devEntry
}

type devEntry struct {
	ids []uint32
	at  time.Time // when read from the store (monotonic)
}

func newDeviceCache(ttl time.Duration) *deviceCache {
	return &deviceCache{ttl: ttl, m: map[string]devEntry{}}
}

// devices returns the ids of user's devices in ascending order, from the
// cache or the store, and whether they came from the cache.
// store.ErrNotFound (or no devices) means no account.
func (c *deviceCache) devices(ctx context.Context, st store.Store, user string) (ids []uint32, cached bool, err error) {
	c.mu.Lock()
	e, ok := c.m[user]
	gen := c.gen
	c.mu.Unlock()
	if ok && (c.ttl == 0 || time.Since(e.at) < c.ttl) {
		return e.ids, true, nil
	}
	at := time.Now()
	devs, err := st.Devices(ctx, user)
	if err != nil {
		return nil, false, err
	}
	if len(devs) == 0 {
		return nil, false, store.ErrNotFound
	}
	ids = make([]uint32, len(devs))
	for i, d := range devs {
		ids[i] = d.ID
	}
	slices.Sort(ids)
	c.mu.Lock()
	// A list that changed while we read it may be stale: do not keep it.
	if c.gen == gen {
		if len(c.m) >= maxCachedAccounts {
			clear(c.m)
		}
		c.m[user] = devEntry{ids: ids, at: at}
	}
	c.mu.Unlock()
	return ids, false, nil
}

// invalidate drops user's entry after its device list changed.
func (c *deviceCache) invalidate(user string) {
	c.mu.Lock()
	c.gen++
	delete(c.m, user)
	c.mu.Unlock()
}

// recipientDevices returns user's device ids for checking a send's
// copies. fits says whether the copies match them; a cached list they do
// not match is read again from the store once before the sender is told
// it is wrong, because a cached list may be stale where the sender's is
// not (another node changed it and its invalidation was lost).
func (s *Server) recipientDevices(ctx context.Context, user string, fits func(ids []uint32) bool) ([]uint32, error) {
	ids, cached, err := s.devices.devices(ctx, s.store, user)
	if err != nil || !cached || fits(ids) {
		return ids, err
	}
	s.devices.invalidate(user)
	ids, _, err = s.devices.devices(ctx, s.store, user)
	return ids, err
}
