package client

// Conversation events committed but not yet handed over. Messages are
// re-delivered after a crash from their history rows (history.unshown,
// receive.go's redeliver); the events of client/messaging.go have no row
// of their own, so the receiving transaction keeps a copy of each in
// pending_events, deleted once the application has it. Typing
// indicators are never stored, so they are not re-delivered.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// storedEvent is the form of an event in pending_events.
type storedEvent struct {
	Kind       string   `json:"kind"` // reaction, edit, delete, receipt, timer
	ID         []byte   `json:"id"`
	From       string   `json:"from"`
	To         string   `json:"to,omitempty"`
	Device     uint32   `json:"device"`
	SentMs     int64    `json:"sent_ms"`
	ReceivedMs int64    `json:"received_ms"`
	Group      []byte   `json:"group,omitempty"`
	Target     []byte   `json:"target,omitempty"`
	Emoji      string   `json:"emoji,omitempty"`
	Removed    bool     `json:"removed,omitempty"`
	Text       string   `json:"text,omitempty"`
	Receipt    int      `json:"receipt,omitempty"`
	Targets    [][]byte `json:"targets,omitempty"`
	Seconds    int64    `json:"seconds,omitempty"`
}

// storeEvent returns the stored form of e and the message it is about
// (nil for receipts, which name several), or ok false for an event that
// is not kept.
func storeEvent(e Event) (s storedEvent, target []byte, ok bool) {
	var m Meta
	switch e := e.(type) {
	case *ReactionEvent:
		m, s.Kind, s.Target, s.Emoji, s.Removed = e.Meta, "reaction", e.Target[:], e.Emoji, e.Removed
	case *EditEvent:
		m, s.Kind, s.Target, s.Text = e.Meta, "edit", e.Target[:], e.Text
	case *DeleteEvent:
		m, s.Kind, s.Target = e.Meta, "delete", e.Target[:]
	case *ReceiptEvent:
		m, s.Kind, s.Receipt = e.Meta, "receipt", int(e.Kind)
		for _, t := range e.Targets {
			s.Targets = append(s.Targets, t[:])
		}
	case *TimerEvent:
		m, s.Kind, s.Seconds = e.Meta, "timer", int64(e.Timer/time.Second)
	default:
		return s, nil, false
	}
	s.ID, s.From, s.To, s.Device, s.Group = m.ID[:], m.From, m.To, m.Device, m.Group
	s.SentMs, s.ReceivedMs = m.Sent.UnixMilli(), m.Received.UnixMilli()
	return s, s.Target, true
}

// loadEvent parses a stored event back; the GroupName is filled in later
// (nameGroups), as the group is known then.
func loadEvent(b []byte) (Event, error) {
	var s storedEvent
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	id := func(b []byte) (MessageID, error) {
		var id MessageID
		if len(b) != len(id) {
			return id, fmt.Errorf("message id of %d bytes", len(b))
		}
		copy(id[:], b)
		return id, nil
	}
	var m Meta
	var err error
	if m.ID, err = id(s.ID); err != nil {
		return nil, err
	}
	if s.Group != nil && len(s.Group) != len(GroupID{}) {
		return nil, fmt.Errorf("group id of %d bytes", len(s.Group))
	}
	m.From, m.To, m.Device, m.Group = s.From, s.To, s.Device, s.Group
	m.Sent, m.Received = time.UnixMilli(s.SentMs), time.UnixMilli(s.ReceivedMs)
	switch s.Kind {
	case "reaction":
		t, err := id(s.Target)
		return &ReactionEvent{Meta: m, Target: t, Emoji: s.Emoji, Removed: s.Removed}, err
	case "edit":
		t, err := id(s.Target)
		return &EditEvent{Meta: m, Target: t, Text: s.Text}, err
	case "delete":
		t, err := id(s.Target)
		return &DeleteEvent{Meta: m, Target: t}, err
	case "receipt":
		k := ReceiptKind(s.Receipt)
		if k != Delivered && k != Read {
			return nil, fmt.Errorf("receipt of kind %d", s.Receipt)
		}
		if len(s.Targets) == 0 || len(s.Targets) > maxReceiptTargets {
			return nil, fmt.Errorf("receipt naming %d messages", len(s.Targets))
		}
		e := &ReceiptEvent{Meta: m, Kind: k}
		for _, b := range s.Targets {
			t, err := id(b)
			if err != nil {
				return nil, err
			}
			e.Targets = append(e.Targets, t)
		}
		return e, nil
	case "timer":
		if err := checkTimer(uint32(min(max(s.Seconds, 0), 1<<32-1))); err != nil || s.Seconds < 0 {
			return nil, fmt.Errorf("timer of %d seconds", s.Seconds)
		}
		return &TimerEvent{Meta: m, Timer: time.Duration(s.Seconds) * time.Second}, nil
	}
	return nil, fmt.Errorf("event of kind %q", s.Kind)
}

// keepEvents stores, inside the receiving transaction, the events of evs
// that are re-delivered after a crash, and returns their rows.
func keepEvents(ctx context.Context, tx *sql.Tx, evs []Event) ([]int64, error) {
	var ids []int64
	for _, e := range evs {
		s, target, ok := storeEvent(e)
		if !ok {
			continue
		}
		b, err := json.Marshal(s)
		if err != nil {
			return nil, &localError{err}
		}
		conv := s.From
		switch {
		case s.Group != nil:
			conv = groupConv(s.Group)
		case s.To != "":
			conv = s.To
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO pending_events (peer, target, event) VALUES (?, ?, ?)`, conv, target, b)
		if err != nil {
			return nil, &localError{err}
		}
		id, err := res.LastInsertId()
		if err != nil {
			return nil, &localError{err}
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// pendingEvents returns the events kept by a receive that stopped before
// handing them over, oldest first, with their rows. A row that does not
// parse (a damaged database) is reported to Config.Warn and dropped with
// the others.
func (c *Client) pendingEvents(ctx context.Context) ([]Event, []int64, error) {
	rs, err := c.db.QueryContext(ctx, `SELECT id, event FROM pending_events ORDER BY id`)
	if err != nil {
		return nil, nil, &localError{err}
	}
	defer rs.Close()
	var evs []Event
	var ids []int64
	for rs.Next() {
		var id int64
		var b []byte
		if err := rs.Scan(&id, &b); err != nil {
			return nil, nil, &localError{err}
		}
		ids = append(ids, id)
		e, err := loadEvent(b)
		if err != nil {
			c.cfg.Warn(fmt.Errorf("a stored event could not be read and was dropped: %v", err))
			continue
		}
		evs = append(evs, e)
	}
	if err := rs.Err(); err != nil {
		return nil, nil, &localError{err}
	}
	return evs, ids, nil
}
