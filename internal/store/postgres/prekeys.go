package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/hush-chat/hush/internal/store"
)

// UploadPrekeys adds one-time keys (ignoring ids already stored) and
// replaces the signed and last-resort prekeys when given.
func (s *Store) UploadPrekeys(ctx context.Context, ref store.DeviceRef, up store.PrekeyUpload) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		// The existence check and the inserts go in one round trip; for a
		// missing device the inserts fail on the foreign key, but the
		// check's answer is read first and reported as ErrNotFound.
		b := &pgx.Batch{}
		b.Queue(sqlDevice, ref.Username, ref.ID)
		queueUploadPrekeys(b, ref, up)
		br := tx.SendBatch(ctx, b)
		defer br.Close()
		if _, err := scanDevice(br.QueryRow(), ref); err != nil {
			return err
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("postgres: upload prekeys for %s/%d: %w", ref.Username, ref.ID, err)
		}
		return nil
	})
}

// queueUploadPrekeys adds the statements storing up to b. The one-time
// keys go in one statement per kind, whatever their number, as arrays.
func queueUploadPrekeys(b *pgx.Batch, ref store.DeviceRef, up store.PrekeyUpload) {
	if sp := up.SignedPrekey; sp != nil {
		b.Queue(`INSERT INTO signed_prekeys (username, device_id, key_id, key, signature)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (username, device_id) DO UPDATE
			SET key_id = excluded.key_id, key = excluded.key, signature = excluded.signature`,
			ref.Username, ref.ID, sp.ID, nonNil(sp.Key), nonNil(sp.Signature))
	}
	if lr := up.KEMLastResort; lr != nil {
		b.Queue(`INSERT INTO kem_last_resort_prekeys (username, device_id, key_id, key, signature)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (username, device_id) DO UPDATE
			SET key_id = excluded.key_id, key = excluded.key, signature = excluded.signature`,
			ref.Username, ref.ID, lr.ID, nonNil(lr.Key), nonNil(lr.Signature))
	}
	if len(up.OneTime) > 0 {
		ids := make([]int64, len(up.OneTime))
		ks := make([][]byte, len(up.OneTime))
		for i, k := range up.OneTime {
			ids[i], ks[i] = int64(k.ID), nonNil(k.Key)
		}
		b.Queue(`INSERT INTO one_time_prekeys (username, device_id, key_id, key)
			SELECT $1, $2, k.id, k.key FROM unnest($3::BIGINT[], $4::BYTEA[]) AS k (id, key)
			ON CONFLICT (username, device_id, key_id) DO NOTHING`,
			ref.Username, ref.ID, ids, ks)
	}
	if len(up.KEMOneTime) > 0 {
		ids := make([]int64, len(up.KEMOneTime))
		ks := make([][]byte, len(up.KEMOneTime))
		sigs := make([][]byte, len(up.KEMOneTime))
		for i, k := range up.KEMOneTime {
			ids[i], ks[i], sigs[i] = int64(k.ID), nonNil(k.Key), nonNil(k.Signature)
		}
		b.Queue(`INSERT INTO kem_one_time_prekeys (username, device_id, key_id, key, signature)
			SELECT $1, $2, k.id, k.key, k.sig FROM unnest($3::BIGINT[], $4::BYTEA[], $5::BYTEA[]) AS k (id, key, sig)
			ON CONFLICT (username, device_id, key_id) DO NOTHING`,
			ref.Username, ref.ID, ids, ks, sigs)
	}
}

// Taking a one-time key is one statement: lock the device's lowest-id key
// that no other transaction has locked, and delete it. SKIP LOCKED lets
// concurrent requesters take different keys instead of queueing on the
// same row, and a row another transaction is deleting is never returned,
// so each key goes to exactly one requester. (A key locked by a
// transaction that then rolls back is skipped by the others meanwhile;
// they may get a higher-numbered key or none, never a duplicate.)
const (
	sqlTakeKEM = `DELETE FROM kem_one_time_prekeys
		WHERE username = $1 AND device_id = $2 AND key_id = (
			SELECT key_id FROM kem_one_time_prekeys WHERE username = $1 AND device_id = $2
			ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING key_id, key, signature`
	sqlTakeOneTime = `DELETE FROM one_time_prekeys
		WHERE username = $1 AND device_id = $2 AND key_id = (
			SELECT key_id FROM one_time_prekeys WHERE username = $1 AND device_id = $2
			ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING key_id, key`
)

// TakePrekeys hands out a device's prekeys in one transaction and one
// round trip. The one-time keys are deleted by the statements that read
// them; if the device turns out to have no signed prekey or no KEM key,
// the transaction rolls back and nothing is consumed.
func (s *Store) TakePrekeys(ctx context.Context, ref store.DeviceRef) (store.PrekeySet, error) {
	var set store.PrekeySet
	err := s.tx(ctx, func(tx pgx.Tx) error {
		set = store.PrekeySet{}
		b := &pgx.Batch{}
		b.Queue(sqlDevice, ref.Username, ref.ID)
		b.Queue("SELECT key_id, key, signature FROM signed_prekeys WHERE username = $1 AND device_id = $2", ref.Username, ref.ID)
		b.Queue(sqlTakeKEM, ref.Username, ref.ID)
		b.Queue("SELECT key_id, key, signature FROM kem_last_resort_prekeys WHERE username = $1 AND device_id = $2", ref.Username, ref.ID)
		b.Queue(sqlTakeOneTime, ref.Username, ref.ID)
		br := tx.SendBatch(ctx, b)
		defer br.Close()

		var err error
		if set.Device, err = scanDevice(br.QueryRow(), ref); err != nil {
			return err
		}
		sp := &set.SignedPrekey
		found, err := scanOptional(br.QueryRow(), &sp.ID, &sp.Key, &sp.Signature)
		if err != nil {
			return fmt.Errorf("postgres: signed prekey of %s/%d: %w", ref.Username, ref.ID, err)
		}
		if !found {
			return notFound("signed prekey of %s/%d", ref.Username, ref.ID)
		}
		kem := &set.KEM
		found, err = scanOptional(br.QueryRow(), &kem.ID, &kem.Key, &kem.Signature)
		if err != nil {
			return fmt.Errorf("postgres: take KEM prekey of %s/%d: %w", ref.Username, ref.ID, err)
		}
		var lr store.KEMPrekey
		lrFound, err := scanOptional(br.QueryRow(), &lr.ID, &lr.Key, &lr.Signature)
		if err != nil {
			return fmt.Errorf("postgres: last-resort KEM prekey of %s/%d: %w", ref.Username, ref.ID, err)
		}
		if !found {
			if !lrFound {
				return notFound("KEM prekey of %s/%d", ref.Username, ref.ID)
			}
			set.KEM, set.KEMLastResort = lr, true
		}
		var ot store.OneTimePrekey
		found, err = scanOptional(br.QueryRow(), &ot.ID, &ot.Key)
		if err != nil {
			return fmt.Errorf("postgres: take one-time prekey of %s/%d: %w", ref.Username, ref.ID, err)
		}
		if found {
			set.OneTime = &ot
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("postgres: take prekeys of %s/%d: %w", ref.Username, ref.ID, err)
		}
		return nil
	})
	if err != nil {
		return store.PrekeySet{}, err
	}
	return set, nil
}

// scanOptional scans a row that may be absent.
func scanOptional(row pgx.Row, dst ...any) (bool, error) {
	err := row.Scan(dst...)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// PrekeyCounts counts a device's remaining one-time keys; ErrNotFound if
// the device does not exist. One statement, so one snapshot.
func (s *Store) PrekeyCounts(ctx context.Context, ref store.DeviceRef) (store.PrekeyCounts, error) {
	var c store.PrekeyCounts
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM one_time_prekeys o WHERE o.username = d.username AND o.device_id = d.device_id),
		(SELECT COUNT(*) FROM kem_one_time_prekeys k WHERE k.username = d.username AND k.device_id = d.device_id)
		FROM devices d WHERE d.username = $1 AND d.device_id = $2`,
		ref.Username, ref.ID).Scan(&c.OneTime, &c.KEMOneTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.PrekeyCounts{}, notFound("device %s/%d", ref.Username, ref.ID)
	}
	if err != nil {
		return store.PrekeyCounts{}, fmt.Errorf("postgres: prekey counts of %s/%d: %w", ref.Username, ref.ID, err)
	}
	return c, nil
}
