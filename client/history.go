package client

import (
	"context"
	"database/sql"
	"time"
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
	Peer     string // the conversation: the other account, or a group's key
	Author   string // who wrote it: the peer, this account, or a group member
	Outgoing bool
	Device   uint32 // the sending device
	Sent     time.Time
	Received time.Time
	Text     string // a file's caption if Attachment is set
	Status   Status
	// Attachment is the file sent with the message, if any.
	Attachment *AttachmentInfo
	// ReplyTo is the message this one quotes.
	ReplyTo *MessageRef
	// Edited is when the text was last replaced (zero: never).
	Edited time.Time
	// Deleted: its sender deleted it for everyone; Text and Attachment
	// are gone.
	Deleted bool
	// Expires is when a disappearing message is erased (zero: never).
	Expires time.Time
	// For outgoing messages: whether any recipient's device received it,
	// and whether any recipient read it (in a group, "by someone").
	// For incoming ones, Read says this account sent its read receipt.
	Delivered, Read bool
	// Reactions, by reacting account.
	Reactions map[string]string
}

// History returns the last limit messages of conversation peer (a
// username, or a group's key "#" + hex id), oldest first; limit <= 0
// returns all of them. Disappearing messages whose time ran out are
// erased first.
func (c *Client) History(ctx context.Context, peer string, limit int) ([]Entry, error) {
	a, err := c.account()
	if err != nil {
		return nil, err
	}
	conv, err := convKey(peer)
	if err != nil {
		return nil, err
	}
	if err := c.sweepExpired(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rs, err := c.db.QueryContext(ctx, `SELECT message_id, outgoing, device, sent_ms, received_ms, body, state,
		author, attachment, reply_to, reply_author, edited_ms, deleted, expires_ms, delivered_ms, read_ms FROM
		(SELECT * FROM history WHERE peer = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`, conv, limit)
	if err != nil {
		return nil, &localError{err}
	}
	defer rs.Close()
	var out []Entry
	for rs.Next() {
		e := Entry{Peer: conv}
		var id, att, reply []byte
		var outgoing, state, deleted int
		var sent, recv, edited, expires, delivered, read int64
		var author, replyAuthor sql.NullString
		if err := rs.Scan(&id, &outgoing, &e.Device, &sent, &recv, &e.Text, &state,
			&author, &att, &reply, &replyAuthor, &edited, &deleted, &expires, &delivered, &read); err != nil {
			return nil, &localError{err}
		}
		copy(e.ID[:], id)
		e.Outgoing = outgoing == 1
		e.Sent, e.Received = time.UnixMilli(sent), time.UnixMilli(recv)
		switch {
		case e.Outgoing:
			e.Author = a.Username
		case author.Valid:
			e.Author = author.String
		default:
			e.Author = conv
		}
		e.Attachment = storedAttachment(att)
		if len(reply) == len(e.ID) {
			e.ReplyTo = &MessageRef{Author: replyAuthor.String}
			copy(e.ReplyTo.ID[:], reply)
		}
		if edited > 0 {
			e.Edited = time.UnixMilli(edited)
		}
		if expires > 0 {
			e.Expires = time.UnixMilli(expires)
		}
		e.Deleted, e.Delivered, e.Read = deleted == 1, delivered > 0, read > 0
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
	rs.Close()
	return out, c.addReactions(ctx, conv, out)
}

// addReactions fills in the reactions of entries.
func (c *Client) addReactions(ctx context.Context, conv string, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	at := map[MessageID]int{}
	for i, e := range entries {
		at[e.ID] = i
	}
	rs, err := c.db.QueryContext(ctx, `SELECT message_id, reactor, emoji FROM reactions WHERE peer = ? ORDER BY updated_ms`, conv)
	if err != nil {
		return &localError{err}
	}
	defer rs.Close()
	for rs.Next() {
		var id []byte
		var who, emoji string
		if err := rs.Scan(&id, &who, &emoji); err != nil {
			return &localError{err}
		}
		var mid MessageID
		copy(mid[:], id)
		if i, ok := at[mid]; ok {
			if entries[i].Reactions == nil {
				entries[i].Reactions = map[string]string{}
			}
			entries[i].Reactions[who] = emoji
		}
	}
	if err := rs.Err(); err != nil {
		return &localError{err}
	}
	return nil
}
