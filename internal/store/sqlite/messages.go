package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hush-chat/hush/internal/store"
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
			return nil, fmt.Errorf("sqlite: enqueue for %s/%d: empty message id", m.Recipient.Username, m.Recipient.ID)
		}
	}
	out := make([]store.Message, len(msgs))
	err := s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		insert := tx.StmtContext(ctx, s.ws.insertMessage)
		dev := tx.StmtContext(ctx, s.ws.device)
		exists := make(map[store.DeviceRef]bool)
		for i, m := range msgs {
			r := m.Recipient
			if !exists[r] {
				_, err := scanDevice(dev.QueryRowContext(ctx, r.Username, r.ID), r)
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("sqlite: enqueue: recipient device %s/%d does not exist: %w", r.Username, r.ID, store.ErrNotFound)
				}
				if err != nil {
					return err
				}
				exists[r] = true
			}
			var seq int64
			err := insert.QueryRowContext(ctx, r.Username, r.ID, m.MessageID, m.Sender, m.SenderDevice,
				nonNil(m.Content), ms(m.Received), ms(m.Expires)).Scan(&seq)
			switch {
			case errors.Is(err, sql.ErrNoRows): // already stored
				if out[i], err = s.storedMessage(ctx, tx, r, m.MessageID); err != nil {
					return err
				}
			case err != nil:
				return fmt.Errorf("sqlite: enqueue for %s/%d: %w", r.Username, r.ID, err)
			default:
				out[i] = m
				out[i].Seq = uint64(seq)
				out[i].Received = fromMS(ms(m.Received))
				out[i].Expires = fromMS(ms(m.Expires))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func scanMessage(sc interface{ Scan(...any) error }, r store.DeviceRef) (store.Message, error) {
	m := store.Message{Recipient: r}
	var seq, received, expires int64
	if err := sc.Scan(&seq, &m.MessageID, &m.Sender, &m.SenderDevice, &m.Content, &received, &expires); err != nil {
		return store.Message{}, err
	}
	m.Seq = uint64(seq)
	m.Received, m.Expires = fromMS(received), fromMS(expires)
	return m, nil
}

func (s *Store) storedMessage(ctx context.Context, tx *sql.Tx, r store.DeviceRef, id []byte) (store.Message, error) {
	row := tx.StmtContext(ctx, s.ws.storedMessage).QueryRowContext(ctx, r.Username, r.ID, id)
	m, err := scanMessage(row, r)
	if err != nil {
		return store.Message{}, fmt.Errorf("sqlite: enqueue for %s/%d: read stored copy: %w", r.Username, r.ID, err)
	}
	return m, nil
}

// Pending returns up to limit unexpired messages for a device with
// Seq > after, in Seq order. A message is live while now <= Expires.
func (s *Store) Pending(ctx context.Context, ref store.DeviceRef, after uint64, limit int, now time.Time) ([]store.Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("sqlite: pending for %s/%d: limit %d is not positive", ref.Username, ref.ID, limit)
	}
	if after >= math.MaxInt64 {
		return nil, nil
	}
	rows, err := s.rs.pending.QueryContext(ctx, ref.Username, ref.ID, int64(after), ms(now), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: pending for %s/%d: %w", ref.Username, ref.ID, err)
	}
	defer rows.Close()
	var out []store.Message
	for rows.Next() {
		m, err := scanMessage(rows, ref)
		if err != nil {
			return nil, fmt.Errorf("sqlite: pending for %s/%d: %w", ref.Username, ref.ID, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: pending for %s/%d: %w", ref.Username, ref.ID, err)
	}
	return out, nil
}

// Ack deletes the listed messages of this device only; seqs that are not
// this device's (or not stored) are ignored.
func (s *Store) Ack(ctx context.Context, ref store.DeviceRef, seqs []uint64) (int, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	deleted := 0
	err := s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		del := tx.StmtContext(ctx, s.ws.ack)
		for _, seq := range seqs {
			if seq > math.MaxInt64 {
				continue // never assigned
			}
			res, err := del.ExecContext(ctx, ref.Username, ref.ID, int64(seq))
			if err != nil {
				return fmt.Errorf("sqlite: ack for %s/%d: %w", ref.Username, ref.ID, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("sqlite: ack for %s/%d: %w", ref.Username, ref.ID, err)
			}
			deleted += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
}

// DeleteExpired removes every message whose Expires is before now.
func (s *Store) DeleteExpired(ctx context.Context, now time.Time) (int, error) {
	var deleted int64
	err := s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM messages WHERE expires_ms < ?", ms(now))
		if err != nil {
			return fmt.Errorf("sqlite: delete expired: %w", err)
		}
		deleted, err = res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: delete expired: %w", err)
		}
		return nil
	})
	return int(deleted), err
}
