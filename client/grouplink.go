package client

// Groups in a link payload (docs/protocol.md §11.8): a device linked
// after a group was made learns it from the approving device, which
// sends the chain of signed states it holds for each group.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// maxLinkGroups bounds the group states carried in a link payload. Every
// group's head goes first; older states (needed only to settle a
// concurrent change, §11.4) fill what room is left.
const maxLinkGroups = 1 << 20

// linkGroups returns the groups this device knows for a link payload:
// per group the newest contiguous run of held states, oldest first,
// ending at the head. Active groups come first should the heads alone
// not fit.
func (c *Client) linkGroups(ctx context.Context) ([]*wire.LinkedGroup, int, error) {
	rs, err := c.db.QueryContext(ctx, `SELECT g.group_id, s.signed FROM groups g JOIN group_states s ON s.group_id = g.group_id
		ORDER BY g.member DESC, g.group_id, s.epoch DESC`)
	if err != nil {
		return nil, 0, &localError{err}
	}
	defer rs.Close()
	type chain struct {
		id     string
		states []*wire.SignedGroupState // newest first
	}
	var chains []*chain
	for rs.Next() {
		var id, raw []byte
		if err := rs.Scan(&id, &raw); err != nil {
			return nil, 0, &localError{err}
		}
		var s wire.SignedGroupState
		if err := proto.Unmarshal(raw, &s); err != nil {
			return nil, 0, &localError{fmt.Errorf("a stored group state: %w", err)}
		}
		if len(chains) == 0 || chains[len(chains)-1].id != string(id) {
			chains = append(chains, &chain{id: string(id)})
		}
		ch := chains[len(chains)-1]
		ch.states = append(ch.states, &s)
	}
	if err := rs.Err(); err != nil {
		return nil, 0, &localError{err}
	}
	// Heads first, then one older state per group per round, as long as
	// they fit; a run that was cut short takes no older states (they
	// would leave a gap).
	runs := make([]*wire.LinkedGroup, len(chains))
	size := 0
	for depth := 0; depth <= maxForkDepth; depth++ {
		for i, ch := range chains {
			if depth >= len(ch.states) || depth > 0 && (runs[i] == nil || len(runs[i].States) != depth) {
				continue
			}
			n := proto.Size(ch.states[depth]) + 8
			if size+n > maxLinkGroups {
				continue
			}
			if runs[i] == nil {
				runs[i] = &wire.LinkedGroup{}
			}
			size += n
			runs[i].States = append(runs[i].States, ch.states[depth])
		}
	}
	var out []*wire.LinkedGroup
	for _, g := range runs {
		if g == nil {
			continue
		}
		slices.Reverse(g.States)
		out = append(out, g)
	}
	return out, size, nil
}

// parseLinkedGroups checks the groups of a link payload. The new device
// takes them on the approving device's word, as it takes the contacts
// and their trust, but each run must be well formed: one group, at most
// as many states as a device keeps, each following the one before.
func parseLinkedGroups(gs []*wire.LinkedGroup) ([][]*groupState, error) {
	seen := map[GroupID]bool{}
	var out [][]*groupState
	for i, lg := range gs {
		if n := len(lg.GetStates()); n == 0 || n > maxForkDepth+1 {
			return nil, fmt.Errorf("group %d: %d states", i, n)
		}
		var run []*groupState
		for _, s := range lg.GetStates() {
			g, err := parseGroupState(s)
			if err != nil {
				return nil, fmt.Errorf("group %d: %w", i, err)
			}
			if len(run) > 0 {
				if err := checkSuccessor(run[len(run)-1], g); err != nil {
					return nil, fmt.Errorf("group %d: %w", i, err)
				}
			} else if g.st.GetEpoch() == 1 {
				if err := checkGenesis(g); err != nil {
					return nil, fmt.Errorf("group %d: %w", i, err)
				}
			}
			run = append(run, g)
		}
		if seen[run[0].id] {
			return nil, fmt.Errorf("group %s twice", run[0].id)
		}
		seen[run[0].id] = true
		out = append(out, run)
	}
	return out, nil
}

// storeLinkedGroups stores the runs parseLinkedGroups returned.
func storeLinkedGroups(ctx context.Context, tx *sql.Tx, self string, runs [][]*groupState, now time.Time) error {
	for _, run := range runs {
		for _, g := range run {
			if err := storeHead(ctx, tx, self, g, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// linkedGroupConv reports whether conv is the conversation of one of the
// groups in runs.
func linkedGroupConv(runs [][]*groupState, conv string) error {
	id, err := parseGroupConv(conv)
	if err != nil {
		return err
	}
	for _, run := range runs {
		if run[0].id == id {
			return nil
		}
	}
	return errors.New("a group the payload does not carry")
}
