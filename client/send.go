package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/ratchet"
	"github.com/hush-chat/hush/wire"
)

// maxSendAttempts bounds how often one message is re-submitted after the
// server says the device list changed under it.
const maxSendAttempts = 4

// History states of outgoing messages.
const (
	stateQueued = 0
	stateStored = 1
	stateFailed = 2
)

// Send sends text to every device of the user to (or, for a group
// conversation key, of every member: client/groups.go). It returns once the
// server has durably stored a copy for each of them.
//
// The message first goes into the local outbox, then every queued message
// is delivered in order. If the server cannot be reached the error is a
// *QueuedError (errors.Is ErrUnreachable) and the message stays queued for
// the next Send, FlushOutbox or Receive. Any other error means the message
// was refused for good (unknown user, too large, a key that fails
// verification) and is not retried.
func (c *Client) Send(ctx context.Context, to, text string) (MessageID, error) {
	if err := checkText(text); err != nil {
		return MessageID{}, err
	}
	return c.sendContent(ctx, to, &wire.Content{Body: &wire.Content_Text{Text: &wire.Text{Body: text}}})
}

// outcome says what became of message id after a flush. A concurrent
// flush (a Receive starting, another Send) may have delivered it, so the
// history is the authority, not this flush's report.
func (c *Client) outcome(ctx context.Context, id MessageID, rep *FlushReport) error {
	var state int
	if err := c.db.QueryRowContext(ctx, `SELECT state FROM history WHERE outgoing = 1 AND message_id = ?`, id[:]).Scan(&state); err != nil {
		return &QueuedError{ID: id, Err: &localError{err}}
	}
	switch state {
	case stateStored:
		return nil
	case stateFailed:
		c.mu.Lock()
		err := c.failures[id]
		delete(c.failures, id)
		c.mu.Unlock()
		if err == nil {
			err = errors.New("the message was refused")
		}
		return err
	}
	err := rep.Err
	if err == nil {
		err = errors.New("not delivered yet")
	}
	return &QueuedError{ID: id, Err: err}
}

// FlushReport is the outcome of delivering the outbox.
type FlushReport struct {
	Sent    []MessageID     // stored by the server
	Failed  []FailedMessage // refused for good and removed from the outbox
	Pending int             // still queued
	Err     error           // why Pending > 0
}

// FailedMessage is a queued message that can never be delivered.
type FailedMessage struct {
	ID  MessageID
	To  string
	Err error
}

// FlushOutbox delivers queued messages, in the order they were sent.
func (c *Client) FlushOutbox(ctx context.Context) FlushReport {
	return *c.flush(ctx)
}

type outboxRow struct {
	id      MessageID
	to      string
	content []byte
}

func (c *Client) flush(ctx context.Context) *FlushReport {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	rep := &FlushReport{}
	rows, err := c.outbox(ctx)
	if err != nil {
		rep.Err = err
		return rep
	}
	if len(rows) == 0 {
		return rep
	}
	a, err := c.account()
	if err != nil {
		rep.Err, rep.Pending = err, len(rows)
		return rep
	}
	cn, err := c.connection(ctx)
	if err != nil {
		rep.Err, rep.Pending = err, len(rows)
		return rep
	}
	// A group message's copies at the head of the outbox go out together
	// (client/groupsend.go); what they leave is sent one by one below.
	stored := c.deliverGroupRun(ctx, cn, a, rows)
	for i, row := range rows {
		if stored[row.id] {
			rep.Sent = append(rep.Sent, row.id)
			continue
		}
		err := c.deliver(ctx, cn, a, row)
		if err == nil {
			rep.Sent = append(rep.Sent, row.id)
			continue
		}
		if isTransient(err) || errors.Is(err, ErrProtocol) {
			// The connection or server is in trouble: keep this and every
			// later message, in order, for the next attempt.
			rep.Err, rep.Pending = err, len(rows)-i
			return rep
		}
		if ferr := c.markFailed(ctx, row.id); ferr != nil {
			rep.Err, rep.Pending = ferr, len(rows)-i
			return rep
		}
		c.mu.Lock()
		c.failures[row.id] = err // for the Send waiting on it, if any
		c.mu.Unlock()
		rep.Failed = append(rep.Failed, FailedMessage{ID: row.id, To: row.to, Err: err})
	}
	return rep
}

func (c *Client) outbox(ctx context.Context) ([]outboxRow, error) {
	rs, err := c.db.QueryContext(ctx, `SELECT message_id, recipient, content FROM outbox ORDER BY seq`)
	if err != nil {
		return nil, &localError{err}
	}
	defer rs.Close()
	var out []outboxRow
	for rs.Next() {
		var r outboxRow
		var id []byte
		if err := rs.Scan(&id, &r.to, &r.content); err != nil {
			return nil, &localError{err}
		}
		copy(r.id[:], id)
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	return out, nil
}

// deliver submits one queued message until the server stores it or the
// device list stops changing.
func (c *Client) deliver(ctx context.Context, cn *conn, a *account, row outboxRow) error {
	for attempt := range maxSendAttempts {
		// The recipient's devices, or the own other devices (client/sync.go).
		list, err := c.deliveryList(ctx, cn, a, row, attempt > 0)
		if errors.Is(err, errNothingToSend) {
			return c.markStored(ctx, row.id)
		}
		if err != nil {
			return err
		}
		copies, err := c.prepareCopies(ctx, cn, a, row, list)
		if err != nil {
			return err
		}
		// Sealed if the recipient's delivery token is known (client/sealed.go).
		r, err := c.submit(ctx, cn, a, row.id, row.to, copies, list)
		var se *ServerError
		if errors.As(err, &se) {
			switch se.Code {
			case "no_user":
				return &NoUserError{Username: row.to}
			case "too_large":
				return fmt.Errorf("%w: %s", ErrTooLarge, se.Message)
			case "device_mismatch":
				continue // the list changed between the server's checks
			}
		}
		if err != nil {
			return err
		}
		sent := r.GetSent()
		if sent == nil {
			return fmt.Errorf("%w: expected a send response", ErrProtocol)
		}
		if sent.GetStored() {
			return c.markStored(ctx, row.id)
		}
		// The server's device set differs from ours: refetch and retry.
	}
	return fmt.Errorf("the device list of %s kept changing while sending; send again", row.to)
}

// prepareCopies returns one ciphertext per listed device. Copies made by an
// earlier attempt are reused unchanged; missing ones are encrypted now and
// committed together with the ratchet state that made them, before they
// are ever sent, so a retry resends the same bytes and a chain key is
// never used twice.
func (c *Client) prepareCopies(ctx context.Context, cn *conn, a *account, row outboxRow, list *identity.SignedDeviceList) ([]*wire.Copy, error) {
	have, err := c.copies(ctx, row.id)
	if err != nil {
		return nil, err
	}
	var needSession []uint32
	for _, d := range list.List.Devices {
		if _, ok := have[d.ID]; ok {
			continue
		}
		rec, err := loadRecord(ctx, c.db, row.to, d.ID)
		if err != nil {
			return nil, err
		}
		if !sessionMatches(rec, d) {
			needSession = append(needSession, d.ID)
		}
	}
	var bundles map[uint32]*identity.Bundle
	if len(needSession) > 0 {
		if bundles, err = c.fetchBundles(ctx, cn, list, needSession); err != nil {
			return nil, err
		}
	}
	err = inTx(ctx, c.db, func(tx *sql.Tx) error { return c.encryptCopies(ctx, tx, a, row, list, bundles) })
	if err != nil {
		return nil, err
	}
	have, err = c.copies(ctx, row.id)
	if err != nil {
		return nil, err
	}
	out := make([]*wire.Copy, 0, len(list.List.Devices))
	for _, d := range list.List.Devices {
		ct, ok := have[d.ID]
		if !ok {
			return nil, &localError{fmt.Errorf("copy for %s/%d vanished", row.to, d.ID)}
		}
		out = append(out, &wire.Copy{DeviceId: d.ID, Content: ct})
	}
	return out, nil
}

// encryptCopies encrypts, in tx, the copies of row that are missing for
// the devices of list, saving each ratchet state with its copy; copies
// for devices no longer listed are dropped. bundles holds the prekey
// bundles of devices without a matching session.
func (c *Client) encryptCopies(ctx context.Context, tx *sql.Tx, a *account, row outboxRow, list *identity.SignedDeviceList, bundles map[uint32]*identity.Bundle) error {
	// Copies for devices no longer listed are useless now.
	rs, err := tx.QueryContext(ctx, `SELECT device FROM outbox_copies WHERE message_id = ?`, row.id[:])
	if err != nil {
		return &localError{err}
	}
	var stale []uint32
	for rs.Next() {
		var d uint32
		if err := rs.Scan(&d); err != nil {
			rs.Close()
			return &localError{err}
		}
		if _, ok := list.List.Find(d); !ok {
			stale = append(stale, d)
		}
	}
	rs.Close()
	for _, d := range stale {
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox_copies WHERE message_id = ? AND device = ?`, row.id[:], d); err != nil {
			return &localError{err}
		}
	}
	for _, d := range list.List.Devices {
		// Another process sharing this home may have made it meanwhile.
		var exists int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox_copies WHERE message_id = ? AND device = ?`, row.id[:], d.ID).Scan(&exists); err != nil {
			return &localError{err}
		}
		if exists > 0 {
			continue
		}
		rec, err := loadRecord(ctx, tx, row.to, d.ID)
		if err != nil {
			return err
		}
		if !sessionMatches(rec, d) {
			b := bundles[d.ID]
			if b == nil {
				return fmt.Errorf("%w: no session with %s/%d", errRetryLater, row.to, d.ID)
			}
			// A device whose identity changed starts over.
			rec.ArchiveCurrent()
			if err := rec.Initiate(a.Username, a.Identity, b); err != nil {
				return fmt.Errorf("%w: %s/%d: %v", ErrBadBundle, row.to, d.ID, err)
			}
		}
		ct, err := rec.Encrypt(row.content)
		if err != nil {
			return err
		}
		if len(ct) > MaxCopySize {
			return &TooLargeError{Size: len(ct)}
		}
		if err := saveRecord(ctx, tx, row.to, d.ID, rec); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox_copies (message_id, device, content) VALUES (?, ?, ?)`,
			row.id[:], d.ID, ct); err != nil {
			return &localError{err}
		}
	}
	return nil
}

// errRetryLater marks a race with another process sharing the home; the
// message stays queued.
var errRetryLater = &localError{errors.New("session changed meanwhile, retry")}

// sessionMatches reports whether rec has a current session with the
// device's listed identity key.
func sessionMatches(rec *ratchet.Record, d identity.Device) bool {
	ik, ok := rec.RemoteIdentity()
	return ok && ik.Equal(d.IdentityKey)
}

func (c *Client) copies(ctx context.Context, id MessageID) (map[uint32][]byte, error) {
	rs, err := c.db.QueryContext(ctx, `SELECT device, content FROM outbox_copies WHERE message_id = ?`, id[:])
	if err != nil {
		return nil, &localError{err}
	}
	defer rs.Close()
	out := map[uint32][]byte{}
	for rs.Next() {
		var d uint32
		var ct []byte
		if err := rs.Scan(&d, &ct); err != nil {
			return nil, &localError{err}
		}
		out[d] = ct
	}
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	return out, nil
}

func (c *Client) markStored(ctx context.Context, id MessageID) error {
	return c.finishOutgoing(ctx, id, stateStored)
}

func (c *Client) markFailed(ctx context.Context, id MessageID) error {
	return c.finishOutgoing(ctx, id, stateFailed)
}

// finishOutgoing removes a message from the outbox (its copies go with it)
// and records the outcome in the history, in one transaction.
func (c *Client) finishOutgoing(ctx context.Context, id MessageID, state int) error {
	return inTx(ctx, c.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE message_id = ?`, id[:]); err != nil {
			return &localError{err}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE history SET state = ? WHERE outgoing = 1 AND message_id = ?`, state, id[:]); err != nil {
			return &localError{err}
		}
		return nil
	})
}
