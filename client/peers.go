package client

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// knownPeer returns the newest verified device list stored for user.
func (c *Client) knownPeer(ctx context.Context, user string) (*identity.SignedDeviceList, error) {
	var list []byte
	err := c.db.QueryRowContext(ctx, `SELECT device_list FROM peers WHERE username = ?`, user).Scan(&list)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, &localError{err}
	}
	return identity.ParseSignedDeviceList(list)
}

// peerList returns user's verified device list: the stored one if this
// Client already fetched it, else a fresh one from the server.
func (c *Client) peerList(ctx context.Context, cn *conn, user string, force bool) (*identity.SignedDeviceList, error) {
	c.mu.Lock()
	fresh := c.fresh[user]
	c.mu.Unlock()
	if fresh && !force {
		if l, err := c.knownPeer(ctx, user); err != nil || l != nil {
			return l, err
		}
	}
	return c.fetchPeer(ctx, cn, user)
}

// fetchPeer asks the server for user's account and device list, verifies
// the list with the account key, and checks it against what we saw
// before: the account key must be the one seen first (trust on first use;
// docs/protocol.md §9.12) and the list must not be older than the newest
// one seen.
func (c *Client) fetchPeer(ctx context.Context, cn *conn, user string) (*identity.SignedDeviceList, error) {
	r, err := c.requestOn(ctx, cn, &wire.ClientFrame{Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: user}}})
	var se *ServerError
	if errors.As(err, &se) && se.Code == "no_user" {
		return nil, &NoUserError{Username: user}
	}
	if err != nil {
		return nil, err
	}
	acc := r.GetAccount()
	if acc == nil || acc.GetUsername() != user {
		return nil, fmt.Errorf("%w: asked for the account of %s, got something else", ErrProtocol, user)
	}
	ak, err := keys.ParseAccountPublic(acc.GetAccountKey())
	if err != nil {
		return nil, &DeviceListError{Username: user, Reason: fmt.Sprintf("the account key is malformed: %v", err)}
	}
	sl, err := identity.ParseSignedDeviceList(acc.GetDeviceList())
	if err != nil {
		return nil, &DeviceListError{Username: user, Reason: fmt.Sprintf("it is malformed: %v", err)}
	}
	if sl.List.Username != user {
		return nil, &DeviceListError{Username: user, Reason: fmt.Sprintf("it is the list of %q", sl.List.Username)}
	}
	if err := sl.Verify(ak); err != nil {
		return nil, listError(user, err)
	}
	encoded, err := sl.Marshal()
	if err != nil {
		return nil, err
	}
	var out *identity.SignedDeviceList
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		var prevKey, prevList []byte
		err := tx.QueryRowContext(ctx, `SELECT account_key, device_list FROM peers WHERE username = ?`, user).Scan(&prevKey, &prevList)
		if errors.Is(err, sql.ErrNoRows) {
			out = sl
			_, err = tx.ExecContext(ctx, `INSERT INTO peers (username, account_key, device_list, version, updated_ms) VALUES (?, ?, ?, ?, ?)`,
				user, ak.Bytes(), encoded, sl.List.Version, c.now().UnixMilli())
			if err != nil {
				return &localError{err}
			}
			return nil
		}
		if err != nil {
			return &localError{err}
		}
		if !bytes.Equal(prevKey, ak.Bytes()) {
			return &KeyChangedError{Username: user}
		}
		prev, err := identity.ParseSignedDeviceList(prevList)
		if err != nil {
			return &localError{fmt.Errorf("stored device list of %s: %w", user, err)}
		}
		if err := identity.CheckSuccessor(prev, sl); err != nil {
			return listError(user, err)
		}
		out = sl
		if sl.List.Version > prev.List.Version {
			if _, err := tx.ExecContext(ctx, `UPDATE peers SET device_list = ?, version = ?, updated_ms = ? WHERE username = ?`,
				encoded, sl.List.Version, c.now().UnixMilli(), user); err != nil {
				return &localError{err}
			}
			// Sessions with devices no longer listed end (client/devices.go).
			return dropUnlisted(ctx, tx, user, sl)
		}
		return nil
	})
	// A changed key is kept for "safety" and "trust" (client/trust.go).
	if err = c.noteKeyCheck(ctx, user, ak, encoded, err); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.fresh[user] = true
	c.mu.Unlock()
	return out, nil
}

// fetchBundles gets one prekey bundle per device and verifies each against
// the verified device list (docs/protocol.md §3.3). A bundle that fails is
// refused: no session is started with a key the account did not certify.
func (c *Client) fetchBundles(ctx context.Context, cn *conn, list *identity.SignedDeviceList, devices []uint32) (map[uint32]*identity.Bundle, error) {
	user := list.List.Username
	r, err := c.requestOn(ctx, cn, &wire.ClientFrame{Body: &wire.ClientFrame_GetPrekeys{GetPrekeys: &wire.GetPrekeysRequest{Username: user, DeviceIds: devices}}})
	if err != nil {
		return nil, err
	}
	if r.GetPrekeys() == nil {
		return nil, fmt.Errorf("%w: expected prekey bundles", ErrProtocol)
	}
	out := map[uint32]*identity.Bundle{}
	for _, raw := range r.GetPrekeys().GetBundles() {
		b, err := identity.ParseBundle(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: a bundle of %s is malformed: %v", ErrBadBundle, user, err)
		}
		if b.Username != user || !slices.Contains(devices, b.DeviceID) {
			return nil, fmt.Errorf("%w: asked for %s, got a bundle of %s/%d", ErrBadBundle, user, b.Username, b.DeviceID)
		}
		if err := b.VerifyAgainst(&list.List); err != nil {
			return nil, fmt.Errorf("%w: %s/%d: %v; not starting a session", ErrBadBundle, user, b.DeviceID, err)
		}
		out[b.DeviceID] = b
	}
	for _, d := range devices {
		if out[d] == nil {
			return nil, fmt.Errorf("%w: no prekey bundle for %s/%d", ErrProtocol, user, d)
		}
	}
	return out, nil
}
