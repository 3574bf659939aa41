package server

import (
	"context"
	"slices"
	"sync"

	"github.com/hush-chat/hush/internal/store"
)

// maxCachedAccounts bounds the device cache; past it the cache starts
// over (a miss costs one store read, nothing else).
const maxCachedAccounts = 100_000

// deviceCache remembers each account's current device ids, so checking a
// send's copies against the device list needs no store read. This server
// is the only writer of device lists and drops an entry whenever it
// changes one. (With several nodes the bus must carry that invalidation.)
type deviceCache struct {
	mu  sync.Mutex
	gen uint64 // bumped by every invalidation
	m   map[string][]uint32
}

func newDeviceCache() *deviceCache { return &deviceCache{m: map[string][]uint32{}} }

// devices returns the ids of user's devices in ascending order, from the
// cache or the store. store.ErrNotFound (or no devices) means no account.
func (c *deviceCache) devices(ctx context.Context, st store.Store, user string) ([]uint32, error) {
	c.mu.Lock()
	ids, ok := c.m[user]
	gen := c.gen
	c.mu.Unlock()
	if ok {
		return ids, nil
	}
	devs, err := st.Devices(ctx, user)
	if err != nil {
		return nil, err
	}
	if len(devs) == 0 {
		return nil, store.ErrNotFound
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
		c.m[user] = ids
	}
	c.mu.Unlock()
	return ids, nil
}

// invalidate drops user's entry after its device list changed.
func (c *deviceCache) invalidate(user string) {
	c.mu.Lock()
	c.gen++
	delete(c.m, user)
	c.mu.Unlock()
}
