package client

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/safety"
	"github.com/hush-chat/hush/wire"
)

// Safety numbers, verification and key changes (docs/protocol.md §8).
//
// The account key seen first for a peer is trusted (peers.account_key).
// When the server later shows another one, it is kept aside in
// contacts.changed_key, the peer loses its verified status, and nothing
// is sent to the peer until the user accepts the new key with Trust,
// ideally after comparing the new safety number.

// ErrSafetyMismatch: the number the user typed or scanned is not the
// safety number with that peer.
var ErrSafetyMismatch = errors.New("safety numbers do not match")

// SafetyNumber is the safety number with a peer.
type SafetyNumber struct {
	Username string
	// Number is the 60 digits in twelve groups of five, as people read it.
	Number string
	// Scannable is the QR code's payload.
	Scannable string
	Verified  bool
	// KeyChanged: the number is for an account key the server shows now
	// that the user has not accepted yet (Trust accepts it).
	KeyChanged bool
	// WasVerified: with KeyChanged, the previous key had been verified.
	WasVerified bool
}

// noteKeyCheck runs after fetchPeer compared user's account key with the
// trusted one (err is fetchPeer's outcome). A different key is kept as
// the pending change and costs the peer its verified status; the trusted
// key again clears a pending change.
func (c *Client) noteKeyCheck(ctx context.Context, user string, key keys.AccountPublic, list []byte, err error) error {
	if a, aerr := c.account(); aerr != nil || a.Username == user {
		return err // the own account's key is the devices' business
	}
	var kc *KeyChangedError
	now := c.now()
	switch {
	case errors.As(err, &kc):
		var was bool
		werr := inTx(ctx, c.db, func(tx *sql.Tx) error {
			r, err := loadContact(ctx, tx, user)
			if err != nil {
				return err
			}
			was = r.verified == 1 || r.changedVerified == 1
			return setContact(ctx, tx, user, now, `changed_key = ?, changed_list = ?, changed_verified = ?, verified = 0`,
				key.Bytes(), list, flagInt(was))
		})
		if werr != nil {
			return werr
		}
		kc.Verified = was
	case err == nil:
		if _, werr := c.db.ExecContext(ctx, `UPDATE contacts SET changed_key = NULL, changed_list = NULL, changed_verified = 0
			WHERE username = ? AND changed_key IS NOT NULL`, user); werr != nil {
			return &localError{werr}
		}
	}
	return err
}

func flagInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkKeyTrusted refuses user while a key change awaits the user's
// decision.
func (c *Client) checkKeyTrusted(ctx context.Context, user string) error {
	r, err := loadContact(ctx, c.db, user)
	if err != nil {
		return err
	}
	if r.changedKey != nil {
		return &KeyChangedError{Username: user, Verified: r.changedVerified == 1}
	}
	return nil
}

// recheckKey asks the server again for the key of user, who has a
// pending key change r: nil if it shows the trusted key again (which
// withdraws the change), else a *KeyChangedError.
func (c *Client) recheckKey(ctx context.Context, user string, r contactRow) error {
	changed := &KeyChangedError{Username: user, Verified: r.changedVerified == 1}
	cn, err := c.connection(ctx)
	if err != nil {
		return changed
	}
	c.mu.Lock()
	delete(c.fresh, user)
	c.mu.Unlock()
	if _, err := c.fetchPeer(ctx, cn, user); err != nil {
		if errors.Is(err, ErrAccountKeyChanged) || isTransient(err) {
			return changed
		}
		return err
	}
	return nil
}

// refreshPeer fetches user's account so a key change is noticed; if the
// server cannot be reached, what is stored will do.
func (c *Client) refreshPeer(ctx context.Context, user string) error {
	cn, err := c.connection(ctx)
	if err == nil {
		_, err = c.fetchPeer(ctx, cn, user)
	}
	if err == nil || errors.Is(err, ErrAccountKeyChanged) {
		return nil
	}
	if isTransient(err) {
		if l, lerr := c.knownPeer(ctx, user); lerr == nil && l != nil {
			c.cfg.Warn(fmt.Errorf("using what this device knows about %s: %w", user, err))
			return nil
		}
	}
	return err
}

// safetyNumber computes the number with user from the stored keys: the
// pending key if there is one, else the trusted one.
func (c *Client) safetyNumber(ctx context.Context, a *account, user string) (*safety.Number, SafetyNumber, error) {
	r, err := loadContact(ctx, c.db, user)
	if err != nil {
		return nil, SafetyNumber{}, err
	}
	raw := r.changedKey
	if raw == nil {
		if err := c.db.QueryRowContext(ctx, `SELECT account_key FROM peers WHERE username = ?`, user).Scan(&raw); errors.Is(err, sql.ErrNoRows) {
			return nil, SafetyNumber{}, &NoUserError{Username: user}
		} else if err != nil {
			return nil, SafetyNumber{}, &localError{err}
		}
	}
	key, err := keys.ParseAccountPublic(raw)
	if err != nil {
		return nil, SafetyNumber{}, &localError{fmt.Errorf("stored account key of %s: %w", user, err)}
	}
	n := safety.New(a.Username, a.AccountPub, user, key)
	return n, SafetyNumber{
		Username:    user,
		Number:      n.String(),
		Scannable:   n.Scannable(),
		Verified:    r.verified == 1,
		KeyChanged:  r.changedKey != nil,
		WasVerified: r.changedKey != nil && r.changedVerified == 1,
	}, nil
}

// Safety returns the safety number with username, after asking the
// server for their current account key. Both sides, on every device,
// compute the same number.
func (c *Client) Safety(ctx context.Context, username string) (SafetyNumber, error) {
	a, user, err := c.peerName(username)
	if err != nil {
		return SafetyNumber{}, err
	}
	if err := c.refreshPeer(ctx, user); err != nil {
		return SafetyNumber{}, err
	}
	_, sn, err := c.safetyNumber(ctx, a, user)
	return sn, err
}

// Verify marks username verified. With number non-empty (the 60 digits,
// spaces allowed, or a scanned QR payload) it first checks that number;
// ErrSafetyMismatch if it differs. A pending key change must be accepted
// with Trust first.
func (c *Client) Verify(ctx context.Context, username, number string) error {
	a, user, err := c.peerName(username)
	if err != nil {
		return err
	}
	if err := c.refreshPeer(ctx, user); err != nil {
		return err
	}
	n, sn, err := c.safetyNumber(ctx, a, user)
	if err != nil {
		return err
	}
	if sn.KeyChanged {
		return &KeyChangedError{Username: user, Verified: sn.WasVerified}
	}
	if number = strings.TrimSpace(number); number != "" {
		var cerr error
		if strings.HasPrefix(number, "HUSH-") {
			cerr = n.CompareScanned(number)
		} else {
			cerr = n.CompareDigits(number)
		}
		switch {
		case errors.Is(cerr, safety.ErrMismatch):
			return fmt.Errorf("%w: the number given is not the safety number with %s; %s was not marked verified", ErrSafetyMismatch, user, user)
		case cerr != nil:
			return fmt.Errorf("not a safety number: %v", cerr)
		}
	}
	return setContact(ctx, c.db, user, c.now(), `verified = 1`)
}

// Trust accepts username's changed account key (and its device list) and
// clears their verified status. It reports false if there was no change
// to accept.
func (c *Client) Trust(ctx context.Context, username string) (bool, error) {
	_, user, err := c.peerName(username)
	if err != nil {
		return false, err
	}
	if err := c.refreshPeer(ctx, user); err != nil {
		return false, err
	}
	changed := false
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		r, err := loadContact(ctx, tx, user)
		if err != nil || r.changedKey == nil {
			return err
		}
		key, err := keys.ParseAccountPublic(r.changedKey)
		if err != nil {
			return &localError{fmt.Errorf("pending account key of %s: %w", user, err)}
		}
		l, err := identity.ParseSignedDeviceList(r.changedList)
		if err != nil || l.Verify(key) != nil || l.List.Username != user {
			return &localError{fmt.Errorf("pending device list of %s does not verify", user)}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE peers SET account_key = ?, device_list = ?, version = ?, updated_ms = ? WHERE username = ?`,
			r.changedKey, r.changedList, l.List.Version, c.now().UnixMilli(), user); err != nil {
			return &localError{err}
		}
		if err := setContact(ctx, tx, user, c.now(), `changed_key = NULL, changed_list = NULL, changed_verified = 0, verified = 0`); err != nil {
			return err
		}
		changed = true
		// Sessions with devices the new list does not name end.
		return dropUnlisted(ctx, tx, user, l)
	})
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	delete(c.fresh, user)
	c.mu.Unlock()
	return changed, nil
}

// ResetIdentity replaces the account key (after a compromise): a new key
// signs the same devices as a new list version, the server replaces the
// key, and every contact is told so their clients fetch it — and refuse to
// send until their users accept it. Only the primary can do this. The
// recovery key changes with it.
//
// The new key is committed locally before the server is asked to take it;
// if the answer is lost or the process stops, the next call finds out
// whether the server took it and finishes that reset instead.
func (c *Client) ResetIdentity(ctx context.Context) error {
	a, err := c.account()
	if err != nil {
		return err
	}
	if !a.primary() {
		return ErrNotPrimary
	}
	cn, err := c.connection(ctx)
	if err != nil {
		return err
	}
	if done, err := c.resumeReset(ctx, cn, a); err != nil || done {
		if err != nil {
			return err
		}
		return c.announceReset(ctx, a)
	}
	cur, err := c.fetchPeer(ctx, cn, a.Username)
	if err != nil {
		return err
	}
	newKey, err := keys.GenerateAccount()
	if err != nil {
		return err
	}
	next := cur.List
	next.Version++
	signed, err := identity.SignDeviceList(next, newKey)
	if err != nil {
		return err
	}
	enc, err := signed.Marshal()
	if err != nil {
		return err
	}
	if _, err := c.db.ExecContext(ctx, `INSERT INTO pending_account_key (id, account_key, device_list) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET account_key = excluded.account_key, device_list = excluded.device_list`, newKey.Bytes(), enc); err != nil {
		return &localError{err}
	}
	_, err = cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_ResetAccountKey{ResetAccountKey: &wire.ResetAccountKeyRequest{
		AccountKey: newKey.Public().Bytes(), DeviceList: enc,
	}}})
	if err != nil && isTransient(err) {
		// The answer may be what was lost.
		if done, rerr := c.resumeReset(ctx, nil, a); rerr == nil && done {
			return c.announceReset(ctx, a)
		}
	}
	if err != nil {
		if !isTransient(err) {
			c.db.ExecContext(ctx, `DELETE FROM pending_account_key`)
		}
		return fmt.Errorf("the server did not replace the account key (the old one stays): %w", err)
	}
	if err := c.commitReset(ctx, a, newKey, signed); err != nil {
		return err
	}
	return c.announceReset(ctx, a)
}

// resumeReset finishes a reset whose key is pending if the server has
// that key; otherwise it forgets it. cn nil: use any connection.
func (c *Client) resumeReset(ctx context.Context, cn *conn, a *account) (bool, error) {
	var rawKey, rawList []byte
	err := c.db.QueryRowContext(ctx, `SELECT account_key, device_list FROM pending_account_key WHERE id = 1`).Scan(&rawKey, &rawList)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, &localError{err}
	}
	key, kerr := keys.ParseAccountPrivate(rawKey)
	list, lerr := identity.ParseSignedDeviceList(rawList)
	if kerr != nil || lerr != nil {
		return false, &localError{errors.New("the pending account key is corrupt")}
	}
	f := &wire.ClientFrame{Body: &wire.ClientFrame_GetAccount{GetAccount: &wire.GetAccountRequest{Username: a.Username}}}
	var r *wire.ServerFrame
	if cn != nil {
		r, err = cn.request(ctx, f)
	} else {
		r, err = c.request(ctx, f)
	}
	if err != nil {
		return false, err
	}
	if !bytes.Equal(r.GetAccount().GetAccountKey(), key.Public().Bytes()) {
		if _, err := c.db.ExecContext(ctx, `DELETE FROM pending_account_key`); err != nil {
			return false, &localError{err}
		}
		return false, nil
	}
	return true, c.commitReset(ctx, a, key, list)
}

// commitReset makes key the account key on this device.
func (c *Client) commitReset(ctx context.Context, a *account, key keys.AccountPrivate, signed *identity.SignedDeviceList) error {
	enc, err := signed.Marshal()
	if err != nil {
		return err
	}
	// The server has the key now: store it even if the caller gives up.
	ctx = context.WithoutCancel(ctx)
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE account SET account_key = ?, device_list = ? WHERE id = 1`, key.Bytes(), enc); err != nil {
			return &localError{err}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE peers SET account_key = ?, device_list = ?, version = ?, updated_ms = ? WHERE username = ?`,
			key.Public().Bytes(), enc, signed.List.Version, c.now().UnixMilli(), a.Username); err != nil {
			return &localError{err}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM pending_account_key`); err != nil {
			return &localError{err}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the server has the new account key but this device could not store it (run the reset again): %w", err)
	}
	c.mu.Lock()
	a.AccountKey, a.AccountPub, a.DeviceList = key, key.Public(), signed
	c.mu.Unlock()
	return nil
}

// announceReset tells every contact and the own other devices that the
// account key changed.
func (c *Client) announceReset(ctx context.Context, a *account) error {
	// Contacts fetch the new key and must accept it (Trust); the own
	// devices take it from this end-to-end encrypted notice instead, never
	// from the server (client/sync.go adoptOwnKey).
	n := &wire.DeviceNotice{Kind: wire.DeviceNotice_ACCOUNT_KEY_CHANGED, DeviceId: a.DeviceID}
	own := &wire.DeviceNotice{Kind: wire.DeviceNotice_ACCOUNT_KEY_CHANGED, DeviceId: a.DeviceID, AccountKey: a.AccountPub.Bytes()}
	if err := c.queueNotices(ctx, a, n, own); err != nil {
		c.cfg.Warn(fmt.Errorf("contacts were not told about the new key: %w", err))
		return nil
	}
	return c.flushNotices(ctx)
}

// request sends one request on the current connection.
func (c *Client) request(ctx context.Context, f *wire.ClientFrame) (*wire.ServerFrame, error) {
	cn, err := c.connection(ctx)
	if err != nil {
		return nil, err
	}
	return cn.request(ctx, f)
}
