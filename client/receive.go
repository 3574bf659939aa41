package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/pqxdh"
	"github.com/hush-chat/hush/internal/ratchet"
	"github.com/hush-chat/hush/wire"
)

// Forever, as Receive's wait, keeps receiving until the context ends.
const Forever time.Duration = -1

// seenKeep is how long processed message ids are remembered: longer than
// the server keeps an unacknowledged message (30 days).
const seenKeep = 35 * 24 * time.Hour

// sweepEvery is how often a waiting Receive erases expired disappearing
// messages (client/messaging.go).
const sweepEvery = time.Second

// maxBatch bounds the envelopes committed in one transaction.
const maxBatch = 256

// Event is something Receive reports: *MessageEvent, *DroppedEvent,
// *DeviceEvent, *RequestEvent, or one of client/messaging.go's
// (*ReactionEvent, *EditEvent, *DeleteEvent, *ReceiptEvent, *TypingEvent,
// *TimerEvent), a group's (client/groups.go) or *CallEvent
// (client/calls.go).
type Event interface{ isEvent() }

// MessageEvent is a decrypted message, already stored in the history.
type MessageEvent struct {
	ID   MessageID
	From string
	// To is set on a sync copy: a message this account (From) sent from
	// its device Device to To.
	To       string
	Device   uint32
	Sent     time.Time // as claimed by the sender
	Received time.Time // when this device received it
	Text     string
	// Attachment is set on a message carrying a file (client/files.go);
	// Client.Download fetches it.
	Attachment *AttachmentInfo
	// ReplyTo is the message this one quotes, if any.
	ReplyTo *MessageRef
	// Expires is when this device erases a disappearing message (zero:
	// never).
	Expires time.Time
	// Group is the group's id for a group message, GroupName its name as
	// this device knows it.
	Group     []byte
	GroupName string
}

// DroppedEvent is a message that failed to decrypt or verify. It was
// acknowledged, so the server deleted it, and it will not come back.
type DroppedEvent struct {
	ID     MessageID
	From   string
	Device uint32
	Err    error
}

func (*MessageEvent) isEvent() {}
func (*DroppedEvent) isEvent() {}

// Receive first retries the outbox (messages refused for good are reported
// to Config.Warn), then fetches pending messages, decrypts them, stores them in the
// history and then acknowledges them, calling handle for each in order.
//
// With wait 0 it returns once the server's backlog is processed. With wait
// > 0 it also waits, up to wait in all, until at least one message came.
// With Forever it keeps receiving live messages until ctx ends (then it
// returns ctx's error).
//
// Each message's session update, used-prekey deletion and history entry
// are committed in one transaction before the acknowledgement is sent. A
// message redelivered after a crash is recognised by its id and sender
// device and acknowledged again without being shown twice. A message
// committed but not yet handed to handle (a crash in between) is handed
// over by the next Receive: delivery to handle is at least once, and only
// a crash in the instant between handle returning and that being recorded
// can repeat one.
func (c *Client) Receive(ctx context.Context, wait time.Duration, handle func(Event)) error {
	a, err := c.account()
	if err != nil {
		return err
	}
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	if _, err := c.db.ExecContext(ctx, `DELETE FROM seen WHERE received_ms < ?`, c.now().Add(-seenKeep).UnixMilli()); err != nil {
		return &localError{err}
	}
	handled, err := c.redeliver(ctx, handle)
	if err != nil {
		return err
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	cn, drained, err := c.receivingConn(ctx, a, wait == 0)
	if err != nil {
		return err
	}
	defer func() {
		cn.mu.Lock()
		cn.receiving = false
		cn.mu.Unlock()
	}()
	// Queued messages go out first, over this same connection.
	for _, f := range c.flush(ctx).Failed {
		c.cfg.Warn(fmt.Errorf("message to %s could not be delivered and was dropped from the outbox: %w", f.To, f.Err))
	}
	for {
		var batch []*wire.Envelope
		var counts *wire.PrekeyCounts
		for _, f := range cn.take() {
			switch {
			case f.GetEnvelope() != nil:
				batch = append(batch, f.GetEnvelope())
			case f.GetQueueEmpty() != nil:
				drained = true
			case f.GetPrekeyCounts() != nil:
				counts = f.GetPrekeyCounts()
			}
		}
		for len(batch) > 0 {
			n := min(len(batch), maxBatch)
			got, err := c.process(ctx, cn, a, batch[:n], handle)
			handled += got
			if err != nil {
				// Envelopes taken but not acknowledged are only re-sent on
				// a new connection: make the next Receive dial one.
				cn.mu.Lock()
				cn.dropped = true
				cn.mu.Unlock()
				return err
			}
			batch = batch[n:]
		}
		if counts.GetLow() {
			if err := c.refillPrekeys(ctx, cn, counts); err != nil {
				c.cfg.Warn(fmt.Errorf("could not upload new prekeys: %w", err))
			}
		}
		if drained {
			cn.mu.Lock()
			overflow := cn.overflow
			cn.mu.Unlock()
			if overflow {
				// Some envelopes were dropped for lack of room; the server
				// sends them again on a new connection.
				if cn, err = c.redial(ctx, a, true); err != nil {
					return err
				}
				drained = false
				continue
			}
			if wait == 0 || wait > 0 && handled > 0 {
				return nil
			}
		}
		select {
		case <-cn.notify:
		case <-sweep.C:
			// A long Receive erases disappearing messages as they expire.
			if err := c.sweepExpired(ctx); err != nil {
				return err
			}
		case <-cn.done:
			return cn.failure()
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return nil
		}
	}
}

// receivingConn returns a connection whose pushes this Receive consumes,
// and whether its backlog was already fully pushed. A connection that
// discarded envelopes while nobody was receiving is replaced, since the
// server only re-sends them on a new connection.
//
// snapshot asks for a complete view of what the server holds now (a
// Receive that only drains the backlog): a connection whose backlog was
// already drained cannot say whether a message stored a moment ago is
// still on its way, so a fresh connection is dialed, whose backlog and
// queue_empty cover everything stored before it authenticated.
func (c *Client) receivingConn(ctx context.Context, a *account, snapshot bool) (*conn, bool, error) {
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	if cur != nil && cur.alive() {
		cur.mu.Lock()
		ok := !cur.dropped && !cur.overflow && !(snapshot && cur.drained)
		drained := cur.drained
		if ok {
			cur.receiving = true
		}
		cur.mu.Unlock()
		if ok {
			return cur, drained, nil
		}
	}
	cn, err := c.redialLocked(ctx, a, true)
	return cn, false, err
}

// redeliver hands over messages committed earlier but never handed to the
// application (the process stopped in between), attachments and quotes
// included. Disappearing messages whose time ran out are erased first.
func (c *Client) redeliver(ctx context.Context, handle func(Event)) (int, error) {
	if err := c.sweepExpired(ctx); err != nil {
		return 0, err
	}
	rs, err := c.db.QueryContext(ctx, `SELECT seq, peer, outgoing, message_id, device, sent_ms, received_ms, body,
		author, attachment, reply_to, reply_author, expires_ms, deleted FROM history
		WHERE outgoing = 0 AND state = 0 OR unshown = 1 ORDER BY seq`)
	if err != nil {
		return 0, &localError{err}
	}
	c.mu.Lock()
	self := c.acct.Username
	c.mu.Unlock()
	var evs []*MessageEvent
	var seqs []int64
	for rs.Next() {
		var e MessageEvent
		var seq, sent, recv, expires int64
		var id, att, reply []byte
		var peer string
		var author, replyAuthor sql.NullString
		var outgoing, deleted bool
		if err := rs.Scan(&seq, &peer, &outgoing, &id, &e.Device, &sent, &recv, &e.Text, &author, &att, &reply, &replyAuthor, &expires, &deleted); err != nil {
			rs.Close()
			return 0, &localError{err}
		}
		seqs = append(seqs, seq)
		if deleted {
			continue // deleted for everyone meanwhile: the delete follows
		}
		e.From, e.Group = peer, convGroup(peer)
		switch {
		case outgoing: // a sync copy (client/sync.go)
			e.From = self
			if e.Group == nil {
				e.To = peer
			}
		case author.Valid:
			e.From = author.String
		}
		copy(e.ID[:], id)
		e.Sent, e.Received = time.UnixMilli(sent), time.UnixMilli(recv)
		if expires > 0 {
			e.Expires = time.UnixMilli(expires)
		}
		e.Attachment = storedAttachment(att)
		if len(reply) == len(e.ID) {
			e.ReplyTo = &MessageRef{Author: replyAuthor.String}
			copy(e.ReplyTo.ID[:], reply)
		}
		evs = append(evs, &e)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return 0, &localError{err}
	}
	all := make([]Event, len(evs))
	for i, e := range evs {
		all[i] = e
	}
	// Then the reactions, edits, deletes, receipts and timer changes
	// (client/pendingevents.go), after the messages they may be about.
	more, pending, err := c.pendingEvents(ctx)
	if err != nil {
		return 0, err
	}
	all = append(all, more...)
	c.nameGroups(ctx, all)
	for _, e := range all {
		handle(e)
	}
	return len(all), c.markHandled(ctx, seqs, pending)
}

// markHandled records that the history rows seqs and the kept events
// pending were handed to the application.
func (c *Client) markHandled(ctx context.Context, seqs, pending []int64) error {
	if len(seqs) == 0 && len(pending) == 0 {
		return nil
	}
	// The application has the messages now; record that even if the
	// caller's context just ended, or they would be handed over again.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return inTx(ctx, c.db, func(tx *sql.Tx) error {
		for _, s := range seqs {
			// state 1 is "handed over" for incoming rows and "stored" for
			// outgoing ones; sync copies are both.
			if _, err := tx.ExecContext(ctx, `UPDATE history SET state = 1, unshown = 0 WHERE seq = ?`, s); err != nil {
				return &localError{err}
			}
		}
		for _, id := range pending {
			if _, err := tx.ExecContext(ctx, `DELETE FROM pending_events WHERE id = ?`, id); err != nil {
				return &localError{err}
			}
		}
		return nil
	})
}

type deviceKey struct {
	user   string
	device uint32
}

// process decrypts, commits and acknowledges a batch of envelopes, then
// hands the events over. It returns how many messages it handed over.
func (c *Client) process(ctx context.Context, cn *conn, a *account, envs []*wire.Envelope, handle func(Event)) (int, error) {
	// Sealed envelopes are opened first: the certificate names the sender
	// (client/sealed.go).
	envs, opened := c.unseal(a, envs)
	// Senders' device lists are needed to check who a new session is
	// with; fetch the unknown ones before the transaction, since network
	// waits must not hold the database lock.
	lists := map[string]*identity.SignedDeviceList{}
	listErr := map[string]error{}
	fetched := map[string]bool{}
	var stop error
	for i, e := range envs {
		user, dev := e.GetSender(), e.GetSenderDevice()
		if l := lists[user]; listErr[user] != nil || l != nil && listed(l, dev) {
			continue
		}
		if n, err := identity.NormalizeUsername(user); err != nil || n != user {
			listErr[user] = fmt.Errorf("%w: sender name %q", ErrProtocol, user)
			continue
		}
		l := lists[user]
		if l == nil {
			var err error
			if l, err = c.knownPeer(ctx, user); err != nil {
				return 0, err
			}
		}
		if (l == nil || !listed(l, dev)) && !fetched[user] {
			fetched[user] = true
			fl, err := c.fetchPeer(ctx, cn, user)
			if err != nil && isTransient(err) {
				envs, stop = envs[:i], err
				break
			}
			if err != nil {
				listErr[user] = err
				continue
			}
			l = fl
		}
		if l != nil {
			lists[user] = l
		}
	}
	if len(envs) == 0 {
		return 0, stop
	}

	now := c.now()
	events := make([]Event, 0, len(envs))
	var newSeqs, pending []int64
	var queuedReceipts int
	err := inTx(ctx, c.db, func(tx *sql.Tx) error {
		events, newSeqs = events[:0], newSeqs[:0]
		var receipts receiptQueue
		src := &txPrekeys{ctx: ctx, tx: tx}
		responder := &pqxdh.Responder{Username: a.Username, Identity: a.Identity, Prekeys: src}
		records := map[deviceKey]*ratchet.Record{}
		for _, e := range envs {
			k := deviceKey{e.GetSender(), e.GetSenderDevice()}
			var id MessageID
			drop := func(err error) error {
				events = append(events, &DroppedEvent{ID: id, From: k.user, Device: k.device, Err: err})
				return markSeen(ctx, tx, k, id, now)
			}
			if len(e.GetMessageId()) != len(id) {
				events = append(events, &DroppedEvent{From: k.user, Device: k.device, Err: fmt.Errorf("%w: message id of %d bytes", ErrProtocol, len(e.GetMessageId()))})
				continue
			}
			copy(id[:], e.GetMessageId())
			if err := opened.failure(e); err != nil {
				// A sealed envelope that did not open names no sender.
				events = append(events, &DroppedEvent{ID: id, Err: err})
				continue
			}
			var dup int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM seen WHERE sender = ? AND device = ? AND message_id = ?`,
				k.user, k.device, id[:]).Scan(&dup); err != nil {
				return &localError{err}
			}
			if dup > 0 {
				continue // processed before; only the acknowledgement was lost
			}
			if err := listErr[k.user]; err != nil {
				if err := drop(err); err != nil {
					return err
				}
				continue
			}
			var dev identity.Device
			ok := false
			if l := lists[k.user]; l != nil {
				dev, ok = l.List.Find(k.device)
			}
			if !ok {
				if err := drop(fmt.Errorf("%w: %s/%d", identity.ErrNoDevice, k.user, k.device)); err != nil {
					return err
				}
				continue
			}
			rec := records[k]
			if rec == nil {
				r, err := loadRecord(ctx, tx, k.user, k.device)
				if err != nil {
					return err
				}
				rec = r
			}
			dec, err := opened.decrypt(e, rec, responder, dev)
			if src.err != nil {
				return src.err // our database failed, not the message
			}
			if err != nil {
				// The ratchet left rec unchanged.
				if err := drop(err); err != nil {
					return err
				}
				continue
			}
			records[k] = rec
			if dec.NewSession {
				if err := consumePrekeys(ctx, tx, dec.Prekeys); err != nil {
					return err
				}
			}
			// Call signals: ephemeral, never stored (client/calls.go).
			if evs, ok, err := c.receiveCall(ctx, tx, a, k, id, e, now, dec.Plaintext); ok {
				if err != nil {
					return err
				}
				events = append(events, evs...)
				continue
			}
			// Contacts, requests, blocking, delivery tokens (client/contacts.go).
			if sc, err := c.screenIncoming(ctx, tx, a, k, id, now, dec.Plaintext); err != nil {
				var le *localError
				if errors.As(err, &le) {
					return err
				}
				if err := drop(err); err != nil {
					return err
				}
				continue
			} else if sc.done {
				events = append(events, sc.events...)
				newSeqs = append(newSeqs, sc.seqs...)
				if err := markSeen(ctx, tx, k, id, now); err != nil {
					return err
				}
				continue
			}
			// Sync copies and device notices (client/sync.go).
			if evs, seqs, ok, err := c.receiveDeviceContent(ctx, tx, a, k, id, dec.Plaintext, now); ok {
				var le *localError
				if errors.As(err, &le) {
					return err
				}
				if err != nil && !errors.Is(err, errIgnored) {
					if err := drop(err); err != nil {
						return err
					}
					continue
				}
				newSeqs = append(newSeqs, seqs...)
				events = append(events, evs...)
				if err := markSeen(ctx, tx, k, id, now); err != nil {
					return err
				}
				continue
			}
			// Texts, files, reactions, edits, deletes, receipts, typing,
			// timers and group content (client/messaging.go).
			var evs []Event
			var seqs []int64
			err = savepoint(ctx, tx, func() (err error) {
				evs, seqs, err = c.receiveContent(ctx, tx, a, k, id, dec.Plaintext, now, &receipts)
				return err
			})
			var le *localError
			if errors.As(err, &le) {
				return err
			}
			if err != nil && !errors.Is(err, errIgnored) {
				if err := drop(err); err != nil {
					return err
				}
				continue
			}
			newSeqs = append(newSeqs, seqs...)
			events = append(events, evs...)
			if err := markSeen(ctx, tx, k, id, now); err != nil {
				return err
			}
		}
		// Delivery receipts go out with the batch they confirm.
		var err error
		if queuedReceipts, err = receipts.queue(ctx, tx, now); err != nil {
			return err
		}
		// Kept until handed over, like the messages' history rows.
		if pending, err = keepEvents(ctx, tx, events); err != nil {
			return err
		}
		for k, r := range records {
			if err := saveRecord(ctx, tx, k.user, k.device, r); err != nil {
				return err
			}
		}
		if c.hookBeforeCommit != nil {
			return c.hookBeforeCommit()
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// An own device announced a new account key (client/sync.go).
	for _, ev := range events {
		if e, ok := ev.(*DeviceEvent); ok && !e.ownKey.IsZero() {
			c.mu.Lock()
			a.AccountPub = e.ownKey
			c.mu.Unlock()
		}
	}
	if c.hookBeforeAck != nil {
		if err := c.hookBeforeAck(); err != nil {
			return 0, err
		}
	}
	// Committed: now the server may delete them.
	ids := make([]uint64, len(envs))
	for i, e := range envs {
		ids[i] = e.GetServerId()
	}
	if err := cn.post(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_Ack{Ack: &wire.AckRequest{ServerIds: ids}}}); err != nil {
		return 0, err
	}
	c.nameGroups(ctx, events)
	n := 0
	for _, ev := range events {
		switch ev.(type) {
		case *MessageEvent, *DeviceEvent, *RequestEvent, *ReactionEvent, *EditEvent, *DeleteEvent, *TimerEvent:
			n++
		}
		handle(ev)
	}
	if err := c.markHandled(ctx, newSeqs, pending); err != nil {
		return n, err
	}
	c.afterDeviceEvents(ctx, cn, events)
	// A block made on another device (client/contacts.go) reaches the
	// server from here too, so a list this device sent before it knew of
	// the block does not stand.
	if err := c.syncBlocked(ctx, cn); err != nil {
		c.cfg.Warn(fmt.Errorf("could not send the server the blocked accounts: %w", err))
	}
	if queuedReceipts > 0 {
		for _, f := range c.flush(ctx).Failed {
			c.cfg.Warn(fmt.Errorf("message to %s could not be delivered and was dropped from the outbox: %w", f.To, f.Err))
		}
	}
	return n, stop
}

func listed(l *identity.SignedDeviceList, device uint32) bool {
	_, ok := l.List.Find(device)
	return ok
}

func markSeen(ctx context.Context, tx *sql.Tx, k deviceKey, id MessageID, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO seen (sender, device, message_id, received_ms) VALUES (?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, k.user, k.device, id[:], now.UnixMilli())
	if err != nil {
		return &localError{err}
	}
	return nil
}
