package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/wire"
)

// Contact states, as stored in contacts.state (docs/protocol.md §9.8).
const (
	stateStranger = 0 // never accepted, never written to
	stateRequest  = 1 // wrote to us first; their messages wait in requests
	stateContact  = 2 // we wrote first or accepted them
)

// ContactState says how a peer relates to this account.
type ContactState int

// Contact states.
const (
	Stranger  ContactState = stateStranger
	Requested ContactState = stateRequest
	Accepted  ContactState = stateContact
)

func (s ContactState) String() string {
	switch s {
	case Stranger:
		return "stranger"
	case Requested:
		return "request"
	case Accepted:
		return "contact"
	}
	return "unknown"
}

// Contact is what this device knows about another account.
type Contact struct {
	Username string
	State    ContactState
	Verified bool // the user compared safety numbers
	Blocked  bool
	// KeyChanged: the server shows an account key the user has not
	// accepted yet; nothing is sent to them until Trust.
	KeyChanged bool
	// Sealed: their delivery token is known, so messages to them are
	// sealed (the server does not learn the sender).
	Sealed bool
}

// RequestEvent reports a message from an account that is not a contact.
// Its text (and file, quote, erase time) is kept for Requests and Accept,
// never handed over here.
type RequestEvent struct {
	ID       MessageID
	From     string
	Device   uint32
	Sent     time.Time
	Received time.Time
	// Attachment is set when the request carries a file; it can be
	// downloaded once the request is accepted.
	Attachment *AttachmentInfo
}

func (*RequestEvent) isEvent() {}

// contactRow is one row of the contacts table.
type contactRow struct {
	state, blocked, verified int
	token                    []byte
	changedKey, changedList  []byte
	changedVerified          int
}

type dbExec interface {
	querier
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// loadContact reads user's row; a stranger's zero row if there is none.
func loadContact(ctx context.Context, q querier, user string) (contactRow, error) {
	var r contactRow
	err := q.QueryRowContext(ctx, `SELECT state, blocked, verified, delivery_token, changed_key, changed_list, changed_verified
		FROM contacts WHERE username = ?`, user).Scan(&r.state, &r.blocked, &r.verified, &r.token, &r.changedKey, &r.changedList, &r.changedVerified)
	if errors.Is(err, sql.ErrNoRows) {
		return contactRow{}, nil
	}
	if err != nil {
		return r, &localError{err}
	}
	return r, nil
}

// ensureContact creates user's row if there is none.
func ensureContact(ctx context.Context, x dbExec, user string, now time.Time) error {
	_, err := x.ExecContext(ctx, `INSERT INTO contacts (username, updated_ms) VALUES (?, ?) ON CONFLICT DO NOTHING`, user, now.UnixMilli())
	if err != nil {
		return &localError{err}
	}
	return nil
}

// setContact runs one UPDATE on user's row, creating it first.
func setContact(ctx context.Context, x dbExec, user string, now time.Time, set string, args ...any) error {
	if err := ensureContact(ctx, x, user, now); err != nil {
		return err
	}
	args = append(args, now.UnixMilli(), user)
	if _, err := x.ExecContext(ctx, `UPDATE contacts SET `+set+`, updated_ms = ? WHERE username = ?`, args...); err != nil {
		return &localError{err}
	}
	return nil
}

func (r contactRow) public(user string) Contact {
	return Contact{
		Username:   user,
		State:      ContactState(r.state),
		Verified:   r.verified == 1,
		Blocked:    r.blocked == 1,
		KeyChanged: r.changedKey != nil,
		Sealed:     len(r.token) == DeliveryTokenSize,
	}
}

// peerName normalizes a username given by the user and refuses our own.
func (c *Client) peerName(name string) (*account, string, error) {
	a, err := c.account()
	if err != nil {
		return nil, "", err
	}
	user, err := identity.NormalizeUsername(name)
	if err != nil {
		return nil, "", err
	}
	if user == a.Username {
		return nil, "", fmt.Errorf("%s is this account", user)
	}
	return a, user, nil
}

// ContactInfo returns what this device knows about username.
func (c *Client) ContactInfo(ctx context.Context, username string) (Contact, error) {
	_, user, err := c.peerName(username)
	if err != nil {
		return Contact{}, err
	}
	r, err := loadContact(ctx, c.db, user)
	if err != nil {
		return Contact{}, err
	}
	return r.public(user), nil
}

// Contacts lists the accepted and the blocked accounts, by name.
func (c *Client) Contacts(ctx context.Context) ([]Contact, error) {
	if _, err := c.account(); err != nil {
		return nil, err
	}
	// An account the server never confirmed (a typo written to) is no
	// contact; a blocked name is listed anyway.
	rs, err := c.db.QueryContext(ctx, `SELECT c.username, c.state, c.blocked, c.verified, c.delivery_token, c.changed_key
		FROM contacts c LEFT JOIN peers p ON p.username = c.username
		WHERE c.state = ? AND p.username IS NOT NULL OR c.blocked = 1 ORDER BY c.username`, stateContact)
	if err != nil {
		return nil, &localError{err}
	}
	defer rs.Close()
	var out []Contact
	for rs.Next() {
		var user string
		var r contactRow
		if err := rs.Scan(&user, &r.state, &r.blocked, &r.verified, &r.token, &r.changedKey); err != nil {
			return nil, &localError{err}
		}
		out = append(out, r.public(user))
	}
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	return out, nil
}

// Requests returns the pending messages of accounts that wrote to us
// without being contacts, oldest first.
func (c *Client) Requests(ctx context.Context) ([]Entry, error) {
	if _, err := c.account(); err != nil {
		return nil, err
	}
	if err := c.sweepExpired(ctx); err != nil {
		return nil, err
	}
	return requestEntries(ctx, c.db, "")
}

func requestEntries(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, peer string) ([]Entry, error) {
	rs, err := q.QueryContext(ctx, `SELECT peer, message_id, device, sent_ms, received_ms, body, attachment, reply_to, reply_author, expires_ms
		FROM requests WHERE ? = '' OR peer = ? ORDER BY seq`, peer, peer)
	if err != nil {
		return nil, &localError{err}
	}
	defer rs.Close()
	var out []Entry
	for rs.Next() {
		var e Entry
		var id, att, reply []byte
		var replyAuthor sql.NullString
		var sent, recv, expires int64
		if err := rs.Scan(&e.Peer, &id, &e.Device, &sent, &recv, &e.Text, &att, &reply, &replyAuthor, &expires); err != nil {
			return nil, &localError{err}
		}
		copy(e.ID[:], id)
		e.Author = e.Peer
		e.Sent, e.Received, e.Status = time.UnixMilli(sent), time.UnixMilli(recv), Received
		e.Attachment = storedAttachment(att)
		if len(reply) == len(e.ID) {
			e.ReplyTo = &MessageRef{Author: replyAuthor.String}
			copy(e.ReplyTo.ID[:], reply)
		}
		if expires > 0 {
			e.Expires = time.UnixMilli(expires)
		}
		out = append(out, e)
	}
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	return out, nil
}

// moveRequests moves user's pending requests into the history, as they
// came (file, quote, erase time included), and returns them with their
// history rows. handed says whether the caller hands them over itself
// (Accept) or Receive is to (state 0).
func moveRequests(ctx context.Context, tx *sql.Tx, user string, handed bool) ([]Entry, []int64, error) {
	pending, err := requestEntries(ctx, tx, user)
	if err != nil {
		return nil, nil, err
	}
	state := 0
	if handed {
		state = 1
	}
	var seqs []int64
	for _, e := range pending {
		var replyID []byte
		var replyAuthor any
		if e.ReplyTo != nil {
			replyID = e.ReplyTo.ID[:]
			if e.ReplyTo.Author != "" {
				replyAuthor = e.ReplyTo.Author
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO history (peer, outgoing, message_id, device, sent_ms, received_ms, body, state,
			attachment, reply_to, reply_author, expires_ms) SELECT ?, 0, ?, ?, ?, ?, ?, ?, attachment, ?, ?, ? FROM requests WHERE peer = ? AND message_id = ?`,
			user, e.ID[:], e.Device, e.Sent.UnixMilli(), e.Received.UnixMilli(), e.Text, state, replyID, replyAuthor, unixMilli(e.Expires), user, e.ID[:])
		if err != nil {
			return nil, nil, &localError{err}
		}
		seq, err := res.LastInsertId()
		if err != nil {
			return nil, nil, &localError{err}
		}
		seqs = append(seqs, seq)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM requests WHERE peer = ?`, user); err != nil {
		return nil, nil, &localError{err}
	}
	return pending, seqs, nil
}

// Accept makes username a contact: their pending requests move into the
// history and are returned, and they are sent this account's delivery
// token so they can write to us sealed (docs/protocol.md §9.8). If the
// server cannot be reached, the token stays queued and the acceptance
// still holds.
func (c *Client) Accept(ctx context.Context, username string) ([]Entry, error) {
	a, user, err := c.peerName(username)
	if err != nil {
		return nil, err
	}
	r, err := loadContact(ctx, c.db, user)
	if err != nil {
		return nil, err
	}
	if r.blocked == 1 {
		return nil, fmt.Errorf("you blocked %s; unblock them first", user)
	}
	if known, err := c.knownPeer(ctx, user); err != nil {
		return nil, err
	} else if known == nil {
		// Never heard of: make sure the account exists before promising it
		// anything.
		if err := c.CheckUser(ctx, user); err != nil {
			return nil, err
		}
	}
	token, err := c.ownDeliveryToken(ctx)
	if err != nil {
		return nil, err
	}
	// A disappearing request whose time ran out is not moved.
	if err := c.sweepExpired(ctx); err != nil {
		return nil, err
	}
	var pending []Entry
	now := c.now()
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		var err error
		// Handed over by this call, so Receive does not repeat them.
		if pending, _, err = moveRequests(ctx, tx, user, true); err != nil {
			return err
		}
		if err := setContact(ctx, tx, user, now, `state = ?`, stateContact); err != nil {
			return err
		}
		// The own other devices learn of it too (screenOwn).
		return queueOwnSync(ctx, tx, a, user, &wire.Content{SentMs: now.UnixMilli(), Body: &wire.Content_DeliveryToken{DeliveryToken: &wire.DeliveryToken{Token: token}}})
	})
	if err != nil {
		return nil, err
	}
	err = c.sendControl(ctx, user, &wire.Content{SentMs: now.UnixMilli(), Body: &wire.Content_DeliveryToken{DeliveryToken: &wire.DeliveryToken{Token: token}}})
	var qe *QueuedError
	if errors.As(err, &qe) {
		c.cfg.Warn(fmt.Errorf("could not share the delivery token with %s yet: %w", user, err))
		err = nil
	}
	return pending, err
}

// Block drops every later message and call from username (sealed or
// not) and deletes their pending requests, on this device and, through a
// ContactSync, on the account's other devices; the server is told to
// refuse their authenticated messages. If the server cannot be reached
// now, both happen on the next connection.
func (c *Client) Block(ctx context.Context, username string) error {
	return c.setBlocked(ctx, username, true)
}

// Unblock undoes Block.
func (c *Client) Unblock(ctx context.Context, username string) error {
	return c.setBlocked(ctx, username, false)
}

func (c *Client) setBlocked(ctx context.Context, username string, block bool) error {
	a, user, err := c.peerName(username)
	if err != nil {
		return err
	}
	now := c.now()
	id := newMessageID()
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		if err := applyBlocked(ctx, tx, user, block, now); err != nil {
			return err
		}
		if err := ensureSealedState(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sealed_state SET blocked_synced = 0`); err != nil {
			return &localError{err}
		}
		// The own other devices apply it too (screenOwn), queued with
		// the change so that neither can happen without the other.
		b, err := marshalPadded(&wire.Content{SentMs: now.UnixMilli(), Body: &wire.Content_ContactSync{ContactSync: &wire.ContactSync{Username: user, Blocked: block}}})
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms) VALUES (?, ?, ?, ?)`,
			id[:], a.Username, b, now.UnixMilli()); err != nil {
			return &localError{err}
		}
		return nil
	})
	if err != nil {
		return err
	}
	cn, err := c.connection(ctx)
	if err == nil {
		err = c.syncBlocked(ctx, cn)
	}
	if err != nil {
		c.cfg.Warn(fmt.Errorf("the server was not told about the change of blocked accounts yet (it will be on the next connection): %w", err))
	}
	rep := c.flush(ctx)
	for _, f := range rep.Failed {
		c.cfg.Warn(fmt.Errorf("message to %s could not be delivered and was dropped from the outbox: %w", f.To, f.Err))
	}
	var n int
	if err := c.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE message_id = ?`, id[:]).Scan(&n); err == nil && n > 0 {
		err := rep.Err
		if err == nil {
			err = errors.New("not delivered yet")
		}
		c.cfg.Warn(fmt.Errorf("the account's other devices were not told about the change of blocked accounts yet (they will be on the next send or receive): %w", err))
	}
	return nil
}

// applyBlocked sets or clears user's blocked flag; blocking deletes their
// pending requests.
func applyBlocked(ctx context.Context, tx *sql.Tx, user string, block bool, now time.Time) error {
	if err := setContact(ctx, tx, user, now, `blocked = ?`, boolInt(block)); err != nil {
		return err
	}
	if block {
		if _, err := tx.ExecContext(ctx, `DELETE FROM requests WHERE peer = ?`, user); err != nil {
			return &localError{err}
		}
	}
	return nil
}

// blockedList returns the blocked usernames, sorted.
func blockedList(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}) ([]string, error) {
	rs, err := q.QueryContext(ctx, `SELECT username FROM contacts WHERE blocked = 1 ORDER BY username`)
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

// syncBlocked sends the full blocked list if the server may lack it.
func (c *Client) syncBlocked(ctx context.Context, cn *conn) error {
	var synced int
	err := c.db.QueryRowContext(ctx, `SELECT blocked_synced FROM sealed_state WHERE id = 1`).Scan(&synced)
	if errors.Is(err, sql.ErrNoRows) || err == nil && synced == 1 {
		return nil
	}
	if err != nil {
		return &localError{err}
	}
	list, err := blockedList(ctx, c.db)
	if err != nil {
		return err
	}
	r, err := cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_SetBlocked{SetBlocked: &wire.SetBlockedRequest{Usernames: list}}})
	if err != nil {
		return err
	}
	if r.GetOk() == nil {
		return fmt.Errorf("%w: expected ok to set_blocked", ErrProtocol)
	}
	// Another process may have changed the list meanwhile: only mark it
	// synced if what the server got is still the list.
	return inTx(ctx, c.db, func(tx *sql.Tx) error {
		now, err := blockedList(ctx, tx)
		if err != nil || !slices.Equal(now, list) {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sealed_state SET blocked_synced = 1`); err != nil {
			return &localError{err}
		}
		return nil
	})
}

// sendControl queues a message that is not shown in the history (a token,
// a notice) and delivers the outbox. A *QueuedError means it is still
// queued.
func (c *Client) sendControl(ctx context.Context, to string, content *wire.Content) error {
	if err := c.checkKeyTrusted(ctx, to); err != nil {
		return err
	}
	b, err := marshalPadded(content)
	if err != nil {
		return err
	}
	id := newMessageID()
	if _, err := c.db.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms) VALUES (?, ?, ?, ?)`,
		id[:], to, b, c.now().UnixMilli()); err != nil {
		return &localError{err}
	}
	rep := c.flush(ctx)
	for _, f := range rep.Failed {
		if f.ID == id {
			return f.Err
		}
		c.cfg.Warn(fmt.Errorf("message to %s could not be delivered and was dropped from the outbox: %w", f.To, f.Err))
	}
	if slices.Contains(rep.Sent, id) {
		return nil
	}
	// A concurrent flush may have sent it.
	var n int
	if err := c.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE message_id = ?`, id[:]).Scan(&n); err == nil && n == 0 {
		return nil
	}
	err = rep.Err
	if err == nil {
		err = errors.New("not delivered yet")
	}
	return &QueuedError{ID: id, Err: err}
}

// writeToken checks that user may be written to: not blocked, not a
// pending request, no unaccepted key change. Writing to a stranger makes
// them a contact, so the message carries our delivery token, which it
// returns (docs/protocol.md §9.8).
func (c *Client) writeToken(ctx context.Context, user string, now time.Time) ([]byte, error) {
	r, err := loadContact(ctx, c.db, user)
	if err != nil {
		return nil, err
	}
	switch {
	case r.blocked == 1:
		return nil, fmt.Errorf("you blocked %s; unblock them to write to them", user)
	case r.state == stateRequest:
		return nil, fmt.Errorf("%s sent you a message request; accept it before replying", user)
	case r.changedKey != nil:
		// Still refused unless the server shows the trusted key again.
		if err := c.recheckKey(ctx, user, r); err != nil {
			return nil, err
		}
	}
	token, err := c.ownDeliveryToken(ctx)
	if err != nil {
		return nil, err
	}
	if r.state == stateStranger {
		if err := setContact(ctx, c.db, user, now, `state = ?`, stateContact); err != nil {
			return nil, err
		}
	}
	return token, nil
}

// screen is what screenIncoming decided about a decrypted message.
type screen struct {
	done   bool    // fully handled here
	events []Event // handed over if done
	seqs   []int64 // history rows to mark handed over with them
}

// screenIncoming applies contacts, requests, blocking and delivery tokens
// to a decrypted message from another account, inside the receiving
// transaction, and handles peers' notices of a new account key. Messages
// of the own devices go to screenOwn.
func (c *Client) screenIncoming(ctx context.Context, tx *sql.Tx, a *account, k deviceKey, id MessageID, now time.Time, plaintext []byte) (screen, error) {
	if k.user == a.Username {
		return screenOwn(ctx, tx, a, plaintext, now)
	}
	var content wire.Content
	if proto.Unmarshal(plaintext, &content) != nil {
		return screen{}, nil // reported by the caller's decoding
	}
	r, err := loadContact(ctx, tx, k.user)
	if err != nil {
		return screen{}, err
	}
	if r.blocked == 1 {
		// Decrypted (so the session stays in step should they be
		// unblocked) but neither kept nor shown.
		return screen{done: true}, nil
	}
	if content.GetContactSync() != nil {
		// Only the own devices may say whom this account blocks.
		return screen{}, fmt.Errorf("%w: a contact sync from %s, who is not this account", ErrProtocol, k.user)
	}
	token := content.GetSenderDeliveryToken()
	if t := content.GetDeliveryToken(); t != nil {
		token = t.GetToken()
	}
	if len(token) == DeliveryTokenSize {
		if err := setContact(ctx, tx, k.user, now, `delivery_token = ?`, token); err != nil {
			return screen{}, err
		}
	}
	switch {
	case content.GetDeliveryToken() != nil:
		return screen{done: true}, nil
	case content.GetDeviceNotice().GetKind() == wire.DeviceNotice_ACCOUNT_KEY_CHANGED:
		// Once committed, afterDeviceEvents fetches their account, and
		// fetchPeer finds and records the new key (noteKeyCheck).
		return screen{done: true, events: []Event{&DeviceEvent{
			ID: id, From: k.user, Device: k.device, Sent: time.UnixMilli(content.GetSentMs()), Received: now,
			Change: AccountKeyChanged, DeviceID: content.GetDeviceNotice().GetDeviceId(),
		}}}, nil
	case content.GetText() != nil && r.state != stateContact && content.GetGroup() == nil:
		// Group messages are not requests: the group decides who may
		// write (client/groups.go).
		body, err := decodeContent(plaintext)
		if err != nil {
			return screen{}, err // dropped by the caller
		}
		// Kept as it came but for the erase time, counted from now as
		// for any message stored (docs/protocol.md §12.3).
		var replyID []byte
		var replyAuthor any
		if body.reply != nil {
			replyID = body.reply.ID[:]
			if body.reply.Author != "" {
				replyAuthor = body.reply.Author
			}
		}
		var expires int64
		if body.expire > 0 {
			expires = now.Add(body.expire).UnixMilli()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO requests (peer, message_id, device, sent_ms, received_ms, body,
			attachment, reply_to, reply_author, expires_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.user, id[:], k.device, body.sent.UnixMilli(), now.UnixMilli(), body.text,
			body.attBlob, replyID, replyAuthor, expires); err != nil {
			return screen{}, &localError{err}
		}
		if err := setContact(ctx, tx, k.user, now, `state = ?`, stateRequest); err != nil {
			return screen{}, err
		}
		return screen{done: true, events: []Event{&RequestEvent{ID: id, From: k.user, Device: k.device, Sent: body.sent, Received: now,
			Attachment: body.att}}}, nil
	case r.state != stateContact && content.GetGroup() == nil && conversationControl(&content):
		// Until they are accepted they have no conversation here: a
		// stranger may not show "typing…", set the timer, or touch a
		// message (docs/protocol.md §9.11).
		return screen{done: true}, nil
	}
	return screen{}, nil
}

// conversationControl reports whether c acts on a conversation without
// being a message of its own: a reaction, edit, delete, receipt, typing
// indicator or timer.
func conversationControl(c *wire.Content) bool {
	return c.GetReaction() != nil || c.GetEdit() != nil || c.GetDelete() != nil ||
		c.GetReceipt() != nil || c.GetTyping() != nil || c.GetTimer() != nil
}

// queueOwnSync queues, for the account's other devices, a copy of
// something sent to user that is not a text (client/sync.go sends texts'
// copies): they learn that user became a contact.
func queueOwnSync(ctx context.Context, tx *sql.Tx, a *account, user string, inner *wire.Content) error {
	id := newMessageID()
	b, err := marshalPadded(&wire.Content{SentMs: inner.GetSentMs(), Body: &wire.Content_SyncSent{SyncSent: &wire.SyncSent{
		To: user, MessageId: id[:], Content: inner,
	}}})
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms) VALUES (?, ?, ?, ?)`,
		id[:], a.Username, b, inner.GetSentMs()); err != nil {
		return &localError{err}
	}
	return nil
}

// screenOwn handles what another device of this account tells about
// contacts: a block or unblock (ContactSync), applied here too, and the
// sync copy of an acceptance (a delivery token sent to someone), which
// makes them a contact here too (acceptBySyncCopy, client/sync.go, which
// also does it for sync copies of texts). Everything else is
// client/sync.go's.
func screenOwn(ctx context.Context, tx *sql.Tx, a *account, plaintext []byte, now time.Time) (screen, error) {
	var content wire.Content
	if proto.Unmarshal(plaintext, &content) != nil {
		return screen{}, nil
	}
	if cs := content.GetContactSync(); cs != nil {
		return screen{done: true}, applyContactSync(ctx, tx, a, cs, now)
	}
	if content.GetSyncSent().GetContent().GetDeliveryToken() == nil {
		return screen{}, nil
	}
	to, err := identity.NormalizeUsername(content.GetSyncSent().GetTo())
	if err != nil || to != content.GetSyncSent().GetTo() || to == a.Username {
		return screen{}, fmt.Errorf("%w: sync copy to %q", ErrProtocol, content.GetSyncSent().GetTo())
	}
	evs, seqs, err := acceptBySyncCopy(ctx, tx, to, now)
	return screen{done: true, events: evs, seqs: seqs}, err
}

// applyContactSync applies a block or unblock made on another device of
// this account (docs/protocol.md §9.11). The caller made sure it came
// from one. This device then sends the server its list, now the same as
// the other device's: until it does, the server holds whatever list the
// device that set it last had.
func applyContactSync(ctx context.Context, tx *sql.Tx, a *account, cs *wire.ContactSync, now time.Time) error {
	user, err := identity.NormalizeUsername(cs.GetUsername())
	if err != nil || user != cs.GetUsername() || user == a.Username {
		return fmt.Errorf("%w: contact sync for %q", ErrProtocol, cs.GetUsername())
	}
	if err := applyBlocked(ctx, tx, user, cs.GetBlocked(), now); err != nil {
		return err
	}
	// No row: there is no delivery token yet, and nothing to tell the
	// server (syncBlocked).
	if _, err := tx.ExecContext(ctx, `UPDATE sealed_state SET blocked_synced = 0`); err != nil {
		return &localError{err}
	}
	return nil
}
