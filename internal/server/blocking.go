package server

import (
	"context"
	"errors"
	"slices"
	"sync"

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
	ss.s.blocks.invalidate(ss.ref.Username) // also on failure: the outcome may be unknown
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
// needs no store read. Like deviceCache it relies on this server being the
// only writer, and drops an entry whenever it changes one. (With several
// nodes the bus must carry that invalidation.)
type blockCache struct {
	mu    sync.Mutex
	gen   uint64 // bumped by every invalidation
	names int    // names across all entries
	m     map[string]map[string]struct{}
}

func newBlockCache() *blockCache { return &blockCache{m: map[string]map[string]struct{}{}} }

// blocks reports whether user blocks sender.
func (c *blockCache) blocks(ctx context.Context, st store.Store, user, sender string) (bool, error) {
	c.mu.Lock()
	set, ok := c.m[user]
	gen := c.gen
	c.mu.Unlock()
	if !ok {
		list, err := st.Blocked(ctx, user)
		if err != nil {
			return false, err
		}
		set = make(map[string]struct{}, len(list))
		for _, n := range list {
			set[n] = struct{}{}
		}
		c.mu.Lock()
		// A list that changed while we read it may be stale: do not keep it.
		if c.gen == gen {
			if len(c.m) >= maxCachedBlockLists || c.names+len(set) > maxCachedBlocked {
				clear(c.m)
				c.names = 0
			}
			c.names += len(set) - len(c.m[user])
			c.m[user] = set
		}
		c.mu.Unlock()
	}
	_, b := set[sender]
	return b, nil
}

// invalidate drops user's entry after its blocked list changed.
func (c *blockCache) invalidate(user string) {
	c.mu.Lock()
	c.gen++
	c.names -= len(c.m[user])
	delete(c.m, user)
	c.mu.Unlock()
}
