package client

import (
	"context"
	"time"

	"github.com/hush-chat/hush/internal/identity"
)

// Status is where a history entry stands.
type Status int

// Statuses of history entries.
const (
	Received Status = iota // an incoming message
	Queued                 // outgoing, in the outbox
	Stored                 // outgoing, stored by the server for every device
	Failed                 // outgoing, refused for good
)

func (s Status) String() string {
	switch s {
	case Received:
		return "received"
	case Queued:
		return "queued"
	case Stored:
		return "sent"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Entry is one message of a conversation.
type Entry struct {
	ID       MessageID
	Peer     string // the other side of the conversation
	Outgoing bool
	Device   uint32 // the sending device
	Sent     time.Time
	Received time.Time
	Text     string
	Status   Status
}

// History returns the last limit messages exchanged with peer, oldest
// first; limit <= 0 returns all of them.
func (c *Client) History(ctx context.Context, peer string, limit int) ([]Entry, error) {
	user, err := identity.NormalizeUsername(peer)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rs, err := c.db.QueryContext(ctx, `SELECT message_id, outgoing, device, sent_ms, received_ms, body, state FROM
		(SELECT * FROM history WHERE peer = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`, user, limit)
	if err != nil {
		return nil, &localError{err}
	}
	defer rs.Close()
	var out []Entry
	for rs.Next() {
		e := Entry{Peer: user}
		var id []byte
		var outgoing, state int
		var sent, recv int64
		if err := rs.Scan(&id, &outgoing, &e.Device, &sent, &recv, &e.Text, &state); err != nil {
			return nil, &localError{err}
		}
		copy(e.ID[:], id)
		e.Outgoing = outgoing == 1
		e.Sent, e.Received = time.UnixMilli(sent), time.UnixMilli(recv)
		switch {
		case !e.Outgoing:
			e.Status = Received
		case state == stateQueued:
			e.Status = Queued
		case state == stateStored:
			e.Status = Stored
		default:
			e.Status = Failed
		}
		out = append(out, e)
	}
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	return out, nil
}
