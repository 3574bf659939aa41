package client

// The group operations an application calls (docs/protocol.md §11):
// create, add, remove, leave, list and look up.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/wire"
)

// CreateGroup makes a group named name with this account as its only
// admin and members as the other members, and sends its first state to
// each of them and to this account's other devices. Every member must be
// an existing account. If the server cannot be reached after the group
// is made, the error is a *QueuedError and the states go out later.
func (c *Client) CreateGroup(ctx context.Context, name string, members []string) (GroupID, error) {
	a, err := c.account()
	if err != nil {
		return GroupID{}, err
	}
	if err := checkGroupName(name); err != nil {
		return GroupID{}, err
	}
	others, err := c.checkMembers(ctx, a, members)
	if err != nil {
		return GroupID{}, err
	}
	if len(others)+1 > MaxGroupMembers {
		return GroupID{}, fmt.Errorf("a group has at most %d members", MaxGroupMembers)
	}
	id := newGroupID()
	now := c.now()
	g, err := signGroupState(a, &wire.GroupState{
		GroupId: id[:], Name: name, Members: sortedSet(append(others, a.Username)), Admins: []string{a.Username},
		Epoch: 1, ChangedMs: now.UnixMilli(),
	})
	if err != nil {
		return GroupID{}, err
	}
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		if err := storeHead(ctx, tx, a.Username, g, now); err != nil {
			return err
		}
		return queueGroupUpdate(ctx, tx, a, nil, g, now)
	})
	if err != nil {
		return GroupID{}, err
	}
	return id, c.flushGroup(ctx)
}

// AddGroupMembers adds users to group id (admins only) and sends the new
// state to every member, the new ones last.
func (c *Client) AddGroupMembers(ctx context.Context, id GroupID, users []string) error {
	a, err := c.account()
	if err != nil {
		return err
	}
	add, err := c.checkMembers(ctx, a, users)
	if err != nil {
		return err
	}
	return c.changeGroup(ctx, a, id, func(head *groupState) ([]string, []string, error) {
		if !head.isAdmin(a.Username) {
			return nil, nil, fmt.Errorf("only an admin of %q can add members; its admins are %s", head.st.GetName(), strings.Join(head.st.GetAdmins(), ", "))
		}
		for _, u := range add {
			if head.isMember(u) {
				return nil, nil, fmt.Errorf("%s is already a member of %q", u, head.st.GetName())
			}
		}
		members := sortedSet(append(slices.Clone(head.st.GetMembers()), add...))
		if len(members) > MaxGroupMembers {
			return nil, nil, fmt.Errorf("a group has at most %d members", MaxGroupMembers)
		}
		return members, head.st.GetAdmins(), nil
	})
}

// RemoveGroupMembers removes users from group id (admins only). Every
// member, the removed ones included (so their clients know), gets the new
// state; the removed ones get nothing from the group afterwards.
func (c *Client) RemoveGroupMembers(ctx context.Context, id GroupID, users []string) error {
	a, err := c.account()
	if err != nil {
		return err
	}
	var gone []string
	for _, u := range users {
		n, err := identity.NormalizeUsername(u)
		if err != nil {
			return err
		}
		if n == a.Username {
			return errors.New("to remove yourself, leave the group")
		}
		gone = append(gone, n)
	}
	if len(gone) == 0 {
		return errors.New("name at least one member to remove")
	}
	return c.changeGroup(ctx, a, id, func(head *groupState) ([]string, []string, error) {
		if !head.isAdmin(a.Username) {
			return nil, nil, fmt.Errorf("only an admin of %q can remove members; its admins are %s", head.st.GetName(), strings.Join(head.st.GetAdmins(), ", "))
		}
		for _, u := range gone {
			if !head.isMember(u) {
				return nil, nil, fmt.Errorf("%s is not a member of %q", u, head.st.GetName())
			}
		}
		out := func(m string) bool { return slices.Contains(gone, m) }
		return slices.DeleteFunc(slices.Clone(head.st.GetMembers()), out), slices.DeleteFunc(slices.Clone(head.st.GetAdmins()), out), nil
	})
}

// LeaveGroup takes this account out of group id. A member who is not an
// admin signs a state that only removes themselves (docs/protocol.md
// §11.3); an admin who is the last one hands the role to the remaining
// member first in name order. The group stays listed, inactive.
func (c *Client) LeaveGroup(ctx context.Context, id GroupID) error {
	a, err := c.account()
	if err != nil {
		return err
	}
	return c.changeGroup(ctx, a, id, func(head *groupState) ([]string, []string, error) {
		notMe := func(m string) bool { return m == a.Username }
		members := slices.DeleteFunc(slices.Clone(head.st.GetMembers()), notMe)
		admins := slices.DeleteFunc(slices.Clone(head.st.GetAdmins()), notMe)
		if len(admins) == 0 && len(members) > 0 {
			admins = members[:1:1]
		}
		return members, admins, nil
	})
}

// changeGroup signs and sends the state that follows group id's head with
// the members and admins change returns. The last member leaving signs
// nothing (no state may be empty): the group turns inactive here, and the
// account's other devices are sent the head it left as a sync copy
// (receiveLastLeave).
func (c *Client) changeGroup(ctx context.Context, a *account, id GroupID, change func(head *groupState) (members, admins []string, err error)) error {
	now := c.now()
	err := inTx(ctx, c.db, func(tx *sql.Tx) error {
		head, err := loadHead(ctx, tx, id)
		if err != nil {
			return err
		}
		if head == nil {
			return fmt.Errorf("no group %s", id)
		}
		if !head.active(a.Username) {
			return fmt.Errorf("you are no longer a member of %q", head.st.GetName())
		}
		members, admins, err := change(head)
		if err != nil {
			return err
		}
		if len(members) == 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE groups SET member = 0, updated_ms = ? WHERE group_id = ?`, now.UnixMilli(), id[:]); err != nil {
				return &localError{err}
			}
			return queueOwnSync(ctx, tx, a, groupConv(id[:]), &wire.Content{SentMs: now.UnixMilli(),
				Body: &wire.Content_GroupUpdate{GroupUpdate: &wire.GroupUpdate{State: head.signed}}})
		}
		next, err := c.nextState(a, head, head.st.GetName(), members, admins, now)
		if err != nil {
			return err
		}
		if err := checkSuccessor(head, next); err != nil {
			return err
		}
		if err := storeHead(ctx, tx, a.Username, next, now); err != nil {
			return err
		}
		return queueGroupUpdate(ctx, tx, a, head, next, now)
	})
	if err != nil {
		return err
	}
	return c.flushGroup(ctx)
}

// checkMembers normalizes users, leaves out this account and duplicates,
// and checks each is an account whose key this device trusts.
func (c *Client) checkMembers(ctx context.Context, a *account, users []string) ([]string, error) {
	var out []string
	for _, u := range users {
		n, err := identity.NormalizeUsername(u)
		if err != nil {
			return nil, err
		}
		if n != a.Username {
			out = append(out, n)
		}
	}
	out = sortedSet(out)
	if len(out) == 0 && len(users) > 0 {
		return nil, errors.New("name at least one member besides yourself")
	}
	for _, u := range out {
		if err := c.CheckUser(ctx, u); err != nil {
			return nil, err
		}
		if err := c.checkKeyTrusted(ctx, u); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// flushGroup delivers the outbox after a group change. A state that
// could not go out yet stays queued: *QueuedError.
func (c *Client) flushGroup(ctx context.Context) error {
	rep := c.flush(ctx)
	for _, f := range rep.Failed {
		c.cfg.Warn(fmt.Errorf("message to %s could not be delivered and was dropped from the outbox: %w", f.To, f.Err))
	}
	if rep.Pending > 0 {
		return &QueuedError{Err: rep.Err}
	}
	return nil
}

// Groups lists the groups this device knows, by name, inactive ones too.
func (c *Client) Groups(ctx context.Context) ([]Group, error) {
	a, err := c.account()
	if err != nil {
		return nil, err
	}
	rs, err := c.db.QueryContext(ctx, `SELECT s.signed, g.member FROM groups g JOIN group_states s ON s.group_id = g.group_id AND s.epoch = g.epoch
		ORDER BY g.name, g.group_id`)
	if err != nil {
		return nil, &localError{err}
	}
	defer rs.Close()
	var out []Group
	for rs.Next() {
		var raw []byte
		var member int
		if err := rs.Scan(&raw, &member); err != nil {
			return nil, &localError{err}
		}
		g, err := parseSignedGroupState(raw)
		if err != nil {
			return nil, &localError{fmt.Errorf("a stored group state: %w", err)}
		}
		g.left = member == 0
		out = append(out, g.public(a.Username))
	}
	if err := rs.Err(); err != nil {
		return nil, &localError{err}
	}
	return out, nil
}

// ErrNoGroup: FindGroup knows no group by that id or name.
var ErrNoGroup = errors.New("no group")

// FindGroup returns the group named by ref: its id in hex, or a name
// that exactly one known group has (active groups first: a name shared
// with only inactive ones still finds the active one).
func (c *Client) FindGroup(ctx context.Context, ref string) (Group, error) {
	gs, err := c.Groups(ctx)
	if err != nil {
		return Group{}, err
	}
	if id, err := ParseGroupID(ref); err == nil {
		for _, g := range gs {
			if g.ID == id {
				return g, nil
			}
		}
	}
	var named, active []Group
	for _, g := range gs {
		if g.Name == ref {
			named = append(named, g)
			if g.Active {
				active = append(active, g)
			}
		}
	}
	switch {
	case len(named) == 1:
		return named[0], nil
	case len(active) == 1:
		return active[0], nil
	case len(named) == 0:
		return Group{}, fmt.Errorf("%w named %q (see hush group list)", ErrNoGroup, ref)
	}
	var ids []string
	for _, g := range named {
		ids = append(ids, g.ID.String())
	}
	return Group{}, fmt.Errorf("%d groups are named %q; give the id instead: %s", len(named), ref, strings.Join(ids, ", "))
}

// GroupName returns the name of group id, "" if it is unknown.
func (c *Client) GroupName(ctx context.Context, id GroupID) (string, error) {
	var name string
	err := c.db.QueryRowContext(ctx, `SELECT name FROM groups WHERE group_id = ?`, id[:]).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", &localError{err}
	}
	return name, nil
}

// receiveLastLeave applies, inside the receiving transaction, the sync
// copy another device of this account sent when it left group conv as
// its last member: the head it left, whoever signed it. The state is
// verified and taken like any other (a device that lags catches up to
// it); if it is then the head and this account its only member, the
// group turns inactive here too. A head that moved on since (another
// own device added members meanwhile) stands.
func (c *Client) receiveLastLeave(ctx context.Context, tx *sql.Tx, a *account, id MessageID, conv string, content *wire.Content, now time.Time) ([]Event, []int64, error) {
	g, err := parseGroupState(content.GetGroupUpdate().GetState())
	if err != nil {
		return nil, nil, err
	}
	if groupConv(g.id[:]) != conv || !slices.Equal(g.st.GetMembers(), []string{a.Username}) {
		return nil, nil, badState("a sync copy of a state of %s that this account was not left alone in", conv)
	}
	list, err := signerList(ctx, tx, g.signer())
	if err != nil {
		return nil, nil, err
	}
	if err := g.verifySignature(list); err != nil {
		return nil, nil, err
	}
	gevs, err := c.acceptGroupState(ctx, tx, a, g, now)
	if err != nil && !errors.Is(err, errIgnored) {
		return nil, nil, err
	}
	var evs []Event
	for _, e := range gevs {
		e.ID = id
		evs = append(evs, e)
	}
	head, err := loadHead(ctx, tx, g.id)
	if err != nil || head == nil || head.hash != g.hash {
		return evs, nil, err
	}
	res, err := tx.ExecContext(ctx, `UPDATE groups SET member = 0, updated_ms = ? WHERE group_id = ? AND member = 1`, now.UnixMilli(), g.id[:])
	if err != nil {
		return nil, nil, &localError{err}
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, nil, &localError{err}
	} else if n > 0 {
		evs = append(evs, &GroupEvent{ID: id, Group: g.id, Name: g.st.GetName(), Epoch: g.st.GetEpoch(), By: a.Username,
			Change: GroupLeft, Removed: []string{a.Username}, Received: now})
	}
	return evs, nil, nil
}
