package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/hush-chat/hush/internal/store"
)

// UploadPrekeys adds one-time keys (ignoring ids already stored) and
// replaces the signed and last-resort prekeys when given.
func (s *Store) UploadPrekeys(ctx context.Context, ref store.DeviceRef, up store.PrekeyUpload) error {
	return s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := device(ctx, tx, ref); err != nil {
			return err
		}
		return uploadPrekeys(ctx, tx, ref, up)
	})
}

func uploadPrekeys(ctx context.Context, tx *sql.Tx, ref store.DeviceRef, up store.PrekeyUpload) error {
	fail := func(what string, err error) error {
		return fmt.Errorf("sqlite: upload %s for %s/%d: %w", what, ref.Username, ref.ID, err)
	}
	if sp := up.SignedPrekey; sp != nil {
		if _, err := tx.ExecContext(ctx, `INSERT INTO signed_prekeys (username, device_id, key_id, key, signature)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (username, device_id) DO UPDATE
			SET key_id = excluded.key_id, key = excluded.key, signature = excluded.signature`,
			ref.Username, ref.ID, sp.ID, nonNil(sp.Key), nonNil(sp.Signature)); err != nil {
			return fail("signed prekey", err)
		}
	}
	if lr := up.KEMLastResort; lr != nil {
		if _, err := tx.ExecContext(ctx, `INSERT INTO kem_last_resort_prekeys (username, device_id, key_id, key, signature)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (username, device_id) DO UPDATE
			SET key_id = excluded.key_id, key = excluded.key, signature = excluded.signature`,
			ref.Username, ref.ID, lr.ID, nonNil(lr.Key), nonNil(lr.Signature)); err != nil {
			return fail("last-resort KEM prekey", err)
		}
	}
	if len(up.OneTime) > 0 {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO one_time_prekeys (username, device_id, key_id, key)
			VALUES (?, ?, ?, ?) ON CONFLICT (username, device_id, key_id) DO NOTHING`)
		if err != nil {
			return fail("one-time prekeys", err)
		}
		defer stmt.Close()
		for _, k := range up.OneTime {
			if _, err := stmt.ExecContext(ctx, ref.Username, ref.ID, k.ID, nonNil(k.Key)); err != nil {
				return fail("one-time prekeys", err)
			}
		}
	}
	if len(up.KEMOneTime) > 0 {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO kem_one_time_prekeys (username, device_id, key_id, key, signature)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (username, device_id, key_id) DO NOTHING`)
		if err != nil {
			return fail("one-time KEM prekeys", err)
		}
		defer stmt.Close()
		for _, k := range up.KEMOneTime {
			if _, err := stmt.ExecContext(ctx, ref.Username, ref.ID, k.ID, nonNil(k.Key), nonNil(k.Signature)); err != nil {
				return fail("one-time KEM prekeys", err)
			}
		}
	}
	return nil
}

// TakePrekeys hands out a device's prekeys, deleting the one-time ones in
// the same write transaction that selected them. All writes share one
// connection, so no other transaction can select the same key in between.
// If the device has no signed prekey or no KEM key the transaction rolls
// back, consuming nothing.
func (s *Store) TakePrekeys(ctx context.Context, ref store.DeviceRef) (store.PrekeySet, error) {
	var set store.PrekeySet
	err := s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if set.Device, err = device(ctx, tx, ref); err != nil {
			return err
		}
		sp := &set.SignedPrekey
		err = tx.QueryRowContext(ctx, "SELECT key_id, key, signature FROM signed_prekeys WHERE username = ? AND device_id = ?",
			ref.Username, ref.ID).Scan(&sp.ID, &sp.Key, &sp.Signature)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("signed prekey of %s/%d", ref.Username, ref.ID)
		}
		if err != nil {
			return fmt.Errorf("sqlite: signed prekey of %s/%d: %w", ref.Username, ref.ID, err)
		}

		kem := &set.KEM
		found, err := takeOne(ctx, tx, "kem_one_time_prekeys", "key, signature", ref, &kem.ID, &kem.Key, &kem.Signature)
		if err != nil {
			return err
		}
		if !found {
			err = tx.QueryRowContext(ctx, "SELECT key_id, key, signature FROM kem_last_resort_prekeys WHERE username = ? AND device_id = ?",
				ref.Username, ref.ID).Scan(&kem.ID, &kem.Key, &kem.Signature)
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("KEM prekey of %s/%d", ref.Username, ref.ID)
			}
			if err != nil {
				return fmt.Errorf("sqlite: last-resort KEM prekey of %s/%d: %w", ref.Username, ref.ID, err)
			}
			set.KEMLastResort = true
		}

		var ot store.OneTimePrekey
		found, err = takeOne(ctx, tx, "one_time_prekeys", "key", ref, &ot.ID, &ot.Key)
		if err != nil {
			return err
		}
		if found {
			set.OneTime = &ot
		}
		return nil
	})
	if err != nil {
		return store.PrekeySet{}, err
	}
	return set, nil
}

// takeOne selects the lowest-id one-time key of a device from table, scans
// key_id into id and the other cols into rest, and deletes the row. table
// and cols are constants from the callers, never input.
func takeOne(ctx context.Context, tx *sql.Tx, table, cols string, ref store.DeviceRef, id *uint32, rest ...any) (bool, error) {
	row := tx.QueryRowContext(ctx, "SELECT key_id, "+cols+" FROM "+table+
		" WHERE username = ? AND device_id = ? ORDER BY key_id LIMIT 1", ref.Username, ref.ID)
	err := row.Scan(append([]any{id}, rest...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: take from %s for %s/%d: %w", table, ref.Username, ref.ID, err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE username = ? AND device_id = ? AND key_id = ?",
		ref.Username, ref.ID, *id); err != nil {
		return false, fmt.Errorf("sqlite: take from %s for %s/%d: %w", table, ref.Username, ref.ID, err)
	}
	return true, nil
}

// PrekeyCounts counts a device's remaining one-time keys; ErrNotFound if
// the device does not exist.
func (s *Store) PrekeyCounts(ctx context.Context, ref store.DeviceRef) (store.PrekeyCounts, error) {
	var c store.PrekeyCounts
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if _, err := device(ctx, tx, ref); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT
			(SELECT COUNT(*) FROM one_time_prekeys WHERE username = ? AND device_id = ?),
			(SELECT COUNT(*) FROM kem_one_time_prekeys WHERE username = ? AND device_id = ?)`,
			ref.Username, ref.ID, ref.Username, ref.ID).Scan(&c.OneTime, &c.KEMOneTime)
		if err != nil {
			return fmt.Errorf("sqlite: prekey counts of %s/%d: %w", ref.Username, ref.ID, err)
		}
		return nil
	})
	if err != nil {
		return store.PrekeyCounts{}, err
	}
	return c, nil
}
