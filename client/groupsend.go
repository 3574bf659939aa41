package client

// A group message's copies go out together (docs/protocol.md §11.6):
// one transaction encrypts every member's copy, the submissions are
// pipelined over the connection (the server stores a connection's sends
// in the order they arrive, committing those that queue up together),
// and one transaction takes the stored ones out of the outbox. Whatever
// this leaves — a member without a session yet, a changed device list,
// a refusal — the ordinary one-by-one delivery (client/send.go) handles.

import (
	"context"
	"database/sql"
	"sync"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/wire"
)

// maxPipelined bounds the submissions of one group run in flight.
const maxPipelined = 64

// groupJob is one outbox row of a group run.
type groupJob struct {
	row    outboxRow
	list   *identity.SignedDeviceList
	copies []*wire.Copy
	stored bool
}

// deliverGroupRun delivers together the rows at the head of rows that are
// copies of group messages, to distinct recipients (so each recipient's
// messages keep their order whatever the order of the answers), and
// returns the ids the server stored. Any error leaves the rows to the
// one-by-one path.
func (c *Client) deliverGroupRun(ctx context.Context, cn *conn, a *account, rows []outboxRow) map[MessageID]bool {
	run, err := c.groupRun(ctx, rows)
	if err != nil || len(run) < 2 {
		return nil
	}
	var jobs []*groupJob
	for _, row := range run {
		list, err := c.deliveryList(ctx, cn, a, row, false)
		if err != nil {
			continue
		}
		ready := true
		for _, d := range list.List.Devices {
			rec, err := loadRecord(ctx, c.db, row.to, d.ID)
			if err != nil || !sessionMatches(rec, d) {
				ready = false // a session to start: one by one
				break
			}
		}
		if ready {
			jobs = append(jobs, &groupJob{row: row, list: list})
		}
	}
	if len(jobs) < 2 {
		return nil
	}
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		for _, j := range jobs {
			if err := c.encryptCopies(ctx, tx, a, j.row, j.list, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil
	}
	for _, j := range jobs {
		have, err := c.copies(ctx, j.row.id)
		if err != nil {
			return nil
		}
		for _, d := range j.list.List.Devices {
			ct, ok := have[d.ID]
			if !ok {
				return nil
			}
			j.copies = append(j.copies, &wire.Copy{DeviceId: d.ID, Content: ct})
		}
	}
	// A sealed copy needs the sender certificate: fetch it (if it is due)
	// once, not in every submission at the same time.
	for _, j := range jobs {
		if token, err := c.deliveryToken(ctx, a, j.row.to); err != nil || token != nil {
			if _, err := c.senderCertificate(ctx, cn, a); err != nil {
				return nil
			}
			break
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxPipelined)
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r, err := c.submit(ctx, cn, a, j.row.id, j.row.to, j.copies, j.list)
			j.stored = err == nil && r.GetSent().GetStored()
		}()
	}
	wg.Wait()
	stored := map[MessageID]bool{}
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		for _, j := range jobs {
			if !j.stored {
				continue
			}
			// As finishOutgoing does, but no history row has a group
			// copy's envelope id: the last copy to leave marks the
			// message sent (the outbox_group_done trigger).
			if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE message_id = ?`, j.row.id[:]); err != nil {
				return &localError{err}
			}
			stored[j.row.id] = true
		}
		return nil
	})
	if err != nil {
		return nil // stored by the server: the one-by-one path resends, and the server drops the duplicates
	}
	return stored
}

// groupRun returns the rows at the head of rows that belong to a group
// message, up to the first that does not or whose recipient repeats.
func (c *Client) groupRun(ctx context.Context, rows []outboxRow) ([]outboxRow, error) {
	seen := map[string]bool{}
	for i, row := range rows {
		var groupOf []byte
		if err := c.db.QueryRowContext(ctx, `SELECT group_of FROM outbox WHERE message_id = ?`, row.id[:]).Scan(&groupOf); err != nil {
			return nil, &localError{err}
		}
		if groupOf == nil || seen[row.to] {
			return rows[:i], nil
		}
		seen[row.to] = true
	}
	return rows, nil
}
