package client

// Groups (docs/protocol.md §11). Owned by the groups work; the functions
// below are the seam the message pipeline (client/messaging.go) calls.

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/hush-chat/hush/wire"
)

// groupConvPrefix starts a group's conversation key, the value of
// history.peer for its messages: "#" and the group id in hex. Usernames
// cannot contain '#', so a key is never both.
const groupConvPrefix = "#"

// groupConv is the conversation key of group id.
func groupConv(id []byte) string { return groupConvPrefix + hex.EncodeToString(id) }

// isGroupConv reports whether conv names a group.
func isGroupConv(conv string) bool { return strings.HasPrefix(conv, groupConvPrefix) }

// errNotGroupMember: group content from an account that is not a member
// of that group as this device knows it (or for an unknown group).
var errNotGroupMember = errors.New("not a member of the group")

// groupIncoming checks content that carries a GroupContext, from account
// from, inside the receiving transaction: the group is known, from is a
// member at an epoch this device accepts. It returns the group's
// conversation key. An error means the content is ignored.
func (c *Client) groupIncoming(ctx context.Context, tx *sql.Tx, a *account, from string, content *wire.Content, now time.Time) (string, error) {
	return "", errNotGroupMember
}

// receiveGroupUpdate applies a GroupUpdate sent by k (another account or
// one of this account's devices) inside the receiving transaction.
func (c *Client) receiveGroupUpdate(ctx context.Context, tx *sql.Tx, a *account, k deviceKey, id MessageID, content *wire.Content, now time.Time) ([]Event, []int64, error) {
	return nil, nil, errNotGroupMember
}

// queueGroup puts content (carrying its GroupContext) into the outbox for
// every device of every other member of group conv and, as a sync copy,
// for this account's other devices, inside the sender's transaction.
func (c *Client) queueGroup(ctx context.Context, tx *sql.Tx, a *account, conv string, id MessageID, content *wire.Content) error {
	return errNotGroupMember
}
