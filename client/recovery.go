package client

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// Recovery (docs/protocol.md §9.9): the recovery key is the account key's
// 32-byte seed. Whoever holds it can sign device lists, so a fresh home
// that knows it becomes the account's new primary: it signs a list without
// the old primary and with itself, and the server accepts it on the
// strength of that signature alone (POST /v1/devicelist), since no listed
// device may be left to authenticate with.

// RecoveryKey returns the account's recovery key: the account key's seed
// as 64 hex digits in groups of four. Only the primary holds it.
func (c *Client) RecoveryKey() (string, error) {
	a, err := c.account()
	if err != nil {
		return "", err
	}
	if !a.primary() {
		return "", fmt.Errorf("only the primary device holds the recovery key; this is device %d, a linked one", a.DeviceID)
	}
	h := hex.EncodeToString(a.AccountKey.Seed())
	groups := make([]string, 0, len(h)/4)
	for i := 0; i < len(h); i += 4 {
		groups = append(groups, h[i:i+4])
	}
	return strings.Join(groups, " "), nil
}

// parseRecoveryKey accepts the 64 hex digits with any spaces or dashes.
func parseRecoveryKey(s string) (keys.AccountPrivate, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' || r == '\t' || r == '\n' {
			return -1
		}
		return r
	}, s)
	seed, err := hex.DecodeString(s)
	if err != nil || len(seed) != 32 {
		return keys.AccountPrivate{}, errors.New("a recovery key is 64 hex digits (spaces allowed); this is not one")
	}
	return keys.AccountFromSeed(seed)
}

// Restore makes this empty home the new primary of username with its
// recovery key: the account's list loses its old primary (the lowest
// device id, docs/protocol.md §9.9) and gains this device, named name.
// Contacts and history are not recovered; the account's other remaining
// devices are told.
func (c *Client) Restore(ctx context.Context, serverURL, username, recoveryKey, name string) (Info, error) {
	c.mu.Lock()
	cur := c.acct
	c.mu.Unlock()
	if cur != nil && cur.Registered {
		return Info{}, fmt.Errorf("%w (%s)", ErrHasAccount, cur.Username)
	}
	user, err := identity.NormalizeUsername(username)
	if err != nil {
		return Info{}, err
	}
	if err := checkDeviceName(name); err != nil {
		return Info{}, err
	}
	ak, err := parseRecoveryKey(recoveryKey)
	if err != nil {
		return Info{}, err
	}
	u, err := parseServerURL(serverURL)
	if err != nil {
		return Info{}, err
	}
	serverURL = strings.TrimSuffix(u.String(), "/")
	var info wire.ServerInfo
	if err := c.httpGet(ctx, serverURL, "/v1/info", &info); err != nil {
		return Info{}, err
	}
	serverKey, err := verifyServerKey(info.GetServerKey())
	if err != nil {
		return Info{}, err
	}
	var acc wire.AccountResponse
	err = c.httpGet(ctx, serverURL, "/v1/account/"+url.PathEscape(user), &acc)
	var se *ServerError
	if errors.As(err, &se) && se.Code == "no_user" {
		return Info{}, &NoUserError{Username: user}
	}
	if err != nil {
		return Info{}, err
	}
	if acc.GetUsername() != user {
		return Info{}, fmt.Errorf("%w: asked for the account of %s, got something else", ErrProtocol, user)
	}
	stored, err := keys.ParseAccountPublic(acc.GetAccountKey())
	if err != nil || !stored.Equal(ak.Public()) {
		return Info{}, fmt.Errorf("the recovery key does not match %s", user)
	}
	old, err := verifiedList(user, stored, acc.GetDeviceList())
	if err != nil {
		return Info{}, err
	}

	if cur != nil {
		// An unfinished registration or restore: start over.
		if err := c.forgetPending(ctx); err != nil {
			return Info{}, err
		}
	}
	a := &account{Username: user, ServerURL: serverURL, ServerKey: serverKey, AccountKey: ak, AccountPub: stored}
	if a.Signing, err = keys.GenerateDeviceSigning(); err != nil {
		return Info{}, err
	}
	if a.Identity, err = keys.GenerateIdentity(); err != nil {
		return Info{}, err
	}
	a.DeviceID = nextDeviceID(&old.List)
	next := identity.DeviceList{Username: user, Version: old.List.Version + 1}
	// RULE (§9.9): the old primary is the device with the lowest id.
	lowest := old.List.Devices[0].ID
	next.Devices = append(next.Devices, old.List.Devices[1:]...)
	next.Devices = append(next.Devices, identity.Device{ID: a.DeviceID, SigningKey: a.Signing.Public(), IdentityKey: a.Identity.Public()})
	if a.DeviceList, err = identity.SignDeviceList(next, ak); err != nil {
		return Info{}, err
	}
	enc, err := a.DeviceList.Marshal()
	if err != nil {
		return Info{}, err
	}
	batch, err := newPrekeyBatch(1, PrekeyTarget, PrekeyTarget, true, true)
	if err != nil {
		return Info{}, err
	}
	now := c.now()
	// The keys are committed (not yet registered) before the server hears
	// of them, so a lost answer never leaves a listed device without keys.
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO account (id, username, device_id, server_url, server_key,
			account_key, signing_key, identity_key, device_list, next_prekey_id, registered, created_ms)
			VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?)`,
			a.Username, a.DeviceID, a.ServerURL, a.ServerKey.Bytes(), a.AccountKey.Bytes(), a.Signing.Bytes(),
			a.Identity.Bytes(), enc, now.UnixMilli()); err != nil {
			return &localError{err}
		}
		return batch.save(ctx, tx, now)
	})
	if err != nil {
		return Info{}, err
	}
	c.mu.Lock()
	c.acct = a
	c.mu.Unlock()
	var resp wire.AccountResponse
	err = c.httpPost(ctx, serverURL, "/v1/devicelist", &wire.DeviceListUpdate{
		Username: user, DeviceList: enc,
		Prekeys: map[uint32]*wire.PrekeyUpload{a.DeviceID: merged(batch.uploads(a.Signing, a.Identity.Public()))},
	}, &resp)
	if err != nil {
		if !isTransient(err) {
			if ferr := c.forgetPending(ctx); ferr != nil {
				return Info{}, ferr
			}
		}
		if errors.As(err, &se) && se.Code == "version_conflict" {
			return Info{}, fmt.Errorf("the device list of %s changed meanwhile (%s); run restore again", user, se.Message)
		}
		return Info{}, err
	}
	if err := c.markRegistered(ctx, a); err != nil {
		return Info{}, err
	}
	if err := setDeviceName(ctx, c.db, a.DeviceID, name, now); err != nil {
		return Info{}, err
	}
	// This fresh home makes a new delivery token and gives the server its
	// hash on its first connection (client/sealed.go): whoever holds the
	// lost device knows the old one.
	for _, n := range []struct {
		kind wire.DeviceNotice_Kind
		id   uint32
		name string
	}{{wire.DeviceNotice_REMOVED, lowest, ""}, {wire.DeviceNotice_ADDED, a.DeviceID, name}} {
		if err := c.queueDeviceNotice(ctx, a, n.kind, n.id, n.name); err != nil {
			return Info{}, err
		}
	}
	if err := c.flushNotices(ctx); err != nil {
		return Info{}, err
	}
	return c.Info()
}
