package client

// Groups (docs/protocol.md §11). A group exists only in its members'
// clients: a chain of signed states (client/groupstate.go) that travels
// inside ordinary end-to-end encrypted messages, and messages fanned out
// by the sender over the pairwise sessions. The server sees 1:1 messages.
//
// The functions groupIncoming, receiveGroupUpdate and queueGroup are the
// seam the message pipeline calls.

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/wire"
)

// Bounds on what a device keeps per group (docs/protocol.md §11.4).
const (
	// maxForkDepth is how many epochs back a competing state can still
	// replace the one held.
	maxForkDepth = 16
	// maxPendingStates bounds the states held until the ones between
	// them and the head arrive, and how far ahead of the head they may be.
	maxPendingStates = 32
	// maxPendingPerSigner bounds the states of one signer among them.
	maxPendingPerSigner = 4
)

// groupConvPrefix starts a group's conversation key, the value of
// history.peer for its messages: "#" and the group id in hex. Usernames
// cannot contain '#', so a key is never both.
const groupConvPrefix = "#"

// groupConv is the conversation key of group id.
func groupConv(id []byte) string { return groupConvPrefix + hex.EncodeToString(id) }

// isGroupConv reports whether conv names a group.
func isGroupConv(conv string) bool { return strings.HasPrefix(conv, groupConvPrefix) }

// GroupConversation is the conversation key of group id, as History and
// MessageEvent.To use it.
func GroupConversation(id GroupID) string { return groupConv(id[:]) }

// parseGroupConv returns the group id of a conversation key.
func parseGroupConv(conv string) (GroupID, error) {
	if !isGroupConv(conv) {
		return GroupID{}, fmt.Errorf("%q is not a group conversation", conv)
	}
	return ParseGroupID(strings.TrimPrefix(conv, groupConvPrefix))
}

// errNotGroupMember: group content from an account that is not a member
// of that group as this device knows it (or for an unknown group).
var errNotGroupMember = errors.New("not a member of the group")

// Group is what this device knows of a group: its head state.
type Group struct {
	ID      GroupID
	Name    string
	Epoch   uint64
	Members []string
	Admins  []string
	// Active: this account is a member. A group it left or was removed
	// from stays listed, inactive.
	Active bool
}

func (g *groupState) public(self string) Group {
	return Group{
		ID: g.id, Name: g.st.GetName(), Epoch: g.st.GetEpoch(),
		Members: slices.Clone(g.st.GetMembers()), Admins: slices.Clone(g.st.GetAdmins()),
		Active: g.active(self),
	}
}

// GroupChange is what a GroupEvent reports.
type GroupChange int

// Kinds of group change.
const (
	GroupJoined  GroupChange = iota + 1 // this account is in a group new to this device
	GroupUpdated                        // members, admins or name changed
	GroupLeft                           // this account is no longer a member
)

func (k GroupChange) String() string {
	switch k {
	case GroupJoined:
		return "joined"
	case GroupUpdated:
		return "updated"
	case GroupLeft:
		return "left"
	}
	return "unknown"
}

// GroupEvent is a new group state this device accepted.
type GroupEvent struct {
	ID       MessageID // the message that carried it
	Group    GroupID
	Name     string
	Epoch    uint64
	By       string // the account that signed the state
	Change   GroupChange
	Added    []string // members new since the state held before
	Removed  []string // members gone since then
	Received time.Time
}

func (*GroupEvent) isEvent() {}

// loadHead returns the head state of group id and whether this account
// is in it; nil if the group is unknown.
func loadHead(ctx context.Context, q querier, id GroupID) (*groupState, error) {
	var raw []byte
	var member int
	err := q.QueryRowContext(ctx, `SELECT s.signed, g.member FROM groups g JOIN group_states s ON s.group_id = g.group_id AND s.epoch = g.epoch
		WHERE g.group_id = ?`, id[:]).Scan(&raw, &member)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, &localError{err}
	}
	g, err := parseSignedGroupState(raw)
	if err != nil {
		return nil, &localError{fmt.Errorf("stored state of group %s: %w", id, err)}
	}
	g.left = member == 0
	return g, nil
}

// loadStateAt returns the state held for group id at epoch; nil if none.
func loadStateAt(ctx context.Context, q querier, id GroupID, epoch uint64) (*groupState, error) {
	var raw []byte
	err := q.QueryRowContext(ctx, `SELECT signed FROM group_states WHERE group_id = ? AND epoch = ?`, id[:], epoch).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, &localError{err}
	}
	g, err := parseSignedGroupState(raw)
	if err != nil {
		return nil, &localError{fmt.Errorf("stored state of group %s: %w", id, err)}
	}
	return g, nil
}

// storeHead makes g the head of its group: states at its epoch and above
// (a losing branch) are replaced, and those too old to matter dropped.
func storeHead(ctx context.Context, tx *sql.Tx, self string, g *groupState, now time.Time) error {
	enc, err := g.encode()
	if err != nil {
		return err
	}
	epoch := g.st.GetEpoch()
	member := 0
	if g.isMember(self) {
		member = 1
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO groups (group_id, name, epoch, member, updated_ms) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (group_id) DO UPDATE SET name = excluded.name, epoch = excluded.epoch, member = excluded.member, updated_ms = excluded.updated_ms`,
		g.id[:], g.st.GetName(), epoch, member, now.UnixMilli()); err != nil {
		return &localError{err}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM group_states WHERE group_id = ? AND (epoch >= ? OR epoch + ? < ?)`,
		g.id[:], epoch, maxForkDepth, epoch); err != nil {
		return &localError{err}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO group_states (group_id, epoch, hash, signed) VALUES (?, ?, ?, ?)`,
		g.id[:], epoch, g.hash[:], enc); err != nil {
		return &localError{err}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM group_pending WHERE group_id = ? AND epoch <= ?`, g.id[:], epoch); err != nil {
		return &localError{err}
	}
	return nil
}

// signerList returns the verified device list of user stored in peers:
// the receive path fetched the sender's before its transaction.
func signerList(ctx context.Context, q querier, user string) (*identity.SignedDeviceList, error) {
	var raw []byte
	err := q.QueryRowContext(ctx, `SELECT device_list FROM peers WHERE username = ?`, user).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, &localError{err}
	}
	l, err := identity.ParseSignedDeviceList(raw)
	if err != nil {
		return nil, &localError{fmt.Errorf("stored device list of %s: %w", user, err)}
	}
	return l, nil
}

// groupIncoming checks content that carries a GroupContext, from account
// from, inside the receiving transaction: the group is known, this
// account and from are members of the head state (docs/protocol.md
// §11.5). The context's epoch is not compared: a member's message sent
// before a change arrived is still theirs. It returns the group's
// conversation key. An error means the content is ignored.
func (c *Client) groupIncoming(ctx context.Context, tx *sql.Tx, a *account, from string, content *wire.Content, now time.Time) (string, error) {
	gc := content.GetGroup()
	if len(gc.GetGroupId()) != GroupIDSize || len(gc.GetMessageId()) != len(MessageID{}) {
		return "", fmt.Errorf("%w: a group context with a group id of %d bytes and a message id of %d bytes",
			ErrProtocol, len(gc.GetGroupId()), len(gc.GetMessageId()))
	}
	var id GroupID
	copy(id[:], gc.GetGroupId())
	head, err := loadHead(ctx, tx, id)
	if err != nil {
		return "", err
	}
	if head == nil || !head.active(a.Username) || !head.isMember(from) {
		return "", errNotGroupMember
	}
	conv := groupConv(id[:])
	if content.GetText() != nil {
		// A message's id within the group names one message, the first
		// to arrive with it: a member who reuses another's id (or their
		// own) must not add a second row that edits, deletes, reactions
		// and replies could then find instead of the original.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM history WHERE peer = ? AND message_id = ?`, conv, gc.GetMessageId()).Scan(&n); err != nil {
			return "", &localError{err}
		}
		if n > 0 {
			return "", fmt.Errorf("%w: group message %x is already held", ErrProtocol, gc.GetMessageId())
		}
	}
	return conv, nil
}

// receiveGroupUpdate applies a GroupUpdate sent by k (another account or
// one of this account's devices) inside the receiving transaction. The
// state must be signed by the sender; a state that is invalid, old, or
// loses to the one held is ignored without error (an error drops the
// message, which changes nothing either).
func (c *Client) receiveGroupUpdate(ctx context.Context, tx *sql.Tx, a *account, k deviceKey, id MessageID, content *wire.Content, now time.Time) ([]Event, []int64, error) {
	g, err := parseGroupState(content.GetGroupUpdate().GetState())
	if err != nil {
		return nil, nil, err
	}
	if g.signer() != k.user {
		return nil, nil, badState("relayed by %s, signed by %s", k.user, g.signer())
	}
	list, err := signerList(ctx, tx, g.signer())
	if err != nil {
		return nil, nil, err
	}
	if err := g.verifySignature(list); err != nil {
		return nil, nil, err
	}
	evs, err := c.acceptGroupState(ctx, tx, a, g, now)
	for _, e := range evs {
		e.ID = id
	}
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = e
	}
	return out, nil, err
}

// acceptGroupState applies g, whose signature is verified, to what this
// device holds (docs/protocol.md §11.3–11.4) and returns what changed.
func (c *Client) acceptGroupState(ctx context.Context, tx *sql.Tx, a *account, g *groupState, now time.Time) ([]*GroupEvent, error) {
	head, err := loadHead(ctx, tx, g.id)
	if err != nil {
		return nil, err
	}
	if head == nil {
		// A group new to this device: this account must be in it, and
		// it starts the group or comes from an admin of it (a new member
		// has no earlier state to check it against).
		if !g.isMember(a.Username) {
			return nil, fmt.Errorf("%w: %v", errIgnored, errNotGroupMember)
		}
		if g.st.GetEpoch() == 1 {
			if err := checkGenesis(g); err != nil {
				return nil, err
			}
		} else if !g.isAdmin(g.signer()) {
			return nil, badState("%s, not an admin, cannot add %s", g.signer(), a.Username)
		}
		if err := storeHead(ctx, tx, a.Username, g, now); err != nil {
			return nil, err
		}
		return []*GroupEvent{groupEvent(nil, g, a.Username, now)}, nil
	}
	epoch, held := g.st.GetEpoch(), head.st.GetEpoch()
	switch {
	case epoch == held+1 && bytes.Equal(g.st.GetPrevious(), head.hash[:]):
		if err := checkSuccessor(head, g); err != nil {
			return nil, err
		}
		if err := storeHead(ctx, tx, a.Username, g, now); err != nil {
			return nil, err
		}
		evs := []*GroupEvent{groupEvent(head, g, a.Username, now)}
		return c.applyPending(ctx, tx, a, g, evs, now)
	case epoch > held:
		// Something in between is still on its way.
		return nil, holdPending(ctx, tx, head, g, now)
	}
	return c.resolveFork(ctx, tx, a, head, g, now)
}

// resolveFork handles a state g at an epoch this device already holds:
// a replay or copy of one held (ignored), or a competing change made at
// the same time as the one held (docs/protocol.md §11.4). If g wins, it
// replaces the held state and everything after it; a change this device
// made that was lost that way is made again on top of g.
func (c *Client) resolveFork(ctx context.Context, tx *sql.Tx, a *account, head, g *groupState, now time.Time) ([]*GroupEvent, error) {
	epoch := g.st.GetEpoch()
	if epoch == 1 || head.st.GetEpoch()-epoch >= maxForkDepth {
		return nil, nil
	}
	held, err := loadStateAt(ctx, tx, g.id, epoch)
	if err != nil || held == nil || held.hash == g.hash || !bytes.Equal(held.st.GetPrevious(), g.st.GetPrevious()) {
		return nil, err
	}
	parent, err := loadStateAt(ctx, tx, g.id, epoch-1)
	if err != nil || parent == nil {
		return nil, err
	}
	if err := checkSuccessor(parent, g); err != nil {
		return nil, err
	}
	if !preferred(parent, held, g) {
		return nil, nil
	}
	// The branch g would replace: held and what followed it. If a later
	// state in it took g's signer's admin role away, g loses whatever
	// the rule above says: a removed admin must not undo the removal by
	// signing, afterwards, a state that competes with an earlier epoch.
	var lost []*groupState
	for e := epoch; e <= head.st.GetEpoch(); e++ {
		s, err := loadStateAt(ctx, tx, g.id, e)
		if err != nil {
			return nil, err
		}
		if s != nil {
			lost = append(lost, s)
			if e > epoch && !s.isAdmin(g.signer()) {
				return nil, nil
			}
		}
	}
	if err := storeHead(ctx, tx, a.Username, g, now); err != nil {
		return nil, err
	}
	evs := []*GroupEvent{groupEvent(head, g, a.Username, now)}
	evs, err = c.applyPending(ctx, tx, a, g, evs, now)
	if err != nil {
		return nil, err
	}
	again, err := c.reapply(ctx, tx, a, parent, lost, now)
	if err != nil || again == nil {
		return evs, err
	}
	return append(evs, again), nil
}

// reapply makes again, on top of the current head, the changes this
// device made in the lost branch (each state compared with the one
// before it, starting at parent), if they still change anything and this
// account may still make them.
func (c *Client) reapply(ctx context.Context, tx *sql.Tx, a *account, parent *groupState, lost []*groupState, now time.Time) (*GroupEvent, error) {
	head, err := loadHead(ctx, tx, parent.id)
	if err != nil {
		return nil, err
	}
	members, admins, name := slices.Clone(head.st.GetMembers()), slices.Clone(head.st.GetAdmins()), head.st.GetName()
	prev := parent
	mine := false
	for _, s := range lost {
		if s.signer() == a.Username && s.signed.GetSignerDevice() == a.DeviceID {
			mine = true
			added, removed := diff(prev.st.GetMembers(), s.st.GetMembers())
			members = sortedSet(append(slices.DeleteFunc(members, func(m string) bool { return slices.Contains(removed, m) }), added...))
			added, removed = diff(prev.st.GetAdmins(), s.st.GetAdmins())
			admins = sortedSet(append(slices.DeleteFunc(admins, func(m string) bool { return slices.Contains(removed, m) }), added...))
			if s.st.GetName() != prev.st.GetName() {
				name = s.st.GetName()
			}
		}
		prev = s
	}
	admins = slices.DeleteFunc(admins, func(m string) bool { return !slices.Contains(members, m) })
	if !mine || len(members) == 0 || len(admins) == 0 ||
		slices.Equal(members, head.st.GetMembers()) && slices.Equal(admins, head.st.GetAdmins()) && name == head.st.GetName() {
		return nil, nil
	}
	next, err := c.nextState(a, head, name, members, admins, now)
	if err != nil {
		return nil, err
	}
	if checkSuccessor(head, next) != nil {
		return nil, nil // this account may no longer make that change
	}
	if err := storeHead(ctx, tx, a.Username, next, now); err != nil {
		return nil, err
	}
	if err := queueGroupUpdate(ctx, tx, a, head, next, now); err != nil {
		return nil, err
	}
	return groupEvent(head, next, a.Username, now), nil
}

// holdPending keeps g, signed by a member of head, until the states
// between head and it arrive. Only a member's states are held, at most
// maxPendingPerSigner each and no further ahead than maxPendingStates
// epochs, so nobody can fill the place the states on their way need, or
// hold it for ever with an epoch the group never reaches.
func holdPending(ctx context.Context, tx *sql.Tx, head, g *groupState, now time.Time) error {
	if !head.isMember(g.signer()) {
		return badState("%s, not a member at epoch %d, sent a state for epoch %d", g.signer(), head.st.GetEpoch(), g.st.GetEpoch())
	}
	if g.st.GetEpoch()-head.st.GetEpoch() > maxPendingStates {
		return badState("epoch %d is too far ahead of epoch %d", g.st.GetEpoch(), head.st.GetEpoch())
	}
	raws, err := pendingAt(ctx, tx, g.id, 0)
	if err != nil {
		return err
	}
	mine := 0
	for _, raw := range raws {
		if s, err := parseSignedGroupState(raw); err == nil && s.signer() == g.signer() {
			mine++
		}
	}
	if len(raws) >= maxPendingStates || mine >= maxPendingPerSigner {
		return badState("too many states of group %s wait for earlier ones", g.id)
	}
	enc, err := g.encode()
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO group_pending (group_id, hash, epoch, signed, received_ms) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, g.id[:], g.hash[:], g.st.GetEpoch(), enc, now.UnixMilli()); err != nil {
		return &localError{err}
	}
	return nil
}

// applyPending applies held states that now follow the head, in order.
func (c *Client) applyPending(ctx context.Context, tx *sql.Tx, a *account, head *groupState, evs []*GroupEvent, now time.Time) ([]*GroupEvent, error) {
	for range maxPendingStates {
		raws, err := pendingAt(ctx, tx, head.id, head.st.GetEpoch()+1)
		if err != nil {
			return nil, err
		}
		var next *groupState
		for _, raw := range raws {
			// Verified when held; a held state that does not follow the
			// head is left for the pending bound to retire.
			if s, err := parseSignedGroupState(raw); err == nil && checkSuccessor(head, s) == nil {
				next = s
				break
			}
		}
		if next == nil {
			return evs, nil
		}
		if err := storeHead(ctx, tx, a.Username, next, now); err != nil {
			return nil, err
		}
		evs = append(evs, groupEvent(head, next, a.Username, now))
		head = next
	}
	return evs, nil
}

// pendingAt returns the states of group id held until earlier ones
// arrive: those for epoch, or all of them if epoch is 0.
func pendingAt(ctx context.Context, tx *sql.Tx, id GroupID, epoch uint64) ([][]byte, error) {
	rs, err := tx.QueryContext(ctx, `SELECT signed FROM group_pending WHERE group_id = ? AND (? = 0 OR epoch = ?)`, id[:], epoch, epoch)
	if err != nil {
		return nil, &localError{err}
	}
	defer rs.Close()
	var raws [][]byte
	for rs.Next() {
		var raw []byte
		if err := rs.Scan(&raw); err != nil {
			return nil, &localError{err}
		}
		raws = append(raws, raw)
	}
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	return raws, nil
}

// groupEvent describes the step from prev (nil: none) to next.
func groupEvent(prev, next *groupState, self string, now time.Time) *GroupEvent {
	e := &GroupEvent{Group: next.id, Name: next.st.GetName(), Epoch: next.st.GetEpoch(), By: next.signer(), Received: now}
	switch {
	case !next.isMember(self):
		e.Change = GroupLeft
	case prev == nil || !prev.isMember(self):
		e.Change = GroupJoined
	default:
		e.Change = GroupUpdated
	}
	if prev != nil {
		e.Added, e.Removed = diff(prev.st.GetMembers(), next.st.GetMembers())
	} else {
		e.Added = slices.Clone(next.st.GetMembers())
	}
	return e
}

// nextState signs the state that follows head with the given content.
func (c *Client) nextState(a *account, head *groupState, name string, members, admins []string, now time.Time) (*groupState, error) {
	return signGroupState(a, &wire.GroupState{
		GroupId: head.id[:], Name: name, Members: members, Admins: admins,
		Epoch: head.st.GetEpoch() + 1, ChangedMs: now.UnixMilli(), Previous: head.hash[:],
	})
}

// queueGroupUpdate puts next into the outbox for every member of prev
// and next but this account, and for this account's other devices. The
// members of prev go first, so everyone already in the group has the new
// state stored before a new member, who may write at once, has it.
func queueGroupUpdate(ctx context.Context, tx *sql.Tx, a *account, prev, next *groupState, now time.Time) error {
	content, err := marshalPadded(&wire.Content{SentMs: now.UnixMilli(), Body: &wire.Content_GroupUpdate{GroupUpdate: &wire.GroupUpdate{State: next.signed}}})
	if err != nil {
		return err
	}
	var to []string
	if prev != nil {
		to = append(to, prev.st.GetMembers()...)
	}
	for _, m := range next.st.GetMembers() {
		if prev == nil || !prev.isMember(m) {
			to = append(to, m)
		}
	}
	to = slices.DeleteFunc(to, func(m string) bool { return m == a.Username })
	for _, u := range append(to, a.Username) {
		mid := newMessageID()
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms) VALUES (?, ?, ?, ?)`,
			mid[:], u, content, now.UnixMilli()); err != nil {
			return &localError{err}
		}
	}
	return nil
}

// queueGroup puts content into the outbox, inside the sender's
// transaction, for every other member of group conv (one row each, with
// its own envelope id) and, as a sync copy, for this account's other
// devices (docs/protocol.md §11.6). It sets content's GroupContext: the
// group, the head's epoch and id, the message's id within the group.
func (c *Client) queueGroup(ctx context.Context, tx *sql.Tx, a *account, conv string, id MessageID, content *wire.Content) error {
	gid, err := parseGroupConv(conv)
	if err != nil {
		return err
	}
	head, err := loadHead(ctx, tx, gid)
	if err != nil {
		return err
	}
	if head == nil {
		return fmt.Errorf("no group %s", gid)
	}
	if !head.active(a.Username) {
		return fmt.Errorf("you are no longer a member of the group %q", head.st.GetName())
	}
	content.Group = &wire.GroupContext{GroupId: gid[:], Epoch: head.st.GetEpoch(), MessageId: id[:]}
	// Members may seal what they write back (client/sealed.go); a member
	// who is a stranger learns no more than the group already tells them.
	var token []byte
	if err := tx.QueryRowContext(ctx, `SELECT token FROM sealed_state WHERE id = 1`).Scan(&token); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return &localError{err}
	}
	if len(token) == DeliveryTokenSize && content.SenderDeliveryToken == nil {
		content.SenderDeliveryToken = token
	}
	sent := content.GetSentMs()
	enc, err := marshalPadded(content)
	if err != nil {
		return err
	}
	for _, m := range head.st.GetMembers() {
		if m == a.Username {
			continue
		}
		mid := newMessageID()
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms, group_of) VALUES (?, ?, ?, ?, ?)`,
			mid[:], m, enc, sent, id[:]); err != nil {
			return &localError{err}
		}
	}
	inner := proto.Clone(content).(*wire.Content)
	inner.SenderDeliveryToken, inner.Padding = nil, nil
	syncCopy, err := marshalPadded(&wire.Content{SentMs: sent, Body: &wire.Content_SyncSent{SyncSent: &wire.SyncSent{
		To: conv, MessageId: id[:], Content: inner,
	}}})
	if err != nil {
		return err
	}
	sid := newMessageID()
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (message_id, recipient, content, created_ms, sync_of, group_of) VALUES (?, ?, ?, ?, ?, ?)`,
		sid[:], a.Username, syncCopy, sent, id[:], id[:]); err != nil {
		return &localError{err}
	}
	return nil
}

// newGroupID draws a random group id.
func newGroupID() GroupID {
	var id GroupID
	rand.Read(id[:])
	return id
}
