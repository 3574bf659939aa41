package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/wire"
)

// Call signalling (docs/protocol.md §13.1).
//
// A call signal is a Content{call} sent like any message, end to end
// encrypted to every device of the peer (the server only accepts a copy
// for each listed device; a signal meant for one device names it in
// CallSignal.device and the others ignore it), or to this account's other
// devices. Signals are ephemeral: the receiver never stores them in the
// history or in message requests, hands them over once (a crash between
// commit and hand-over loses them, which only ends a call), and ignores
// one older than CallMaxAge by the sender's clock or by the time the
// server stored it.
//
// Sending: a signal is committed to the outbox only to reuse deliver (the
// ratchet state that encrypts it is committed before it is sent, so a
// chain key is never used twice), is delivered at once ahead of the queued
// messages, whatever is stuck there, and leaves the outbox after that one
// attempt, delivered or not. A stale signal sent late would be useless:
// the call engine treats a failed send as a failed call instead. Holding
// flushMu meanwhile keeps a concurrent flush from sending the row a second
// time. A crash during the attempt can leave the row behind; the next
// flush then delivers it, and the receiver ignores it as too old.

const (
	// CallMaxAge is how old a received call signal may be, by the
	// sender's clock and by the server's, and still be handed over: the
	// ring timeout.
	CallMaxAge = 60 * time.Second
	// CallIDSize is the size of a call id.
	CallIDSize = 16
	// MaxCallSDP bounds the session description in an offer or answer.
	MaxCallSDP = 32 << 10
	// MaxCallCandidate bounds one ICE candidate's JSON.
	MaxCallCandidate = 2 << 10
)

// CallEvent is a call signal from a peer's device, or from another device
// of this account (From is then this account's username).
type CallEvent struct {
	From     string
	Device   uint32
	Sent     time.Time // as claimed by the sender
	Received time.Time
	// Contact: From is an accepted contact or this account. A call with
	// anyone else is relay-only, so they never learn this device's
	// addresses (docs/protocol.md §13.2).
	Contact bool
	Signal  *wire.CallSignal
}

func (*CallEvent) isEvent() {}

// SendCall sends a call signal to every device of the user to, or, with to
// this account's own username, to this account's other devices. It returns
// once the server stored it for all of them; an error means it was not
// sent and will not be retried.
func (c *Client) SendCall(ctx context.Context, to string, sig *wire.CallSignal) error {
	a, err := c.account()
	if err != nil {
		return err
	}
	user, err := identity.NormalizeUsername(to)
	if err != nil {
		return err
	}
	if err := CheckCallSignal(sig); err != nil {
		return err
	}
	if user != a.Username {
		r, err := loadContact(ctx, c.db, user)
		if err != nil {
			return err
		}
		if r.blocked == 1 {
			return fmt.Errorf("you blocked %s; unblock them to call them", user)
		}
		if err := c.checkKeyTrusted(ctx, user); err != nil {
			return err
		}
	}
	return c.sendEphemeral(ctx, a, user, &wire.Content{SentMs: c.now().UnixMilli(), Body: &wire.Content_Call{Call: sig}})
}

// sendEphemeral delivers content to every device of user (or, with the
// own username, to this account's other devices) at once, ahead of the
// outbox, in one attempt: what call signals and typing indicators need,
// since either is worthless late. See the top of this file.
func (c *Client) sendEphemeral(ctx context.Context, a *account, user string, ct *wire.Content) error {
	content, err := marshalPadded(ct)
	if err != nil {
		return err
	}
	row := outboxRow{id: newMessageID(), to: user, content: content}
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if _, err := c.db.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms) VALUES (?, ?, ?, ?)`,
		row.id[:], row.to, row.content, c.now().UnixMilli()); err != nil {
		return &localError{err}
	}
	defer func() {
		// One attempt only, even if the caller's context just ended.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := c.db.ExecContext(ctx, `DELETE FROM outbox WHERE message_id = ?`, row.id[:]); err != nil {
			c.cfg.Warn(fmt.Errorf("could not remove a sent ephemeral message from the outbox: %w", err))
		}
	}()
	cn, err := c.connection(ctx)
	if err != nil {
		return err
	}
	return c.deliver(ctx, cn, a, row)
}

// CheckCallSignal checks a call signal's shape: a call id of CallIDSize
// bytes, exactly one kind, bounded descriptions and candidates, a known
// hangup reason given. What the SDP and the candidates say is the call engine's
// to check.
func CheckCallSignal(s *wire.CallSignal) error {
	if s == nil {
		return fmt.Errorf("%w: empty call signal", ErrProtocol)
	}
	if len(s.GetCallId()) != CallIDSize {
		return fmt.Errorf("%w: call id of %d bytes, want %d", ErrProtocol, len(s.GetCallId()), CallIDSize)
	}
	switch k := s.GetKind().(type) {
	case *wire.CallSignal_Offer:
		return checkSDP("offer", k.Offer.GetSdp())
	case *wire.CallSignal_Answer:
		return checkSDP("answer", k.Answer.GetSdp())
	case *wire.CallSignal_Ice:
		if n := len(k.Ice.GetCandidate()); n == 0 || n > MaxCallCandidate {
			return fmt.Errorf("%w: ICE candidate of %d bytes (1 to %d allowed)", ErrProtocol, n, MaxCallCandidate)
		}
	case *wire.CallSignal_Ringing, *wire.CallSignal_Busy:
	case *wire.CallSignal_Hangup:
		if _, ok := wire.CallHangup_Reason_name[int32(k.Hangup.GetReason())]; !ok || k.Hangup.GetReason() == wire.CallHangup_REASON_UNSPECIFIED {
			return fmt.Errorf("%w: unknown hangup reason %d", ErrProtocol, k.Hangup.GetReason())
		}
	default:
		return fmt.Errorf("%w: call signal of no known kind", ErrProtocol)
	}
	return nil
}

func checkSDP(kind, sdp string) error {
	if len(sdp) == 0 || len(sdp) > MaxCallSDP {
		return fmt.Errorf("%w: call %s with a description of %d bytes (1 to %d allowed)", ErrProtocol, kind, len(sdp), MaxCallSDP)
	}
	return nil
}

// receiveCall handles a decrypted message inside the receiving
// transaction if it is a call signal (handled is then true): a malformed
// one is dropped, one from a blocked account or too old is ignored
// silently, anything else becomes a CallEvent. It is marked seen either
// way, so a redelivery (a lost acknowledgement) is not handed over twice.
// A returned error is the local database's.
func (c *Client) receiveCall(ctx context.Context, tx *sql.Tx, a *account, k deviceKey, id MessageID, e *wire.Envelope, now time.Time, plaintext []byte) (evs []Event, handled bool, err error) {
	var ct wire.Content
	if proto.Unmarshal(plaintext, &ct) != nil || ct.GetCall() == nil {
		return nil, false, nil
	}
	ev, err := callEvent(ctx, tx, a, k, e, now, &ct)
	var le *localError
	if errors.As(err, &le) {
		return nil, true, err
	}
	if err != nil {
		evs = []Event{&DroppedEvent{ID: id, From: k.user, Device: k.device, Err: err}}
	} else if ev != nil {
		evs = []Event{ev}
	}
	return evs, true, markSeen(ctx, tx, k, id, now)
}

func callEvent(ctx context.Context, tx *sql.Tx, a *account, k deviceKey, e *wire.Envelope, now time.Time, ct *wire.Content) (*CallEvent, error) {
	sig := ct.GetCall()
	if err := CheckCallSignal(sig); err != nil {
		return nil, err
	}
	contact := true
	if k.user != a.Username {
		r, err := loadContact(ctx, tx, k.user)
		if err != nil {
			return nil, err
		}
		if r.blocked == 1 {
			// Decrypted, so the session stays in step, but it never rings.
			return nil, nil
		}
		contact = r.state == stateContact
	}
	sent := time.UnixMilli(ct.GetSentMs())
	if stale(now, sent) || stale(now, time.UnixMilli(e.GetServerTimeMs())) {
		return nil, nil
	}
	return &CallEvent{From: k.user, Device: k.device, Sent: sent, Received: now, Contact: contact, Signal: sig}, nil
}

// stale reports whether t is further than CallMaxAge from now, in either
// direction (a clock far ahead is as suspect as a late delivery).
func stale(now, t time.Time) bool {
	d := now.Sub(t)
	return d > CallMaxAge || d < -CallMaxAge
}
