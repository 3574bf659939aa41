package server

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/wire"
)

// Blocking (docs/protocol.md §9.11). The server can only refuse what it
// can attribute: authenticated sends. Sealed sends name no sender; the
// recipient's client drops those after opening them.

// setBlocked replaces the account's blocked list.
func (ss *session) setBlocked(ctx context.Context, req *wire.SetBlockedRequest) (*wire.ServerFrame, error) {
	if n := len(req.GetUsernames()); n > MaxBlocked {
		return nil, apiErr(codeBadRequest, "at most %d blocked usernames, got %d", MaxBlocked, n)
	}
	names := make([]string, 0, len(req.Usernames))
	for _, u := range req.Usernames {
		n, err := identity.NormalizeUsername(u)
		if err != nil {
			return nil, apiErr(codeBadRequest, "%q is not a username", clip(u))
		}
		if n == ss.ref.Username {
			return nil, apiErr(codeBadRequest, "an account cannot block itself")
		}
		names = append(names, n)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	err := ss.s.store.SetBlocked(ctx, ss.ref.Username, names)
	// Also on failure: the outcome may be unknown.
	ss.s.blocks.invalidate(ss.ref.Username)
	ss.s.publishBlocked(ss.ref.Username)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apiErr(codeUnauthorized, "this account no longer exists")
	}
	if err != nil {
		return nil, err
	}
	ss.s.log.Info("blocked list set", "user", ss.ref.Username, "device", ss.ref.ID, "count", len(names))
	return okFrame(), nil
}

// Cache bounds: past either, the cache starts over (a miss costs one
// store read, nothing else).
const (
	maxCachedBlockLists = 100_000
	maxCachedBlocked    = 1_000_000 // names across all cached lists
)

// blockCache remembers each account's blocked list, so checking a send
// needs no store read. Like deviceCache, the node that changes a list
// drops the entry and tells the other nodes to (cluster.go); on a node of
// several, entries also expire after ttl in case that message is lost.
type blockCache struct {
	ttl time.Duration // 0: entries live until invalidated

	mu    sync.Mutex
	gen   uint64 // bumped by every invalidation
	names int    // names across all entries
	m     map[string]blockEntry
}

type blockEntry struct {
	set map[string]struct{}
	at  time.Time // when read from the store (monotonic)
}

func newBlockCache(ttl time.Duration) *blockCache {
	return &blockCache{ttl: ttl, m: map[string]blockEntry{}}
}

// blocks reports whether user blocks sender.
func (c *blockCache) blocks(ctx context.Context, st store.Store, user, sender string) (bool, error) {
	c.mu.Lock()
	e, ok := c.m[user]
	gen := c.gen
	c.mu.Unlock()
	if !ok || c.ttl > 0 && time.Since(e.at) >= c.ttl {
		at := time.Now()
		list, err := st.Blocked(ctx, user)
		if err != nil {
			return false, err
		}
		e = blockEntry{set: make(map[string]struct{}, len(list)), at: at}
		for _, n := range list {
			e.set[n] = struct{}{}
		}
		c.mu.Lock()
		// A list that changed while we read it may be stale: do not keep it.
		if c.gen == gen {
			if len(c.m) >= maxCachedBlockLists || c.names+len(e.set) > maxCachedBlocked {
				clear(c.m)
				c.names = 0
			}
			c.names += len(e.set) - len(c.m[user].set)
			c.m[user] = e
		}
		c.mu.Unlock()
	}
	_, b := e.set[sender]
	return b, nil
}

// invalidate drops user's entry after its blocked list changed.
func (c *blockCache) invalidate(user string) {
	c.mu.Lock()
	c.gen++
	c.names -= len(c.m[user].set)
	delete(c.m, user)
	c.mu.Unlock()
}
