package client

// Everyday messaging (docs/protocol.md §12): one pipeline for every kind
// of content in a conversation, direct or group. sendContent applies a
// content to this device's store and queues it for the peer (or, through
// queueGroup, the group) and the own other devices; receiveContent takes
// what arrives from another account, and storeSyncCopy (client/sync.go)
// what an own device sent, through the same applyContent, so every device
// ends in the same state.

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/wire"
)

// Bounds of the disappearing-message timer.
const (
	MinTimer = 5 * time.Second
	MaxTimer = 4 * 7 * 24 * time.Hour
)

// Reaction limits: one emoji, possibly a joined sequence, or a short
// symbol.
const (
	maxReactionBytes = 32
	maxReactionRunes = 10
)

// maxReceiptTargets bounds the messages one receipt names.
const maxReceiptTargets = 256

// errIgnored: a content that is well-formed but does not apply here (an
// edit of someone else's message, a reaction to an unknown message, group
// content from a non-member). It is acknowledged and forgotten, without a
// DroppedEvent.
var errIgnored = errors.New("ignored")

// MessageRef names a message: its id and the account that wrote it.
type MessageRef struct {
	ID     MessageID
	Author string
}

// ReceiptKind says what a receipt reports.
type ReceiptKind int

// Receipt kinds.
const (
	Delivered ReceiptKind = ReceiptKind(wire.Receipt_DELIVERED)
	Read      ReceiptKind = ReceiptKind(wire.Receipt_READ)
)

func (k ReceiptKind) String() string {
	switch k {
	case Delivered:
		return "delivered"
	case Read:
		return "read"
	}
	return "unknown"
}

// Meta is what every conversation event but MessageEvent carries (whose
// fields are the same, for compatibility).
type Meta struct {
	ID   MessageID // of the message that carried the event
	From string    // the account that sent it
	// To is set when this account sent it from another device (From is
	// then the own username) in a direct conversation: the peer.
	To       string
	Device   uint32
	Sent     time.Time // as claimed by the sender
	Received time.Time
	// Group is the group's id for group conversations, GroupName its name
	// as this device knows it.
	Group     []byte
	GroupName string
}

// ReactionEvent: From reacted to Target with Emoji, or took its reaction
// back (Removed).
type ReactionEvent struct {
	Meta
	Target  MessageID
	Emoji   string
	Removed bool
}

// EditEvent: From replaced the text of its message Target.
type EditEvent struct {
	Meta
	Target MessageID
	Text   string
}

// DeleteEvent: From deleted its message Target for everyone; it is a
// tombstone now.
type DeleteEvent struct {
	Meta
	Target MessageID
}

// ReceiptEvent: From's device received (Delivered) or its user read
// (Read) this account's messages Targets.
type ReceiptEvent struct {
	Meta
	Kind    ReceiptKind
	Targets []MessageID
}

// TypingEvent: From started or stopped typing. Never stored.
type TypingEvent struct {
	Meta
	Started bool
}

// TimerEvent: From set the conversation's disappearing-message timer
// (0: off).
type TimerEvent struct {
	Meta
	Timer time.Duration
}

func (*ReactionEvent) isEvent() {}
func (*EditEvent) isEvent()     {}
func (*DeleteEvent) isEvent()   {}
func (*ReceiptEvent) isEvent()  {}
func (*TypingEvent) isEvent()   {}
func (*TimerEvent) isEvent()    {}

// meta gives the common part of the events that embed Meta.
func (m *Meta) meta() *Meta { return m }

// nameGroups sets GroupName on the events of group conversations, as
// this device knows the group now.
func (c *Client) nameGroups(ctx context.Context, evs []Event) {
	names := map[GroupID]string{}
	name := func(g []byte) string {
		var id GroupID
		if len(g) != len(id) {
			return ""
		}
		copy(id[:], g)
		n, ok := names[id]
		if !ok {
			var err error
			if n, err = c.GroupName(ctx, id); err != nil {
				c.cfg.Warn(err)
			}
			names[id] = n
		}
		return n
	}
	for _, ev := range evs {
		switch e := ev.(type) {
		case *MessageEvent:
			e.GroupName = name(e.Group)
		case interface{ meta() *Meta }:
			m := e.meta()
			m.GroupName = name(m.Group)
		}
	}
}

// origin says where a content applied by applyContent comes from.
type origin struct {
	conv     string    // conversation key
	from     string    // the account that wrote it
	device   uint32    // its device
	id       MessageID // the message's id (a group message's from its GroupContext)
	sent     time.Time // as claimed
	outgoing bool      // written by this account
	// local: sent from this device right now (not handed to Receive's
	// caller); otherwise outgoing means a sync copy.
	local bool
	// group is the content's GroupContext, kept for receipts.
	group *wire.GroupContext
}

// convKey normalizes a conversation name given by the application:
// a username or a group key ("#" and 32 hex digits).
func convKey(name string) (string, error) {
	if isGroupConv(name) {
		b, err := hex.DecodeString(strings.TrimPrefix(name, groupConvPrefix))
		if err != nil || len(b) != 16 {
			return "", fmt.Errorf("%q is not a group conversation", name)
		}
		return groupConv(b), nil
	}
	return identity.NormalizeUsername(name)
}

// convGroup returns the group id of a group conversation key, nil for a
// direct one.
func convGroup(conv string) []byte {
	if !isGroupConv(conv) {
		return nil
	}
	b, _ := hex.DecodeString(strings.TrimPrefix(conv, groupConvPrefix))
	return b
}

// meta builds the Meta of an event from o.
func (o origin) meta(self string, now time.Time) Meta {
	m := Meta{ID: o.id, From: o.from, Device: o.device, Sent: o.sent, Received: now, Group: convGroup(o.conv)}
	if o.outgoing {
		m.From = self
		if m.Group == nil {
			m.To = o.conv
		}
	}
	return m
}

// sendContent sends content in conversation conv (a username or a group
// key) as a message of its own, after applying it to this device's store
// (a text becomes an outgoing history row, an edit replaces the text, and
// so on). The peer's devices and this account's other devices get it; a
// group conversation goes through queueGroup (client/groups.go). It
// returns once the server stored it, like Send; errors are Send's.
func (c *Client) sendContent(ctx context.Context, conv string, content *wire.Content) (MessageID, error) {
	a, err := c.account()
	if err != nil {
		return MessageID{}, err
	}
	if conv, err = convKey(conv); err != nil {
		return MessageID{}, err
	}
	if conv == a.Username {
		return MessageID{}, errors.New("cannot send a message to yourself")
	}
	group := isGroupConv(conv)
	id := newMessageID()
	now := c.now()
	content.SentMs = now.UnixMilli()
	if !group {
		// Contacts, blocking, key changes and our delivery token
		// (client/contacts.go).
		token, err := c.writeToken(ctx, conv, now)
		if err != nil {
			return id, err
		}
		content.SenderDeliveryToken = token
	}
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		if content.GetText() != nil {
			secs, err := conversationTimer(ctx, tx, conv)
			if err != nil {
				return err
			}
			content.ExpireSeconds = secs
		}
		o := origin{conv: conv, from: a.Username, device: a.DeviceID, id: id, sent: now, outgoing: true, local: true}
		if _, _, err := c.applyContent(ctx, tx, a, o, content, now); err != nil {
			if errors.Is(err, errIgnored) {
				// Not applicable here, so not sent: say why.
				return errors.New(strings.TrimPrefix(err.Error(), errIgnored.Error()+": "))
			}
			return err
		}
		if group {
			return c.queueGroup(ctx, tx, a, conv, id, content)
		}
		b, err := marshalPadded(content)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms) VALUES (?, ?, ?, ?)`,
			id[:], conv, b, now.UnixMilli()); err != nil {
			return &localError{err}
		}
		inner := proto.Clone(content).(*wire.Content)
		inner.SenderDeliveryToken, inner.Padding = nil, nil
		// The copy for this account's other devices (client/sync.go).
		return c.queueSyncCopy(ctx, tx, a, conv, id, inner)
	})
	if err != nil {
		return id, err
	}
	rep := c.flush(ctx)
	for _, f := range rep.Failed {
		if f.ID != id {
			c.cfg.Warn(fmt.Errorf("message to %s could not be delivered and was dropped from the outbox: %w", f.To, f.Err))
		}
	}
	if content.GetText() != nil {
		return id, c.outcome(ctx, id, rep)
	}
	return id, c.outboxOutcome(ctx, id, rep)
}

// outboxOutcome says what became of message id, which has no history row:
// delivered once it left the outbox, unless the flush failed it.
func (c *Client) outboxOutcome(ctx context.Context, id MessageID, rep *FlushReport) error {
	for _, f := range rep.Failed {
		if f.ID == id {
			return f.Err
		}
	}
	var n int
	// A group message has one row per member, named by group_of.
	if err := c.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE message_id = ? OR group_of = ?`, id[:], id[:]).Scan(&n); err != nil {
		return &QueuedError{ID: id, Err: &localError{err}}
	}
	if n == 0 {
		return nil
	}
	err := rep.Err
	if err == nil {
		err = errors.New("not delivered yet")
	}
	return &QueuedError{ID: id, Err: err}
}

// conversationTimer returns conv's disappearing-message timer in seconds
// (0: off).
func conversationTimer(ctx context.Context, q querier, conv string) (uint32, error) {
	var secs uint32
	err := q.QueryRowContext(ctx, `SELECT seconds FROM timers WHERE peer = ?`, conv).Scan(&secs)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, &localError{err}
	}
	return secs, nil
}

// receiveContent handles a decrypted content from another account (or a
// group update from an own device) that screenIncoming and
// receiveDeviceContent left over, inside the receiving transaction. rc
// collects the delivery receipts to send once the batch is in. An error
// wrapping errIgnored means the message is acknowledged and forgotten; a
// *localError aborts the batch; any other error drops the message.
func (c *Client) receiveContent(ctx context.Context, tx *sql.Tx, a *account, k deviceKey, id MessageID, plaintext []byte, now time.Time, rc *receiptQueue) ([]Event, []int64, error) {
	var ct wire.Content
	if err := proto.Unmarshal(plaintext, &ct); err != nil {
		return nil, nil, fmt.Errorf("malformed content: %v", err)
	}
	if ct.GetGroupUpdate() != nil {
		return c.receiveGroupUpdate(ctx, tx, a, k, id, &ct, now)
	}
	if k.user == a.Username {
		return nil, nil, fmt.Errorf("%w: an own device sent content outside a sync copy", ErrProtocol)
	}
	o := origin{conv: k.user, from: k.user, device: k.device, id: id, sent: time.UnixMilli(ct.GetSentMs())}
	if g := ct.GetGroup(); g != nil {
		if len(g.GetMessageId()) != len(o.id) {
			return nil, nil, fmt.Errorf("%w: group message id of %d bytes", ErrProtocol, len(g.GetMessageId()))
		}
		conv, err := c.groupIncoming(ctx, tx, a, k.user, &ct, now)
		var le *localError
		if errors.As(err, &le) {
			return nil, nil, err
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", errIgnored, err)
		}
		o.conv, o.group = conv, g
		copy(o.id[:], g.GetMessageId())
	}
	evs, seqs, err := c.applyContent(ctx, tx, a, o, &ct, now)
	if err == nil && len(seqs) > 0 {
		rc.add(o)
	}
	return evs, seqs, err
}

// applyContent applies one content of conversation o.conv to this
// device's store and returns the events to hand over and the history rows
// to mark handed over with them. Everything is checked before anything is
// written, so a refused content changes nothing.
func (c *Client) applyContent(ctx context.Context, tx *sql.Tx, a *account, o origin, ct *wire.Content, now time.Time) ([]Event, []int64, error) {
	switch {
	case ct.GetText() != nil:
		return c.applyText(ctx, tx, a, o, ct, now)
	case ct.GetReaction() != nil:
		return applyReaction(ctx, tx, a, o, ct.GetReaction(), now)
	case ct.GetEdit() != nil:
		return applyEdit(ctx, tx, a, o, ct.GetEdit(), now)
	case ct.GetDelete() != nil:
		return applyDelete(ctx, tx, a, o, ct.GetDelete(), now)
	case ct.GetReceipt() != nil:
		return applyReceipt(ctx, tx, a, o, ct.GetReceipt(), now)
	case ct.GetTyping() != nil:
		if o.outgoing || now.Sub(o.sent).Abs() > typingMaxAge {
			return nil, nil, nil // stale, or the clocks disagree: only a hint
		}
		return []Event{&TypingEvent{Meta: o.meta(a.Username, now), Started: ct.GetTyping().GetStarted()}}, nil, nil
	case ct.GetTimer() != nil:
		return applyTimer(ctx, tx, a, o, ct.GetTimer(), now)
	}
	return nil, nil, errors.New("content of a kind this version cannot show")
}

// checkTimer validates a timer in seconds (0: off).
func checkTimer(secs uint32) error {
	if d := time.Duration(secs) * time.Second; secs != 0 && (d < MinTimer || d > MaxTimer) {
		return fmt.Errorf("a disappearing-message timer must be between %v and %v, or off", MinTimer, MaxTimer)
	}
	return nil
}

// checkReply validates a quoted message reference.
func checkRef(r *wire.MessageRef) (MessageRef, error) {
	var ref MessageRef
	if len(r.GetMessageId()) != len(ref.ID) {
		return ref, fmt.Errorf("%w: message reference with an id of %d bytes", ErrProtocol, len(r.GetMessageId()))
	}
	copy(ref.ID[:], r.GetMessageId())
	if r.GetAuthor() != "" {
		u, err := identity.NormalizeUsername(r.GetAuthor())
		if err != nil || u != r.GetAuthor() {
			return ref, fmt.Errorf("%w: message reference to author %q", ErrProtocol, r.GetAuthor())
		}
		ref.Author = u
	}
	return ref, nil
}

func (c *Client) applyText(ctx context.Context, tx *sql.Tx, a *account, o origin, ct *wire.Content, now time.Time) ([]Event, []int64, error) {
	text := ct.GetText().GetBody()
	if !utf8.ValidString(text) {
		return nil, nil, errors.New("text is not valid UTF-8")
	}
	if len(text) > MaxTextSize {
		return nil, nil, &TooLargeError{Size: len(text)}
	}
	var att *AttachmentInfo
	var attBlob []byte
	if w := ct.GetAttachment(); w != nil {
		var err error
		if att, err = attachmentInfo(w); err != nil {
			if o.local {
				return nil, nil, err
			}
			// The text is still shown.
			c.cfg.Warn(fmt.Errorf("%w: %s sent a file this version cannot read", ErrProtocol, o.from))
		} else if attBlob, err = proto.Marshal(w); err != nil {
			return nil, nil, &localError{err}
		}
	}
	if text == "" && att == nil {
		return nil, nil, errors.New("message is empty")
	}
	var reply *MessageRef
	var replyID []byte
	var replyAuthor any
	if r := ct.GetReplyTo(); r != nil {
		ref, err := checkRef(r)
		if err != nil {
			return nil, nil, err
		}
		reply, replyID = &ref, ref.ID[:]
		if ref.Author != "" {
			replyAuthor = ref.Author
		}
	}
	if err := checkTimer(ct.GetExpireSeconds()); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	var expires time.Time
	if s := ct.GetExpireSeconds(); s > 0 {
		expires = now.Add(time.Duration(s) * time.Second)
	}
	outgoing, state, unshown := 0, 0, 0
	switch {
	case o.local:
		outgoing, state = 1, stateQueued
	case o.outgoing:
		outgoing, state, unshown = 1, stateStored, 1
	}
	if o.outgoing && !o.local {
		var dup int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM history WHERE outgoing = 1 AND peer = ? AND message_id = ?`, o.conv, o.id[:]).Scan(&dup); err != nil {
			return nil, nil, &localError{err}
		}
		if dup > 0 {
			return nil, nil, nil
		}
	}
	var author any
	if isGroupConv(o.conv) && !o.outgoing {
		author = o.from
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO history (peer, outgoing, message_id, device, sent_ms, received_ms, body, state, unshown,
		author, attachment, reply_to, reply_author, expires_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		o.conv, outgoing, o.id[:], o.device, o.sent.UnixMilli(), now.UnixMilli(), text, state, unshown,
		author, attBlob, replyID, replyAuthor, unixMilli(expires))
	if err != nil {
		return nil, nil, &localError{err}
	}
	if o.local {
		return nil, nil, nil
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return nil, nil, &localError{err}
	}
	m := o.meta(a.Username, now)
	return []Event{&MessageEvent{ID: o.id, From: m.From, To: m.To, Device: o.device, Sent: o.sent, Received: now, Text: text,
		Attachment: att, ReplyTo: reply, Expires: expires, Group: m.Group}}, []int64{seq}, nil
}

// unixMilli is t in milliseconds, 0 for the zero time.
func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// target finds message ref in conversation o.conv; with ownOnly, only if
// o.from wrote it. It wraps errIgnored if there is none.
func target(ctx context.Context, tx *sql.Tx, a *account, o origin, r *wire.MessageRef, ownOnly bool) (MessageRef, int64, error) {
	ref, err := checkRef(r)
	if err != nil {
		return ref, 0, err
	}
	var seq int64
	var outgoing, deleted int
	var author sql.NullString
	err = tx.QueryRowContext(ctx, `SELECT seq, outgoing, author, deleted FROM history WHERE peer = ? AND message_id = ? ORDER BY seq LIMIT 1`,
		o.conv, ref.ID[:]).Scan(&seq, &outgoing, &author, &deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return ref, 0, fmt.Errorf("%w: no message %s in this conversation", errIgnored, ref.ID)
	}
	if err != nil {
		return ref, 0, &localError{err}
	}
	writer := o.conv
	switch {
	case outgoing == 1:
		writer = a.Username
	case author.Valid:
		writer = author.String
	}
	if deleted == 1 {
		return ref, 0, fmt.Errorf("%w: message %s was deleted", errIgnored, ref.ID)
	}
	if ownOnly && writer != o.from {
		return ref, 0, fmt.Errorf("%w: message %s was not written by %s; only its sender may change it", errIgnored, ref.ID, o.from)
	}
	return ref, seq, nil
}

// checkEmoji accepts one emoji or a short symbol: printable, no spaces.
func checkEmoji(s string) error {
	if s == "" || len(s) > maxReactionBytes || utf8.RuneCountInString(s) > maxReactionRunes || !utf8.ValidString(s) {
		return fmt.Errorf("a reaction must be one emoji (at most %d bytes)", maxReactionBytes)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			return errors.New("a reaction must be one emoji, without spaces or control characters")
		}
	}
	return nil
}

func applyReaction(ctx context.Context, tx *sql.Tx, a *account, o origin, r *wire.Reaction, now time.Time) ([]Event, []int64, error) {
	if !r.GetRemove() {
		if err := checkEmoji(r.GetEmoji()); err != nil {
			return nil, nil, err
		}
	}
	ref, _, err := target(ctx, tx, a, o, r.GetTarget(), false)
	if err != nil {
		return nil, nil, err
	}
	reactor := o.from
	if o.outgoing {
		reactor = a.Username
	}
	if r.GetRemove() {
		// Like a new reaction, a removal replaces only an older one: one
		// device's removal arriving after the reaction another device of
		// the same account made later must not take that one back.
		var updated int64
		err := tx.QueryRowContext(ctx, `SELECT updated_ms FROM reactions WHERE peer = ? AND message_id = ? AND reactor = ?`,
			o.conv, ref.ID[:], reactor).Scan(&updated)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil, nil, fmt.Errorf("%w: %s has no reaction to message %s to take back", errIgnored, reactor, ref.ID)
		case err != nil:
			return nil, nil, &localError{err}
		case updated > o.sent.UnixMilli():
			return nil, nil, fmt.Errorf("%w: %s reacted to message %s after taking a reaction back", errIgnored, reactor, ref.ID)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM reactions WHERE peer = ? AND message_id = ? AND reactor = ?`, o.conv, ref.ID[:], reactor); err != nil {
			return nil, nil, &localError{err}
		}
	} else {
		// A later reaction replaces an earlier one; one sent earlier
		// (claimed time) that arrives later does not.
		_, err = tx.ExecContext(ctx, `INSERT INTO reactions (peer, message_id, reactor, emoji, updated_ms) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (peer, message_id, reactor) DO UPDATE SET emoji = excluded.emoji, updated_ms = excluded.updated_ms
			WHERE excluded.updated_ms >= reactions.updated_ms`, o.conv, ref.ID[:], reactor, r.GetEmoji(), o.sent.UnixMilli())
	}
	if err != nil {
		return nil, nil, &localError{err}
	}
	if o.local {
		return nil, nil, nil
	}
	return []Event{&ReactionEvent{Meta: o.meta(a.Username, now), Target: ref.ID, Emoji: r.GetEmoji(), Removed: r.GetRemove()}}, nil, nil
}

func applyEdit(ctx context.Context, tx *sql.Tx, a *account, o origin, e *wire.Edit, now time.Time) ([]Event, []int64, error) {
	if err := checkText(e.GetBody()); err != nil {
		return nil, nil, err
	}
	ref, seq, err := target(ctx, tx, a, o, e.GetTarget(), true)
	if err != nil {
		return nil, nil, err
	}
	// Edits apply in the order they were made, whatever order they come in.
	if _, err := tx.ExecContext(ctx, `UPDATE history SET body = ?, edited_ms = ? WHERE seq = ? AND edited_ms <= ?`,
		e.GetBody(), o.sent.UnixMilli(), seq, o.sent.UnixMilli()); err != nil {
		return nil, nil, &localError{err}
	}
	if o.local {
		return nil, nil, nil
	}
	return []Event{&EditEvent{Meta: o.meta(a.Username, now), Target: ref.ID, Text: e.GetBody()}}, nil, nil
}

func applyDelete(ctx context.Context, tx *sql.Tx, a *account, o origin, d *wire.Delete, now time.Time) ([]Event, []int64, error) {
	ref, seq, err := target(ctx, tx, a, o, d.GetTarget(), true)
	if err != nil {
		return nil, nil, err
	}
	if err := eraseMessage(ctx, tx, o.conv, ref.ID, seq); err != nil {
		return nil, nil, err
	}
	if o.local {
		return nil, nil, nil
	}
	return []Event{&DeleteEvent{Meta: o.meta(a.Username, now), Target: ref.ID}}, nil, nil
}

// eraseMessage makes history row seq a tombstone: text, attachment, quote,
// reactions and events about it not yet handed over gone.
func eraseMessage(ctx context.Context, tx *sql.Tx, conv string, id MessageID, seq int64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE history SET body = '', attachment = NULL, reply_to = NULL, reply_author = NULL, deleted = 1
		WHERE seq = ?`, seq); err != nil {
		return &localError{err}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM reactions WHERE peer = ? AND message_id = ?`, conv, id[:]); err != nil {
		return &localError{err}
	}
	// An edit kept from before a crash would still hold a text.
	if _, err := tx.ExecContext(ctx, `DELETE FROM pending_events WHERE peer = ? AND target = ?`, conv, id[:]); err != nil {
		return &localError{err}
	}
	return nil
}

func applyReceipt(ctx context.Context, tx *sql.Tx, a *account, o origin, r *wire.Receipt, now time.Time) ([]Event, []int64, error) {
	kind := ReceiptKind(r.GetKind())
	if kind != Delivered && kind != Read {
		return nil, nil, fmt.Errorf("%w: receipt of unknown kind %d", ErrProtocol, r.GetKind())
	}
	if len(r.GetTargets()) == 0 || len(r.GetTargets()) > maxReceiptTargets {
		return nil, nil, fmt.Errorf("%w: receipt naming %d messages", ErrProtocol, len(r.GetTargets()))
	}
	refs := make([]MessageRef, 0, len(r.GetTargets()))
	for _, t := range r.GetTargets() {
		ref, err := checkRef(t)
		if err != nil {
			return nil, nil, err
		}
		refs = append(refs, ref)
	}
	if o.outgoing {
		// This account read them on another device (or this one): they
		// count as read here too, so no second receipt goes out.
		for _, ref := range refs {
			if _, err := tx.ExecContext(ctx, `UPDATE history SET read_ms = ? WHERE peer = ? AND message_id = ? AND outgoing = 0 AND read_ms = 0`,
				now.UnixMilli(), o.conv, ref.ID[:]); err != nil {
				return nil, nil, &localError{err}
			}
		}
		return nil, nil, nil
	}
	var hit []MessageID
	for _, ref := range refs {
		var seq int64
		err := tx.QueryRowContext(ctx, `SELECT seq FROM history WHERE peer = ? AND message_id = ? AND outgoing = 1`, o.conv, ref.ID[:]).Scan(&seq)
		if errors.Is(err, sql.ErrNoRows) {
			continue // not ours, or gone
		}
		if err != nil {
			return nil, nil, &localError{err}
		}
		// Read implies delivered.
		set := `delivered_ms = CASE WHEN delivered_ms = 0 THEN ? ELSE delivered_ms END`
		if kind == Read {
			set += `, read_ms = CASE WHEN read_ms = 0 THEN ? ELSE read_ms END`
		}
		args := []any{now.UnixMilli()}
		if kind == Read {
			args = append(args, now.UnixMilli())
		}
		if _, err := tx.ExecContext(ctx, `UPDATE history SET `+set+` WHERE seq = ?`, append(args, seq)...); err != nil {
			return nil, nil, &localError{err}
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO receipts (peer, message_id, reader, kind, at_ms) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`, o.conv, ref.ID[:], o.from, int(kind), now.UnixMilli())
		if err != nil {
			return nil, nil, &localError{err}
		}
		// Every device of the reader sends its own delivery receipt; the
		// account received it once, and that is the news.
		if n, err := res.RowsAffected(); err != nil {
			return nil, nil, &localError{err}
		} else if n > 0 {
			hit = append(hit, ref.ID)
		}
	}
	if len(hit) == 0 {
		return nil, nil, fmt.Errorf("%w: a receipt for no message of this account, or only for messages its sender had already acknowledged", errIgnored)
	}
	return []Event{&ReceiptEvent{Meta: o.meta(a.Username, now), Kind: kind, Targets: hit}}, nil, nil
}

func applyTimer(ctx context.Context, tx *sql.Tx, a *account, o origin, t *wire.TimerUpdate, now time.Time) ([]Event, []int64, error) {
	if err := checkTimer(t.GetSeconds()); err != nil {
		return nil, nil, err
	}
	// The setting made last (claimed time) wins on every device.
	if _, err := tx.ExecContext(ctx, `INSERT INTO timers (peer, seconds, updated_ms) VALUES (?, ?, ?)
		ON CONFLICT (peer) DO UPDATE SET seconds = excluded.seconds, updated_ms = excluded.updated_ms
		WHERE excluded.updated_ms >= timers.updated_ms`, o.conv, t.GetSeconds(), o.sent.UnixMilli()); err != nil {
		return nil, nil, &localError{err}
	}
	if o.local {
		return nil, nil, nil
	}
	return []Event{&TimerEvent{Meta: o.meta(a.Username, now), Timer: time.Duration(t.GetSeconds()) * time.Second}}, nil, nil
}

// savepoint runs f inside a savepoint of tx and rolls back what f wrote if
// it fails, so a refused message leaves nothing half-applied while the
// rest of the batch commits.
func savepoint(ctx context.Context, tx *sql.Tx, f func() error) error {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT content`); err != nil {
		return &localError{err}
	}
	ferr := f()
	if ferr != nil {
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO content`); err != nil {
			return &localError{err}
		}
	}
	if _, err := tx.ExecContext(ctx, `RELEASE content`); err != nil {
		return &localError{err}
	}
	return ferr
}

// receiptQueue collects, while a batch is received, the messages stored
// from each sender, so one DELIVERED receipt per sender and conversation
// goes out with the batch.
type receiptQueue struct {
	order []receiptKey
	by    map[receiptKey]*pendingReceipt
}

type receiptKey struct{ to, conv string }

type pendingReceipt struct {
	group *wire.GroupContext
	ids   []MessageID
}

func (q *receiptQueue) add(o origin) {
	if q.by == nil {
		q.by = map[receiptKey]*pendingReceipt{}
	}
	k := receiptKey{o.from, o.conv}
	p := q.by[k]
	if p == nil {
		p = &pendingReceipt{group: o.group}
		q.by[k] = p
		q.order = append(q.order, k)
	}
	p.ids = append(p.ids, o.id)
}

// queue puts the collected receipts into the outbox, inside the receiving
// transaction so they go out (on the next flush) exactly when the
// messages are committed. A receipt goes to its sender only, as an
// ordinary end-to-end encrypted message; in a group it carries the
// group's context (with a fresh message id) so the sender files it under
// the group. Senders whose key changed unaccepted get none.
func (q *receiptQueue) queue(ctx context.Context, tx *sql.Tx, now time.Time) (int, error) {
	n := 0
	for _, k := range q.order {
		r, err := loadContact(ctx, tx, k.to)
		if err != nil {
			return n, err
		}
		if r.blocked == 1 || r.changedKey != nil {
			continue
		}
		p := q.by[k]
		for len(p.ids) > 0 {
			batch := p.ids[:min(len(p.ids), maxReceiptTargets)]
			p.ids = p.ids[len(batch):]
			rc := &wire.Receipt{Kind: wire.Receipt_DELIVERED}
			for _, id := range batch {
				rc.Targets = append(rc.Targets, &wire.MessageRef{MessageId: id[:], Author: k.to})
			}
			mid := newMessageID()
			ct := &wire.Content{SentMs: now.UnixMilli(), Body: &wire.Content_Receipt{Receipt: rc}}
			if p.group != nil {
				ct.Group = &wire.GroupContext{GroupId: p.group.GetGroupId(), Epoch: p.group.GetEpoch(), MessageId: mid[:]}
			}
			b, err := marshalPadded(ct)
			if err != nil {
				return n, err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms) VALUES (?, ?, ?, ?)`,
				mid[:], k.to, b, now.UnixMilli()); err != nil {
				return n, &localError{err}
			}
			n++
		}
	}
	return n, nil
}

// sweepExpired erases every disappearing message whose time ran out: the
// row (text, attachment reference), its reactions and receipts, and the
// events about it not yet handed over. The
// database runs with secure_delete, so the erased bytes are overwritten,
// and the write-ahead log is truncated so no old copy of the page stays
// in it.
func (c *Client) sweepExpired(ctx context.Context) error {
	now := c.now().UnixMilli()
	var n int64
	err := inTx(ctx, c.db, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM reactions WHERE (peer, message_id) IN (SELECT peer, message_id FROM history WHERE expires_ms > 0 AND expires_ms <= ?)`,
			`DELETE FROM receipts WHERE (peer, message_id) IN (SELECT peer, message_id FROM history WHERE expires_ms > 0 AND expires_ms <= ?)`,
			// An edit not yet handed over holds the message's new text.
			`DELETE FROM pending_events WHERE (peer, target) IN (SELECT peer, message_id FROM history WHERE expires_ms > 0 AND expires_ms <= ?)`,
			// A disappearing message kept as a request goes at its time too.
			`DELETE FROM requests WHERE expires_ms > 0 AND expires_ms <= ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, now); err != nil {
				return &localError{err}
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM history WHERE expires_ms > 0 AND expires_ms <= ?`, now)
		if err != nil {
			return &localError{err}
		}
		n, err = res.RowsAffected()
		if err != nil {
			return &localError{err}
		}
		return nil
	})
	if err != nil || n == 0 {
		return err
	}
	if _, err := c.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return &localError{err}
	}
	return nil
}

// ref names message id of conversation conv with its author, as stored.
func (c *Client) ref(ctx context.Context, a *account, conv string, id MessageID) (*wire.MessageRef, error) {
	var outgoing int
	var author sql.NullString
	err := c.db.QueryRowContext(ctx, `SELECT outgoing, author FROM history WHERE peer = ? AND message_id = ? ORDER BY seq LIMIT 1`,
		conv, id[:]).Scan(&outgoing, &author)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("no message %s in the conversation with %s", id, displayConv(conv))
	}
	if err != nil {
		return nil, &localError{err}
	}
	r := &wire.MessageRef{MessageId: id[:], Author: conv}
	switch {
	case outgoing == 1:
		r.Author = a.Username
	case author.Valid:
		r.Author = author.String
	}
	return r, nil
}

// displayConv names a conversation in error messages.
func displayConv(conv string) string {
	if isGroupConv(conv) {
		return "group " + strings.TrimPrefix(conv, groupConvPrefix)
	}
	return conv
}

// normConv is convKey for the public calls, which also refuse the own
// username.
func (c *Client) normConv(conv string) (*account, string, error) {
	a, err := c.account()
	if err != nil {
		return nil, "", err
	}
	k, err := convKey(conv)
	if err != nil {
		return nil, "", err
	}
	if k == a.Username {
		return nil, "", errors.New("cannot send a message to yourself")
	}
	return a, k, nil
}

// targetRef resolves conv (as normConv) and names message target of it,
// for a reply, reaction, edit or delete.
func (c *Client) targetRef(ctx context.Context, conv string, target MessageID) (string, *wire.MessageRef, error) {
	a, conv, err := c.normConv(conv)
	if err != nil {
		return "", nil, err
	}
	r, err := c.ref(ctx, a, conv, target)
	return conv, r, err
}

// Reply sends text in conversation conv (a username or a group key) quoting
// message target of that conversation.
func (c *Client) Reply(ctx context.Context, conv string, target MessageID, text string) (MessageID, error) {
	if err := checkText(text); err != nil {
		return MessageID{}, err
	}
	conv, r, err := c.targetRef(ctx, conv, target)
	if err != nil {
		return MessageID{}, err
	}
	return c.sendContent(ctx, conv, &wire.Content{Body: &wire.Content_Text{Text: &wire.Text{Body: text}}, ReplyTo: r})
}

// React reacts to message target of conv with emoji, replacing this
// account's earlier reaction to it; with remove, takes it back.
func (c *Client) React(ctx context.Context, conv string, target MessageID, emoji string, remove bool) (MessageID, error) {
	if remove {
		emoji = ""
	} else if err := checkEmoji(emoji); err != nil {
		return MessageID{}, err
	}
	conv, r, err := c.targetRef(ctx, conv, target)
	if err != nil {
		return MessageID{}, err
	}
	return c.sendContent(ctx, conv, &wire.Content{Body: &wire.Content_Reaction{Reaction: &wire.Reaction{Target: r, Emoji: emoji, Remove: remove}}})
}

// Edit replaces the text of message target, which this account sent in
// conv, on every device of the conversation.
func (c *Client) Edit(ctx context.Context, conv string, target MessageID, text string) (MessageID, error) {
	if err := checkText(text); err != nil {
		return MessageID{}, err
	}
	conv, r, err := c.targetRef(ctx, conv, target)
	if err != nil {
		return MessageID{}, err
	}
	return c.sendContent(ctx, conv, &wire.Content{Body: &wire.Content_Edit{Edit: &wire.Edit{Target: r, Body: text}}})
}

// Delete deletes message target, which this account sent in conv, for
// everyone: every device keeps only a tombstone.
func (c *Client) Delete(ctx context.Context, conv string, target MessageID) (MessageID, error) {
	conv, r, err := c.targetRef(ctx, conv, target)
	if err != nil {
		return MessageID{}, err
	}
	return c.sendContent(ctx, conv, &wire.Content{Body: &wire.Content_Delete{Delete: &wire.Delete{Target: r}}})
}

// SetTimer sets conv's disappearing-message timer (0: off) on every
// device of the conversation; later messages are erased this long after
// they arrive.
func (c *Client) SetTimer(ctx context.Context, conv string, d time.Duration) (MessageID, error) {
	if d%time.Second != 0 || d < 0 {
		return MessageID{}, errors.New("a disappearing-message timer is a whole number of seconds")
	}
	secs := uint32(min(d/time.Second, 1<<32-1))
	if err := checkTimer(secs); err != nil {
		return MessageID{}, err
	}
	return c.sendContent(ctx, conv, &wire.Content{Body: &wire.Content_Timer{Timer: &wire.TimerUpdate{Seconds: secs}}})
}

// Timer returns conv's disappearing-message timer (0: off).
func (c *Client) Timer(ctx context.Context, conv string) (time.Duration, error) {
	_, conv, err := c.normConv(conv)
	if err != nil {
		return 0, err
	}
	secs, err := conversationTimer(ctx, c.db, conv)
	return time.Duration(secs) * time.Second, err
}

// Typing indicators are ephemeral, like call signals (client/calls.go):
// sent at once ahead of the outbox, in one attempt, never stored; one
// that could not be sent is dropped rather than arriving late, and a
// receiver ignores one older than typingMaxAge. Groups of more than
// maxTypingMembers members get none: one keystroke would otherwise cost a
// message to every member.
const (
	typingMaxAge     = 15 * time.Second
	maxTypingMembers = 32
)

// SendTyping tells conv that this account started or stopped typing. It
// is not stored anywhere, and not sent to a contact you blocked, one whose
// changed safety number you have not accepted, or someone who is not a
// contact yet.
func (c *Client) SendTyping(ctx context.Context, conv string, started bool) error {
	a, err := c.account()
	if err != nil {
		return err
	}
	if conv, err = convKey(conv); err != nil {
		return err
	}
	content := &wire.Content{SentMs: c.now().UnixMilli(), Body: &wire.Content_Typing{Typing: &wire.Typing{Started: started}}}
	var to []string
	if isGroupConv(conv) {
		gid, err := parseGroupConv(conv)
		if err != nil {
			return err
		}
		head, err := loadHead(ctx, c.db, gid)
		if err != nil {
			return err
		}
		if head == nil || !head.active(a.Username) || len(head.st.GetMembers()) > maxTypingMembers {
			return nil
		}
		mid := newMessageID()
		content.Group = &wire.GroupContext{GroupId: gid[:], Epoch: head.st.GetEpoch(), MessageId: mid[:]}
		for _, m := range head.st.GetMembers() {
			if m != a.Username {
				to = append(to, m)
			}
		}
	} else {
		r, err := loadContact(ctx, c.db, conv)
		if err != nil {
			return err
		}
		if r.blocked == 1 || r.state != stateContact || r.changedKey != nil {
			return nil
		}
		to = []string{conv}
	}
	var errs []error
	for _, u := range to {
		if err := c.sendEphemeral(ctx, a, u, content); err != nil {
			errs = append(errs, fmt.Errorf("typing indicator to %s: %w", u, err))
		}
	}
	return errors.Join(errs...)
}

// MarkRead sends read receipts for every message of conv not yet marked
// read, and marks them read on every own device. It returns how many
// messages it covered.
func (c *Client) MarkRead(ctx context.Context, conv string) (int, error) {
	_, conv, err := c.normConv(conv)
	if err != nil {
		return 0, err
	}
	rs, err := c.db.QueryContext(ctx, `SELECT message_id, author FROM history WHERE peer = ? AND outgoing = 0 AND read_ms = 0 AND deleted = 0 ORDER BY seq`, conv)
	if err != nil {
		return 0, &localError{err}
	}
	var refs []*wire.MessageRef
	for rs.Next() {
		var id []byte
		var author sql.NullString
		if err := rs.Scan(&id, &author); err != nil {
			rs.Close()
			return 0, &localError{err}
		}
		r := &wire.MessageRef{MessageId: id, Author: conv}
		if author.Valid {
			r.Author = author.String
		}
		refs = append(refs, r)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return 0, &localError{err}
	}
	n := len(refs)
	for len(refs) > 0 {
		batch := refs[:min(len(refs), maxReceiptTargets)]
		refs = refs[len(batch):]
		// Applied here first (as read), then to the peer (or the group,
		// where every member learns who read what) and the own devices.
		if _, err := c.sendContent(ctx, conv, &wire.Content{Body: &wire.Content_Receipt{Receipt: &wire.Receipt{Kind: wire.Receipt_READ, Targets: batch}}}); err != nil {
			return n, err
		}
	}
	return n, nil
}
