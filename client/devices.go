package client

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// The account's devices (docs/protocol.md §9.10).
//
// The primary is the device holding the account's private key; only it
// signs device lists, so only it links and removes devices. Every other
// device holds the public key and verifies every list it is given, its own
// account's included: the own list is kept in peers under the own
// username and goes through fetchPeer's checks (signature with the known
// account key, no rollback, no equivocation) like anyone else's.

// MaxDeviceName bounds a device's name in bytes.
const MaxDeviceName = 64

// ErrNotPrimary: the operation needs the account key, which only the
// primary device holds.
var ErrNotPrimary = errors.New("only the primary device can do this; this device was linked")

// DeviceListError says whose device list was refused and why. It wraps
// ErrBadDeviceList.
type DeviceListError struct {
	Username string
	Reason   string
}

func (e *DeviceListError) Error() string {
	return fmt.Sprintf("device list of %s refused: %s", e.Username, e.Reason)
}

func (e *DeviceListError) Unwrap() error { return ErrBadDeviceList }

// listError makes the error for a list of user refused because of err.
func listError(user string, err error) error {
	switch {
	case errors.Is(err, identity.ErrRollback):
		return &DeviceListError{Username: user, Reason: "it is older than one already accepted (the server rolled it back): " + err.Error()}
	case errors.Is(err, identity.ErrEquivocation):
		return &DeviceListError{Username: user, Reason: "it differs from one already accepted under the same version (the server equivocates): " + err.Error()}
	case errors.Is(err, identity.ErrBadSignature):
		return &DeviceListError{Username: user, Reason: "its signature does not verify with the account key"}
	}
	return &DeviceListError{Username: user, Reason: err.Error()}
}

// parseStoredAccountKey reads account.account_key: the private key on the
// primary, only the public key on a linked device.
func parseStoredAccountKey(b []byte) (keys.AccountPrivate, keys.AccountPublic, error) {
	if len(b) > 0 && keys.Tag(b[0]) == keys.TagAccount {
		pub, err := keys.ParseAccountPublic(b)
		return keys.AccountPrivate{}, pub, err
	}
	priv, err := keys.ParseAccountPrivate(b)
	if err != nil {
		return keys.AccountPrivate{}, keys.AccountPublic{}, err
	}
	return priv, priv.Public(), nil
}

// primary reports whether this device holds the account key.
func (a *account) primary() bool { return !a.AccountKey.IsZero() }

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// ensureSelfPeer records the account's own key and list among the peers
// (once) and this device among the own devices.
func ensureSelfPeer(ctx context.Context, db execer, a *account, now time.Time) error {
	list, err := a.DeviceList.Marshal()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO peers (username, account_key, device_list, version, updated_ms)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING`,
		a.Username, a.AccountPub.Bytes(), list, a.DeviceList.List.Version, now.UnixMilli()); err != nil {
		return &localError{err}
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO own_devices (device_id, name, added_ms, last_seen_ms)
		VALUES (?, '', ?, 0) ON CONFLICT (device_id) DO NOTHING`, a.DeviceID, now.UnixMilli()); err != nil {
		return &localError{err}
	}
	return nil
}

// checkDeviceName applies the rules a device name follows: short, valid
// UTF-8, no control characters (it is shown to peers).
func checkDeviceName(name string) error {
	switch {
	case len(name) > MaxDeviceName:
		return fmt.Errorf("device name is %d bytes; the limit is %d", len(name), MaxDeviceName)
	case !utf8.ValidString(name):
		return errors.New("device name is not valid UTF-8")
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return errors.New("device name contains control characters")
		}
	}
	return nil
}

// DeviceInfo describes one of the account's devices.
type DeviceInfo struct {
	ID       uint32
	Name     string    // "" if this device was not told one
	Added    time.Time // when this device learned of it (zero if unknown)
	LastSeen time.Time // last message this device received from it (zero: none)
	Current  bool      // this device
	Primary  bool      // holds the account key (known only for the current device)
}

// Devices returns the account's devices from its verified device list,
// fetched from the server when it can be reached.
func (c *Client) Devices(ctx context.Context) ([]DeviceInfo, error) {
	a, err := c.account()
	if err != nil {
		return nil, err
	}
	list, err := c.currentOwnList(ctx)
	if err != nil {
		return nil, err
	}
	names := map[uint32]DeviceInfo{}
	rs, err := c.db.QueryContext(ctx, `SELECT device_id, name, added_ms, last_seen_ms FROM own_devices`)
	if err != nil {
		return nil, &localError{err}
	}
	for rs.Next() {
		var d DeviceInfo
		var added, seen int64
		if err := rs.Scan(&d.ID, &d.Name, &added, &seen); err != nil {
			rs.Close()
			return nil, &localError{err}
		}
		if added > 0 {
			d.Added = time.UnixMilli(added)
		}
		if seen > 0 {
			d.LastSeen = time.UnixMilli(seen)
		}
		names[d.ID] = d
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	out := make([]DeviceInfo, 0, len(list.List.Devices))
	for _, d := range list.List.Devices {
		info := names[d.ID]
		info.ID = d.ID
		info.Current = d.ID == a.DeviceID
		info.Primary = info.Current && a.primary()
		out = append(out, info)
	}
	return out, nil
}

// currentOwnList fetches the own list from the server, or, if it cannot be
// reached, returns the one stored.
func (c *Client) currentOwnList(ctx context.Context) (*identity.SignedDeviceList, error) {
	a, err := c.account()
	if err != nil {
		return nil, err
	}
	cn, err := c.connection(ctx)
	if err == nil {
		var l *identity.SignedDeviceList
		if l, err = c.fetchPeer(ctx, cn, a.Username); err == nil {
			return l, nil
		}
	}
	if !isTransient(err) {
		return nil, err
	}
	l, lerr := c.knownPeer(ctx, a.Username)
	if lerr != nil || l == nil {
		return nil, err
	}
	return l, nil
}

// publishOwnList signs next with the account key, has the server store
// it, and accepts it locally: stored as the own list, sessions with
// devices it no longer lists dropped.
func (c *Client) publishOwnList(ctx context.Context, cn *conn, a *account, next identity.DeviceList) (*identity.SignedDeviceList, error) {
	if !a.primary() {
		return nil, ErrNotPrimary
	}
	signed, err := identity.SignDeviceList(next, a.AccountKey)
	if err != nil {
		return nil, err
	}
	enc, err := signed.Marshal()
	if err != nil {
		return nil, err
	}
	r, err := cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_UpdateDeviceList{UpdateDeviceList: &wire.UpdateDeviceListRequest{DeviceList: enc}}})
	var se *ServerError
	if errors.As(err, &se) && se.Code == "version_conflict" {
		return nil, fmt.Errorf("the device list changed on the server meanwhile (%s); try again", se.Message)
	}
	if err != nil {
		return nil, err
	}
	if r.GetAccount() == nil {
		return nil, fmt.Errorf("%w: expected the updated account", ErrProtocol)
	}
	if err := c.acceptOwnList(ctx, a, signed); err != nil {
		return nil, err
	}
	return signed, nil
}

// acceptOwnList stores a new own list this device made or was given
// (already verified), in peers and in the account row.
func (c *Client) acceptOwnList(ctx context.Context, a *account, l *identity.SignedDeviceList) error {
	if err := l.Verify(a.AccountPub); err != nil {
		return listError(a.Username, err)
	}
	enc, err := l.Marshal()
	if err != nil {
		return err
	}
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		var prevList []byte
		if err := tx.QueryRowContext(ctx, `SELECT device_list FROM peers WHERE username = ?`, a.Username).Scan(&prevList); err != nil {
			return &localError{err}
		}
		prev, err := identity.ParseSignedDeviceList(prevList)
		if err != nil {
			return &localError{err}
		}
		if err := identity.CheckSuccessor(prev, l); err != nil {
			return listError(a.Username, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE peers SET device_list = ?, version = ?, updated_ms = ? WHERE username = ?`,
			enc, l.List.Version, c.now().UnixMilli(), a.Username); err != nil {
			return &localError{err}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE account SET device_list = ? WHERE id = 1`, enc); err != nil {
			return &localError{err}
		}
		return dropUnlisted(ctx, tx, a.Username, l)
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	a.DeviceList = l
	c.mu.Unlock()
	return nil
}

// dropUnlisted deletes the sessions with user's devices that list no
// longer names, so nothing is ever encrypted to a removed device again,
// and forgets the names of own devices that are gone.
func dropUnlisted(ctx context.Context, tx *sql.Tx, user string, l *identity.SignedDeviceList) error {
	rs, err := tx.QueryContext(ctx, `SELECT device FROM sessions WHERE peer = ?`, user)
	if err != nil {
		return &localError{err}
	}
	var gone []uint32
	for rs.Next() {
		var d uint32
		if err := rs.Scan(&d); err != nil {
			rs.Close()
			return &localError{err}
		}
		if _, ok := l.List.Find(d); !ok {
			gone = append(gone, d)
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return &localError{err}
	}
	for _, d := range gone {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE peer = ? AND device = ?`, user, d); err != nil {
			return &localError{err}
		}
	}
	var self string
	if err := tx.QueryRowContext(ctx, `SELECT username FROM account WHERE id = 1`).Scan(&self); err != nil {
		return &localError{err}
	}
	if user != self {
		return nil
	}
	rs, err = tx.QueryContext(ctx, `SELECT device_id FROM own_devices`)
	if err != nil {
		return &localError{err}
	}
	gone = gone[:0]
	for rs.Next() {
		var d uint32
		if err := rs.Scan(&d); err != nil {
			rs.Close()
			return &localError{err}
		}
		if _, ok := l.List.Find(d); !ok {
			gone = append(gone, d)
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return &localError{err}
	}
	for _, d := range gone {
		if _, err := tx.ExecContext(ctx, `DELETE FROM own_devices WHERE device_id = ?`, d); err != nil {
			return &localError{err}
		}
	}
	return nil
}

// setDeviceName records what this device knows of an own device.
func setDeviceName(ctx context.Context, db execer, id uint32, name string, added time.Time) error {
	_, err := db.ExecContext(ctx, `INSERT INTO own_devices (device_id, name, added_ms, last_seen_ms) VALUES (?, ?, ?, 0)
		ON CONFLICT (device_id) DO UPDATE SET name = excluded.name`, id, name, added.UnixMilli())
	if err != nil {
		return &localError{err}
	}
	return nil
}

// RemoveDevice removes device id from the account (primary only): a new
// list without it, signed and published; the server deletes its queue and
// disconnects it, so it receives nothing afterwards. Contacts and the own
// other devices are told with a DeviceNotice.
func (c *Client) RemoveDevice(ctx context.Context, id uint32) error {
	a, err := c.account()
	if err != nil {
		return err
	}
	if !a.primary() {
		return fmt.Errorf("only the primary device can remove devices; this is device %d, a linked one", a.DeviceID)
	}
	if id == a.DeviceID {
		return errors.New("this is the primary device, which holds the account key; it cannot remove itself")
	}
	cn, err := c.connection(ctx)
	if err != nil {
		return err
	}
	cur, err := c.fetchPeer(ctx, cn, a.Username)
	if err != nil {
		return err
	}
	if _, ok := cur.List.Find(id); !ok {
		return fmt.Errorf("%s has no device %d", a.Username, id)
	}
	next := identity.DeviceList{Username: a.Username, Version: cur.List.Version + 1}
	for _, d := range cur.List.Devices {
		if d.ID != id {
			next.Devices = append(next.Devices, d)
		}
	}
	if _, err := c.publishOwnList(ctx, cn, a, next); err != nil {
		return err
	}
	if err := c.queueDeviceNotice(ctx, a, wire.DeviceNotice_REMOVED, id, ""); err != nil {
		return err
	}
	return c.flushNotices(ctx)
}

// nextDeviceID is the id a new device gets: one past the highest listed.
func nextDeviceID(l *identity.DeviceList) uint32 {
	var m uint32
	for _, d := range l.Devices {
		m = max(m, d.ID)
	}
	return m + 1
}

// withDevice returns l's devices plus d, in ascending id order.
func withDevice(l *identity.DeviceList, d identity.Device) []identity.Device {
	out := append(slices.Clone(l.Devices), d)
	slices.SortFunc(out, func(x, y identity.Device) int { return cmp.Compare(x.ID, y.ID) })
	return out
}
