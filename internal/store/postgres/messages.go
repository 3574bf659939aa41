package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hush-chat/hush/internal/store"
)

// Message seqs and why Pending(after) never skips a message.
//
// The server reads a device's queue page by page, Pending(after = the last
// seq it pushed), and again each time it is woken for new mail. That is
// only safe if no message can become visible with a seq at or below one
// the reader has already passed. With a plain sequence that is not true
// under concurrency: transaction A takes seq 10, B takes 11, B commits,
// the reader sees 11 and moves on to after=11, then A commits 10, and the
// reader never sees it (until the device reconnects and starts from 0).
//
// Enqueue therefore takes seqs for a device only while holding that
// device's row lock (SELECT … FOR NO KEY UPDATE on devices, released at
// commit). For two messages m1, m2 to one device where m2 commits after
// m1: m2's transaction got the lock only after m1's committed, so it drew
// its seq from the sequence later, and the sequence (uncached, see the
// migration) returns larger values later: seq(m2) > seq(m1). Per device,
// seq order is commit order, so a reader whose snapshot saw seq N will
// only ever see newer messages above N. Seqs still come from one
// store-wide sequence, so they stay unique in the store and increase
// from one call to the next, as package store promises.
//
// The lock is per device, so senders to different devices never wait for
// each other; NO KEY UPDATE does not block the key-share locks that
// foreign-key checks take, so uploads and other inserts for the device
// proceed too. A batch locks its devices in (username, device_id) order,
// so two batches to overlapping devices do not deadlock (and if a database
// locks in another order, the deadlock or serialization error is retried).
//
// devices.last_seq records the highest seq stored for the device, and
// Enqueue checks every new seq is above it. That cannot fail when the
// sequence behaves as above; it turns a misconfigured one (YugabyteDB
// caches sequence values per connection unless ysql_sequence_cache_minval
// is 1) into an error instead of a silently skipped message.

const (
	// sqlLockDevices locks the batch's recipient devices in key order and
	// returns their seq high-water marks; a device missing from the result
	// does not exist.
	sqlLockDevices = `SELECT d.username, d.device_id, d.last_seq FROM devices d
		WHERE (d.username, d.device_id) IN (SELECT r.u, r.i FROM unnest($1::TEXT[], $2::BIGINT[]) AS r (u, i))
		ORDER BY d.username, d.device_id
		FOR NO KEY UPDATE OF d`
	sqlInsertMessage = `INSERT INTO messages
		(username, device_id, message_id, sender, sender_device, content, received_ms, expires_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (username, device_id, message_id) DO NOTHING
		RETURNING seq`
	sqlSetLastSeq = `UPDATE devices SET last_seq = r.s
		FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS r (u, i, s)
		WHERE devices.username = r.u AND devices.device_id = r.i`
	messageCols      = "seq, message_id, sender, sender_device, content, received_ms, expires_ms"
	sqlStoredMessage = "SELECT " + messageCols +
		" FROM messages WHERE username = $1 AND device_id = $2 AND message_id = $3"
	sqlPending = "SELECT " + messageCols + ` FROM messages
		WHERE username = $1 AND device_id = $2 AND seq > $3 AND expires_ms >= $4
		ORDER BY seq LIMIT $5`
)

// Enqueue stores all copies in one transaction, or none: a copy for a
// device that does not exist fails the whole batch with ErrNotFound.
// Duplicates of a stored (recipient, message id) are skipped and come back
// as stored, with their original Seq.
func (s *Store) Enqueue(ctx context.Context, msgs []store.Message) ([]store.Message, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	for _, m := range msgs {
		if len(m.MessageID) == 0 {
			return nil, fmt.Errorf("postgres: enqueue for %s/%d: empty message id", m.Recipient.Username, m.Recipient.ID)
		}
	}
	refs := recipients(msgs)
	out := make([]store.Message, len(msgs))
	err := s.tx(ctx, func(tx pgx.Tx) error {
		clear(out)
		ins, err := insertCopies(ctx, tx, msgs, refs, out)
		if err != nil {
			return err
		}
		return ins.finish(ctx, tx, msgs, refs, out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// inserted is what insertCopies leaves for finish.
type inserted struct {
	last map[store.DeviceRef]int64 // each device's highest seq now
	grew map[store.DeviceRef]bool  // devices that got a new message
	dups []int                     // indexes of copies already stored
}

// insertCopies locks the recipients and inserts the copies, in one round
// trip: the server runs the statements in order, so the locks are held
// before any seq is drawn. For a missing device the inserts fail on the
// foreign key, but the lock's answer is read first and reported as
// ErrNotFound. New copies are written to out with their seqs.
func insertCopies(ctx context.Context, tx pgx.Tx, msgs []store.Message, refs []store.DeviceRef, out []store.Message) (inserted, error) {
	users := make([]string, len(refs))
	ids := make([]int64, len(refs))
	for i, r := range refs {
		users[i], ids[i] = r.Username, int64(r.ID)
	}
	b := &pgx.Batch{}
	b.Queue(sqlLockDevices, users, ids)
	for _, m := range msgs {
		r := m.Recipient
		b.Queue(sqlInsertMessage, r.Username, r.ID, m.MessageID, m.Sender, m.SenderDevice,
			nonNil(m.Content), ms(m.Received), ms(m.Expires))
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	last, err := lockedDevices(br, refs)
	if err != nil {
		return inserted{}, err
	}
	ins := inserted{last: last, grew: make(map[store.DeviceRef]bool, len(refs))}
	for i, m := range msgs {
		r := m.Recipient
		var seq int64
		err := br.QueryRow().Scan(&seq)
		switch {
		case errors.Is(err, pgx.ErrNoRows): // already stored
			ins.dups = append(ins.dups, i)
			continue
		case err != nil:
			return inserted{}, fmt.Errorf("postgres: enqueue for %s/%d: %w", r.Username, r.ID, err)
		case seq <= last[r]:
			return inserted{}, fmt.Errorf("postgres: enqueue for %s/%d: sequence message_seq gave %d, not above the device's last seq %d; it must not be cached (CACHE 1)",
				r.Username, r.ID, seq, last[r])
		}
		last[r] = seq
		ins.grew[r] = true
		out[i] = m
		out[i].Seq = uint64(seq)
		out[i].Received = fromMS(ms(m.Received))
		out[i].Expires = fromMS(ms(m.Expires))
	}
	if err := br.Close(); err != nil {
		return inserted{}, fmt.Errorf("postgres: enqueue: %w", err)
	}
	return ins, nil
}

// finish records the devices' new high-water marks and reads back the
// copies that were already stored into out, in a second round trip.
func (ins inserted) finish(ctx context.Context, tx pgx.Tx, msgs []store.Message, refs []store.DeviceRef, out []store.Message) error {
	b := &pgx.Batch{}
	var users []string
	var ids, seqs []int64
	for _, r := range refs {
		if ins.grew[r] {
			users, ids, seqs = append(users, r.Username), append(ids, int64(r.ID)), append(seqs, ins.last[r])
		}
	}
	if len(users) > 0 {
		b.Queue(sqlSetLastSeq, users, ids, seqs)
	}
	for _, i := range ins.dups {
		r := msgs[i].Recipient
		b.Queue(sqlStoredMessage, r.Username, r.ID, msgs[i].MessageID)
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if len(users) > 0 {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("postgres: enqueue: record last seq: %w", err)
		}
	}
	for _, i := range ins.dups {
		r := msgs[i].Recipient
		var err error
		if out[i], err = scanMessage(br.QueryRow(), r); err != nil {
			return fmt.Errorf("postgres: enqueue for %s/%d: read stored copy: %w", r.Username, r.ID, err)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("postgres: enqueue: %w", err)
	}
	return nil
}

// recipients returns the distinct recipient devices of msgs, sorted.
func recipients(msgs []store.Message) []store.DeviceRef {
	refs := make([]store.DeviceRef, 0, len(msgs))
	for _, m := range msgs {
		refs = append(refs, m.Recipient)
	}
	slices.SortFunc(refs, func(a, b store.DeviceRef) int {
		return cmp.Or(cmp.Compare(a.Username, b.Username), cmp.Compare(a.ID, b.ID))
	})
	return slices.Compact(refs)
}

// lockedDevices reads sqlLockDevices' result: each device's last seq, or
// ErrNotFound naming a device that does not exist.
func lockedDevices(br pgx.BatchResults, refs []store.DeviceRef) (map[store.DeviceRef]int64, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("postgres: enqueue: lock recipients: %w", err)
	}
	last := make(map[store.DeviceRef]int64, len(refs))
	for rows.Next() {
		var r store.DeviceRef
		var seq int64
		if err := rows.Scan(&r.Username, &r.ID, &seq); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: enqueue: lock recipients: %w", err)
		}
		last[r] = seq
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: enqueue: lock recipients: %w", err)
	}
	for _, r := range refs {
		if _, ok := last[r]; !ok {
			return nil, fmt.Errorf("postgres: enqueue: recipient device %s/%d does not exist: %w", r.Username, r.ID, store.ErrNotFound)
		}
	}
	return last, nil
}

func scanMessage(row pgx.Row, r store.DeviceRef) (store.Message, error) {
	m := store.Message{Recipient: r}
	var seq, received, expires int64
	if err := row.Scan(&seq, &m.MessageID, &m.Sender, &m.SenderDevice, &m.Content, &received, &expires); err != nil {
		return store.Message{}, err
	}
	m.Seq = uint64(seq)
	m.Received, m.Expires = fromMS(received), fromMS(expires)
	return m, nil
}

// Pending returns up to limit unexpired messages for a device with
// Seq > after, in Seq order. A message is live while now <= Expires.
// Paging by seq is safe because Enqueue makes a device's seqs follow
// commit order (see the top of this file).
func (s *Store) Pending(ctx context.Context, ref store.DeviceRef, after uint64, limit int, now time.Time) ([]store.Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: pending for %s/%d: limit %d is not positive", ref.Username, ref.ID, limit)
	}
	if after >= math.MaxInt64 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, sqlPending, ref.Username, ref.ID, int64(after), ms(now), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: pending for %s/%d: %w", ref.Username, ref.ID, err)
	}
	defer rows.Close()
	var out []store.Message
	for rows.Next() {
		m, err := scanMessage(rows, ref)
		if err != nil {
			return nil, fmt.Errorf("postgres: pending for %s/%d: %w", ref.Username, ref.ID, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: pending for %s/%d: %w", ref.Username, ref.ID, err)
	}
	return out, nil
}

// Ack deletes the listed messages of this device only; seqs that are not
// this device's (or not stored) are ignored.
func (s *Store) Ack(ctx context.Context, ref store.DeviceRef, seqs []uint64) (int, error) {
	valid := make([]int64, 0, len(seqs))
	for _, seq := range seqs {
		if seq <= math.MaxInt64 { // larger ones were never assigned
			valid = append(valid, int64(seq))
		}
	}
	if len(valid) == 0 {
		return 0, nil
	}
	tag, err := s.exec(ctx, "DELETE FROM messages WHERE username = $1 AND device_id = $2 AND seq = ANY ($3::BIGINT[])",
		ref.Username, ref.ID, valid)
	if err != nil {
		return 0, fmt.Errorf("postgres: ack for %s/%d: %w", ref.Username, ref.ID, err)
	}
	return int(tag.RowsAffected()), nil
}

// expiredBatch bounds how many rows one DeleteExpired transaction removes,
// so a large backlog is swept in transactions of a size every database
// (distributed ones limit transaction size) handles comfortably.
const expiredBatch = 10000

// DeleteExpired removes every message whose Expires is before now, in
// batches of expiredBatch, each its own transaction.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		tag, err := s.exec(ctx, `DELETE FROM messages WHERE (username, device_id, seq) IN (
			SELECT username, device_id, seq FROM messages WHERE expires_ms < $1 LIMIT $2)`,
			ms(now), expiredBatch)
		if err != nil {
			return total, fmt.Errorf("postgres: delete expired: %w", err)
		}
		n := tag.RowsAffected()
		total += int(n)
		if n < expiredBatch {
			return total, nil
		}
	}
}
