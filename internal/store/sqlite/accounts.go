package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// CreateAccount stores the account, its devices and their prekeys in one
// transaction. Every device takes the account's username (a device naming
// another one is an error), and prekeys must be for listed devices.
func (s *Store) CreateAccount(ctx context.Context, a store.Account, devices []store.Device, prekeys map[uint32]store.PrekeyUpload) error {
	if a.Username == "" {
		return errors.New("sqlite: create account: empty username")
	}
	version, err := int64Of("device list version", a.DeviceListVersion)
	if err != nil {
		return err
	}
	listed := make(map[uint32]bool, len(devices))
	for _, d := range devices {
		if d.Username != "" && d.Username != a.Username {
			return fmt.Errorf("sqlite: create account %q: device %d belongs to %q", a.Username, d.ID, d.Username)
		}
		if listed[d.ID] {
			return fmt.Errorf("sqlite: create account %q: device %d listed twice", a.Username, d.ID)
		}
		listed[d.ID] = true
	}
	for id := range prekeys {
		if !listed[id] {
			return fmt.Errorf("sqlite: create account %q: prekeys for device %d, which is not in the account: %w", a.Username, id, store.ErrNotFound)
		}
	}

	return s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO accounts
			(username, account_key, device_list, device_list_version, created_ms, delivery_token_hash)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (username) DO NOTHING`,
			a.Username, nonNil(a.AccountKey), nonNil(a.DeviceList), version, ms(a.Created), nonNil(a.DeliveryTokenHash))
		if err != nil {
			return fmt.Errorf("sqlite: create account %q: %w", a.Username, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: create account %q: %w", a.Username, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: create account %q: %w", a.Username, store.ErrUsernameTaken)
		}
		for _, d := range devices {
			if err := insertDevice(ctx, tx, a.Username, d); err != nil {
				return err
			}
		}
		for id, up := range prekeys {
			if err := uploadPrekeys(ctx, tx, store.DeviceRef{Username: a.Username, ID: id}, up); err != nil {
				return err
			}
		}
		return nil
	})
}

func insertDevice(ctx context.Context, tx *sql.Tx, username string, d store.Device) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO devices
		(username, device_id, signing_key, identity_key, created_ms, last_seen_ms)
		VALUES (?, ?, ?, ?, ?, ?)`,
		username, d.ID, nonNil(d.SigningKey), nonNil(d.IdentityKey), ms(d.Created), ms(d.LastSeen))
	if err != nil {
		return fmt.Errorf("sqlite: add device %s/%d: %w", username, d.ID, err)
	}
	return nil
}

// deleteDevice removes a device with everything queued or uploaded for it.
// The foreign keys cascade too; deleting explicitly keeps that true even on
// a connection where foreign keys were switched off.
func deleteDevice(ctx context.Context, tx *sql.Tx, username string, id uint32) error {
	for _, table := range []string{
		"messages", "one_time_prekeys", "kem_one_time_prekeys",
		"signed_prekeys", "kem_last_resort_prekeys", "devices",
	} {
		// table comes from the fixed list above, never from input.
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE username = ? AND device_id = ?", username, id); err != nil {
			return fmt.Errorf("sqlite: delete device %s/%d from %s: %w", username, id, table, err)
		}
	}
	return nil
}

// Account returns one account.
func (s *Store) Account(ctx context.Context, username string) (store.Account, error) {
	a := store.Account{Username: username}
	var version, created int64
	err := s.r.QueryRowContext(ctx, `SELECT account_key, device_list, device_list_version, created_ms, delivery_token_hash
		FROM accounts WHERE username = ?`, username).Scan(&a.AccountKey, &a.DeviceList, &version, &created, &a.DeliveryTokenHash)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Account{}, notFound("account %q", username)
	}
	if err != nil {
		return store.Account{}, fmt.Errorf("sqlite: account %q: %w", username, err)
	}
	a.DeviceListVersion = uint64(version)
	a.Created = fromMS(created)
	return a, nil
}

// Devices returns the account's devices ordered by id; ErrNotFound if the
// account does not exist.
func (s *Store) Devices(ctx context.Context, username string) ([]store.Device, error) {
	var out []store.Device
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if out, err = devices(ctx, tx, username); err != nil {
			return err
		}
		if len(out) > 0 {
			return nil
		}
		var one int
		err = tx.QueryRowContext(ctx, "SELECT 1 FROM accounts WHERE username = ?", username).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("account %q", username)
		}
		if err != nil {
			return fmt.Errorf("sqlite: account %q: %w", username, err)
		}
		return nil
	})
	return out, err
}

func devices(ctx context.Context, q queryer, username string) ([]store.Device, error) {
	rows, err := q.QueryContext(ctx, `SELECT device_id, signing_key, identity_key, created_ms, last_seen_ms
		FROM devices WHERE username = ? ORDER BY device_id`, username)
	if err != nil {
		return nil, fmt.Errorf("sqlite: devices of %q: %w", username, err)
	}
	defer rows.Close()
	var out []store.Device
	for rows.Next() {
		d := store.Device{Username: username}
		var created, seen int64
		if err := rows.Scan(&d.ID, &d.SigningKey, &d.IdentityKey, &created, &seen); err != nil {
			return nil, fmt.Errorf("sqlite: devices of %q: %w", username, err)
		}
		d.Created, d.LastSeen = fromMS(created), fromMS(seen)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: devices of %q: %w", username, err)
	}
	return out, nil
}

// Device returns one device.
func (s *Store) Device(ctx context.Context, ref store.DeviceRef) (store.Device, error) {
	return scanDevice(s.rs.device.QueryRowContext(ctx, ref.Username, ref.ID), ref)
}

func device(ctx context.Context, q queryer, ref store.DeviceRef) (store.Device, error) {
	return scanDevice(q.QueryRowContext(ctx, sqlDevice, ref.Username, ref.ID), ref)
}

func scanDevice(row *sql.Row, ref store.DeviceRef) (store.Device, error) {
	d := store.Device{Username: ref.Username, ID: ref.ID}
	var created, seen int64
	err := row.Scan(&d.SigningKey, &d.IdentityKey, &created, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Device{}, notFound("device %s/%d", ref.Username, ref.ID)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("sqlite: device %s/%d: %w", ref.Username, ref.ID, err)
	}
	d.Created, d.LastSeen = fromMS(created), fromMS(seen)
	return d, nil
}

// UpdateDeviceList installs a newer device list. A listed id whose keys
// differ from the stored device's is a different device reusing the id: the
// old one is removed with its prekeys and queue (they were made for keys no
// longer in the list) and the new one added. The change's prekeys and new
// account key go in the same transaction.
func (s *Store) UpdateDeviceList(ctx context.Context, username string, c store.DeviceListChange) error {
	v, err := int64Of("device list version", c.Version)
	if err != nil {
		return err
	}
	listed := make(map[uint32]store.Device, len(c.Devices))
	for _, d := range c.Devices {
		if d.Username != "" && d.Username != username {
			return fmt.Errorf("sqlite: update device list of %q: device %d belongs to %q", username, d.ID, d.Username)
		}
		if _, dup := listed[d.ID]; dup {
			return fmt.Errorf("sqlite: update device list of %q: device %d listed twice", username, d.ID)
		}
		listed[d.ID] = d
	}
	for id := range c.Prekeys {
		if _, ok := listed[id]; !ok {
			return fmt.Errorf("sqlite: update device list of %q: prekeys for device %d, which is not in the list: %w", username, id, store.ErrNotFound)
		}
	}

	return s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var cur int64
		var key []byte
		err := tx.QueryRowContext(ctx, "SELECT device_list_version, account_key FROM accounts WHERE username = ?", username).Scan(&cur, &key)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("account %q", username)
		}
		if err != nil {
			return fmt.Errorf("sqlite: update device list of %q: %w", username, err)
		}
		if c.ExpectAccountKey != nil && !bytes.Equal(key, c.ExpectAccountKey) {
			return fmt.Errorf("sqlite: update device list of %q: %w", username, store.ErrAccountKeyChanged)
		}
		if v <= cur {
			return fmt.Errorf("sqlite: update device list of %q to version %d over %d: %w", username, v, cur, store.ErrVersionConflict)
		}
		old, err := devices(ctx, tx, username)
		if err != nil {
			return err
		}
		kept := make(map[uint32]bool, len(old))
		for _, o := range old {
			n, ok := listed[o.ID]
			if ok && bytes.Equal(n.SigningKey, o.SigningKey) && bytes.Equal(n.IdentityKey, o.IdentityKey) {
				kept[o.ID] = true
				continue
			}
			if err := deleteDevice(ctx, tx, username, o.ID); err != nil {
				return err
			}
		}
		for _, d := range c.Devices {
			if kept[d.ID] {
				continue
			}
			if err := insertDevice(ctx, tx, username, d); err != nil {
				return err
			}
		}
		for id, up := range c.Prekeys {
			if err := uploadPrekeys(ctx, tx, store.DeviceRef{Username: username, ID: id}, up); err != nil {
				return err
			}
		}
		if c.NewAccountKey != nil {
			key = c.NewAccountKey
		}
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET device_list = ?, device_list_version = ?, account_key = ? WHERE username = ?",
			nonNil(c.List), v, nonNil(key), username); err != nil {
			return fmt.Errorf("sqlite: update device list of %q: %w", username, err)
		}
		return nil
	})
}

// TouchDevice sets a device's last-seen time.
func (s *Store) TouchDevice(ctx context.Context, ref store.DeviceRef, t time.Time) error {
	return s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE devices SET last_seen_ms = ? WHERE username = ? AND device_id = ?",
			ms(t), ref.Username, ref.ID)
		if err != nil {
			return fmt.Errorf("sqlite: touch device %s/%d: %w", ref.Username, ref.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: touch device %s/%d: %w", ref.Username, ref.ID, err)
		} else if n == 0 {
			return notFound("device %s/%d", ref.Username, ref.ID)
		}
		return nil
	})
}
