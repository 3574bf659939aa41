package client

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// Fan-out to the account's own devices (docs/protocol.md §9.10).
//
// Every message goes to all of the recipient's devices and, as a separate
// message to the own username, to this account's other devices as
// Content{sync_sent}, so every device shows the whole conversation. Both
// are outbox rows and go through the same deliver path: the rows for the
// own username target the own verified list minus this device (the
// server expects exactly that set for a send to oneself). Sessions with
// the own devices are ordinary ratchet records under peer = own username.
//
// Device notices (a device added or removed) go the same way to every
// contact and to the own devices.

// errNothingToSend: an outbox row has no device to go to (the account has
// no other device, or the message it is a sync copy of was refused).
var errNothingToSend = errors.New("nothing to send")

// queueSyncCopy adds the sync copy of message id (inner, sent in direct
// conversation to) to the outbox, inside the sender's transaction, right
// after the message itself so it goes out after it. Any content kind
// travels this way (texts, files, reactions, edits, deletes, read
// receipts, timer changes), so every own device ends in the same state.
func (c *Client) queueSyncCopy(ctx context.Context, tx *sql.Tx, a *account, to string, id MessageID, inner *wire.Content) error {
	content, err := marshalPadded(&wire.Content{SentMs: inner.GetSentMs(), Body: &wire.Content_SyncSent{SyncSent: &wire.SyncSent{
		To: to, MessageId: id[:], Content: inner,
	}}})
	if err != nil {
		return err
	}
	sid := newMessageID()
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms, sync_of) VALUES (?, ?, ?, ?, ?)`,
		sid[:], a.Username, content, inner.GetSentMs(), id[:]); err != nil {
		return &localError{err}
	}
	return nil
}

// deliveryList returns the verified devices an outbox row goes to: the
// recipient's list, or for a row to the own username the own list without
// this device. errNothingToSend if there is none.
func (c *Client) deliveryList(ctx context.Context, cn *conn, a *account, row outboxRow, force bool) (*identity.SignedDeviceList, error) {
	if row.to != a.Username {
		return c.peerList(ctx, cn, row.to, force)
	}
	var syncOf []byte
	if err := c.db.QueryRowContext(ctx, `SELECT sync_of FROM outbox WHERE message_id = ?`, row.id[:]).Scan(&syncOf); err != nil {
		return nil, &localError{err}
	}
	if syncOf != nil {
		// Only a text has a history row; other kinds (a reaction, an
		// edit) were applied here already and go to the own devices
		// whatever becomes of them.
		var state int
		err := c.db.QueryRowContext(ctx, `SELECT state FROM history WHERE outgoing = 1 AND message_id = ?`, syncOf).Scan(&state)
		if err == nil && state == stateFailed {
			return nil, errNothingToSend // the message itself was refused
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, &localError{err}
		}
	}
	l, err := c.peerList(ctx, cn, a.Username, force)
	if err != nil {
		return nil, err
	}
	if _, ok := l.List.Find(a.DeviceID); !ok {
		return nil, fmt.Errorf("this device (%d) is no longer in the device list of %s; it was removed", a.DeviceID, a.Username)
	}
	// A copy for targeting only: the devices stay the verified ones.
	others := &identity.SignedDeviceList{List: identity.DeviceList{Username: l.List.Username, Version: l.List.Version}, Signature: l.Signature}
	for _, d := range l.List.Devices {
		if d.ID != a.DeviceID {
			others.List.Devices = append(others.List.Devices, d)
		}
	}
	if len(others.List.Devices) == 0 {
		return nil, errNothingToSend
	}
	return others, nil
}

// DeviceChange is what a DeviceEvent reports.
type DeviceChange int

// Kinds of device change.
const (
	DeviceAdded DeviceChange = iota + 1
	DeviceRemoved
	AccountKeyChanged
)

func (k DeviceChange) String() string {
	switch k {
	case DeviceAdded:
		return "added"
	case DeviceRemoved:
		return "removed"
	case AccountKeyChanged:
		return "account_key_changed"
	}
	return "unknown"
}

// DeviceEvent is a peer's (or this account's) notice that its devices
// changed. The receiving Client refetches that user's device list.
type DeviceEvent struct {
	ID       MessageID
	From     string
	Device   uint32 // the device that sent the notice
	Sent     time.Time
	Received time.Time
	Change   DeviceChange
	DeviceID uint32 // the device added or removed
	Name     string // its name, for DeviceAdded

	// ownKey: the own account key this notice replaced (committed with
	// it); process puts it in the account in memory.
	ownKey keys.AccountPublic
}

func (*DeviceEvent) isEvent() {}

// receiveDeviceContent handles the contents this file owns, inside the
// receiving transaction: sync copies (stored as outgoing history of the
// conversation with their recipient) and device notices. handled is false
// for any other content. seqs are history rows to mark handed over once
// evs are. An error that is not a *localError means the message is
// dropped.
func (c *Client) receiveDeviceContent(ctx context.Context, tx *sql.Tx, a *account, k deviceKey, id MessageID, plaintext []byte, now time.Time) (evs []Event, seqs []int64, handled bool, err error) {
	var ct wire.Content
	if proto.Unmarshal(plaintext, &ct) != nil {
		return nil, nil, false, nil // decodeContent reports it
	}
	own := k.user == a.Username
	switch {
	case !own && ct.GetDeviceNotice().GetKind() == wire.DeviceNotice_ACCOUNT_KEY_CHANGED:
		return nil, nil, false, nil // a peer's new key is for screenIncoming (client/contacts.go)
	case ct.GetSyncSent() != nil, ct.GetDeviceNotice() != nil:
	default:
		return nil, nil, false, nil
	}
	if own {
		if _, err := tx.ExecContext(ctx, `INSERT INTO own_devices (device_id, name, added_ms, last_seen_ms) VALUES (?, '', ?, ?)
			ON CONFLICT (device_id) DO UPDATE SET last_seen_ms = excluded.last_seen_ms`, k.device, now.UnixMilli(), now.UnixMilli()); err != nil {
			return nil, nil, true, &localError{err}
		}
	}
	if s := ct.GetSyncSent(); s != nil {
		if !own {
			return nil, nil, true, fmt.Errorf("%w: a sync copy from %s, who is not this account", ErrProtocol, k.user)
		}
		var evs []Event
		var seqs []int64
		err := savepoint(ctx, tx, func() (err error) {
			evs, seqs, err = c.storeSyncCopy(ctx, tx, a, k, s, now)
			return err
		})
		return evs, seqs, true, err
	}
	n := ct.GetDeviceNotice()
	e := &DeviceEvent{ID: id, From: k.user, Device: k.device, Sent: time.UnixMilli(ct.GetSentMs()), Received: now, DeviceID: n.GetDeviceId(), Name: n.GetDeviceName()}
	switch n.GetKind() {
	case wire.DeviceNotice_ADDED:
		e.Change = DeviceAdded
	case wire.DeviceNotice_REMOVED:
		e.Change = DeviceRemoved
	case wire.DeviceNotice_ACCOUNT_KEY_CHANGED:
		e.Change = AccountKeyChanged
	default:
		return nil, nil, true, fmt.Errorf("device notice of unknown kind %d", n.GetKind())
	}
	if err := checkDeviceName(e.Name); err != nil {
		return nil, nil, true, err
	}
	if own && e.Change == DeviceAdded {
		if err := setDeviceName(ctx, tx, e.DeviceID, e.Name, now); err != nil {
			return nil, nil, true, err
		}
	}
	if own && e.Change == AccountKeyChanged && len(n.GetAccountKey()) > 0 {
		if e.ownKey, err = adoptOwnKey(ctx, tx, a, n.GetAccountKey(), now); err != nil {
			return nil, nil, true, err
		}
	}
	if own && e.DeviceID == a.DeviceID {
		return nil, nil, true, nil // news to everyone but this device
	}
	return []Event{e}, nil, true, nil
}

// adoptOwnKey stores the new account public key an own device announced
// after an identity reset (docs/protocol.md §9.12). It is taken only from
// a message decrypted on a session with a device of the own verified list,
// never from the server (which could then impersonate the account to its
// own devices) nor from another account. afterDeviceEvents then refetches
// the own list, which must verify with the new key. The primary holds the
// private key and changes it only itself. It returns the key adopted, or
// the zero key if there was nothing to change.
func adoptOwnKey(ctx context.Context, tx *sql.Tx, a *account, raw []byte, now time.Time) (keys.AccountPublic, error) {
	key, err := keys.ParseAccountPublic(raw)
	if err != nil {
		return keys.AccountPublic{}, fmt.Errorf("%w: new account key in a device notice: %v", ErrProtocol, err)
	}
	if a.primary() || bytes.Equal(raw, a.AccountPub.Bytes()) {
		return keys.AccountPublic{}, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE account SET account_key = ? WHERE id = 1`, key.Bytes()); err != nil {
		return keys.AccountPublic{}, &localError{err}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE peers SET account_key = ?, updated_ms = ? WHERE username = ?`,
		key.Bytes(), now.UnixMilli(), a.Username); err != nil {
		return keys.AccountPublic{}, &localError{err}
	}
	return key, nil
}

// storeSyncCopy applies what this account sent from another device: any
// content kind, through the same code as incoming content
// (client/messaging.go) but as outgoing. s.To is a username or a group's
// conversation key. Writing to someone makes them a contact on every
// device: a stranger becomes one, and a pending message request counts as
// accepted, its messages moving into the history and handed over before
// the copy.
func (c *Client) storeSyncCopy(ctx context.Context, tx *sql.Tx, a *account, k deviceKey, s *wire.SyncSent, now time.Time) ([]Event, []int64, error) {
	to, err := convKey(s.GetTo())
	if err != nil || to != s.GetTo() || to == a.Username {
		return nil, nil, fmt.Errorf("%w: sync copy to %q", ErrProtocol, s.GetTo())
	}
	o := origin{conv: to, from: a.Username, device: k.device, outgoing: true}
	if len(s.GetMessageId()) != len(o.id) {
		return nil, nil, fmt.Errorf("%w: sync copy with a message id of %d bytes", ErrProtocol, len(s.GetMessageId()))
	}
	copy(o.id[:], s.GetMessageId())
	inner := s.GetContent()
	if inner == nil {
		return nil, nil, fmt.Errorf("%w: sync copy without content", ErrProtocol)
	}
	o.sent = time.UnixMilli(inner.GetSentMs())
	if inner.GetGroupUpdate() != nil {
		// Own group changes come as plain GroupUpdates; a sync copy of
		// one says an own device left as the last member (client/groupops.go).
		return c.receiveLastLeave(ctx, tx, a, o.id, to, inner, now)
	}
	if isGroupConv(to) != (inner.GetGroup() != nil) {
		return nil, nil, fmt.Errorf("%w: sync copy to %q with a group context that does not match", ErrProtocol, to)
	}
	if inner.GetGroup() != nil {
		conv, err := c.groupIncoming(ctx, tx, a, a.Username, inner, now)
		var le *localError
		if errors.As(err, &le) {
			return nil, nil, err
		}
		if err != nil || conv != to {
			return nil, nil, fmt.Errorf("%w: sync copy for a group this device does not know", errIgnored)
		}
	}
	var evs []Event
	var seqs []int64
	if !isGroupConv(to) && inner.GetText() != nil {
		if evs, seqs, err = acceptBySyncCopy(ctx, tx, to, now); err != nil {
			return nil, nil, err
		}
	}
	more, moreSeqs, err := c.applyContent(ctx, tx, a, o, inner, now)
	if err != nil {
		return nil, nil, err
	}
	return append(evs, more...), append(seqs, moreSeqs...), nil
}

// acceptBySyncCopy makes user a contact because another device of this
// account wrote to them; their pending requests become history.
func acceptBySyncCopy(ctx context.Context, tx *sql.Tx, user string, now time.Time) ([]Event, []int64, error) {
	r, err := loadContact(ctx, tx, user)
	if err != nil || r.blocked == 1 || r.state == stateContact {
		return nil, nil, err
	}
	pending, seqs, err := moveRequests(ctx, tx, user, false)
	if err != nil {
		return nil, nil, err
	}
	var evs []Event
	for _, e := range pending {
		evs = append(evs, &MessageEvent{ID: e.ID, From: user, Device: e.Device, Sent: e.Sent, Received: e.Received, Text: e.Text,
			Attachment: e.Attachment, ReplyTo: e.ReplyTo, Expires: e.Expires})
	}
	return evs, seqs, setContact(ctx, tx, user, now, `state = ?`, stateContact)
}

// afterDeviceEvents refetches the device list of every user whose notice
// arrived, once the notices are committed; a list that fails verification
// is reported, never used.
func (c *Client) afterDeviceEvents(ctx context.Context, cn *conn, events []Event) {
	done := map[string]bool{}
	for _, ev := range events {
		e, ok := ev.(*DeviceEvent)
		if !ok || done[e.From] {
			continue
		}
		done[e.From] = true
		l, err := c.fetchPeer(ctx, cn, e.From)
		if err != nil {
			c.cfg.Warn(err)
			continue
		}
		if a, aerr := c.account(); aerr == nil && e.From == a.Username && e.Change == AccountKeyChanged {
			// The account row's copy of the list is the old key's.
			if err := c.acceptOwnList(ctx, a, l); err != nil {
				c.cfg.Warn(err)
			}
		}
	}
}

// queueDeviceNotice puts a DeviceNotice for every contact and for the own
// other devices into the outbox.
func (c *Client) queueDeviceNotice(ctx context.Context, a *account, kind wire.DeviceNotice_Kind, id uint32, name string) error {
	n := &wire.DeviceNotice{Kind: kind, DeviceId: id, DeviceName: name}
	return c.queueNotices(ctx, a, n, n)
}

// queueNotices puts notice for every contact and own for the own other
// devices into the outbox.
func (c *Client) queueNotices(ctx context.Context, a *account, notice, own *wire.DeviceNotice) error {
	now := c.now()
	content, err := marshalPadded(&wire.Content{SentMs: now.UnixMilli(), Body: &wire.Content_DeviceNotice{DeviceNotice: notice}})
	if err != nil {
		return err
	}
	ownContent, err := marshalPadded(&wire.Content{SentMs: now.UnixMilli(), Body: &wire.Content_DeviceNotice{DeviceNotice: own}})
	if err != nil {
		return err
	}
	to, err := c.noticeRecipients(ctx, a)
	if err != nil {
		return err
	}
	return inTx(ctx, c.db, func(tx *sql.Tx) error {
		for _, u := range append(to, a.Username) {
			body := content
			if u == a.Username {
				body = ownContent
			}
			mid := newMessageID()
			if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms) VALUES (?, ?, ?, ?)`,
				mid[:], u, body, now.UnixMilli()); err != nil {
				return &localError{err}
			}
		}
		return nil
	})
}

// noticeRecipients are the accounts told about device changes: the
// contacts (client/contacts.go) that are not blocked. Strangers learn
// nothing.
func (c *Client) noticeRecipients(ctx context.Context, a *account) ([]string, error) {
	rs, err := c.db.QueryContext(ctx, `SELECT p.username FROM peers p JOIN contacts c ON c.username = p.username
		WHERE c.state = ? AND c.blocked = 0 AND p.username != ? ORDER BY p.username`, stateContact, a.Username)
	if err != nil {
		return nil, &localError{err}
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var u string
		if err := rs.Scan(&u); err != nil {
			return nil, &localError{err}
		}
		out = append(out, u)
	}
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	return out, nil
}

// flushNotices delivers the outbox after queueing notices. Their failure
// does not undo the device change: it is reported to Config.Warn, and
// what could not be sent yet stays queued.
func (c *Client) flushNotices(ctx context.Context) error {
	rep := c.flush(ctx)
	for _, f := range rep.Failed {
		c.cfg.Warn(fmt.Errorf("message to %s could not be delivered and was dropped from the outbox: %w", f.To, f.Err))
	}
	if rep.Pending > 0 {
		c.cfg.Warn(fmt.Errorf("%d messages (device notices among them) stay queued until the next send or recv: %w", rep.Pending, rep.Err))
	}
	return nil
}
