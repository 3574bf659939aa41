package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hush-chat/hush/internal/store"
)

// CreateAccount stores the account, its devices and their prekeys in one
// transaction. Every device takes the account's username (a device naming
// another one is an error), and prekeys must be for listed devices.
//
// Two registrations of one name race on the accounts primary key: the
// second INSERT waits for the first transaction and then inserts nothing
// (or, on a distributed database, fails to serialise and is retried, and
// then inserts nothing), so exactly one wins.
func (s *Store) CreateAccount(ctx context.Context, a store.Account, devices []store.Device, prekeys map[uint32]store.PrekeyUpload) error {
	if a.Username == "" {
		return errors.New("postgres: create account: empty username")
	}
	version, err := int64Of("device list version", a.DeviceListVersion)
	if err != nil {
		return err
	}
	listed := make(map[uint32]bool, len(devices))
	for _, d := range devices {
		if d.Username != "" && d.Username != a.Username {
			return fmt.Errorf("postgres: create account %q: device %d belongs to %q", a.Username, d.ID, d.Username)
		}
		if listed[d.ID] {
			return fmt.Errorf("postgres: create account %q: device %d listed twice", a.Username, d.ID)
		}
		listed[d.ID] = true
	}
	for id := range prekeys {
		if !listed[id] {
			return fmt.Errorf("postgres: create account %q: prekeys for device %d, which is not in the account: %w", a.Username, id, store.ErrNotFound)
		}
	}

	return s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO accounts
			(username, account_key, device_list, device_list_version, created_ms, delivery_token_hash)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (username) DO NOTHING`,
			a.Username, nonNil(a.AccountKey), nonNil(a.DeviceList), version, ms(a.Created), nonNil(a.DeliveryTokenHash))
		if err != nil {
			return fmt.Errorf("postgres: create account %q: %w", a.Username, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("postgres: create account %q: %w", a.Username, store.ErrUsernameTaken)
		}
		b := &pgx.Batch{}
		for _, d := range devices {
			queueInsertDevice(b, a.Username, d)
		}
		for id, up := range prekeys {
			queueUploadPrekeys(b, store.DeviceRef{Username: a.Username, ID: id}, up)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("postgres: create account %q: %w", a.Username, err)
		}
		return nil
	})
}

func queueInsertDevice(b *pgx.Batch, username string, d store.Device) {
	b.Queue(`INSERT INTO devices
		(username, device_id, signing_key, identity_key, created_ms, last_seen_ms)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		username, d.ID, nonNil(d.SigningKey), nonNil(d.IdentityKey), ms(d.Created), ms(d.LastSeen))
}

// Account returns one account.
func (s *Store) Account(ctx context.Context, username string) (store.Account, error) {
	a := store.Account{Username: username}
	var version, created int64
	err := s.pool.QueryRow(ctx, `SELECT account_key, device_list, device_list_version, created_ms, delivery_token_hash
		FROM accounts WHERE username = $1`, username).Scan(&a.AccountKey, &a.DeviceList, &version, &created, &a.DeliveryTokenHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Account{}, notFound("account %q", username)
	}
	if err != nil {
		return store.Account{}, fmt.Errorf("postgres: account %q: %w", username, err)
	}
	a.DeviceListVersion = uint64(version)
	a.Created = fromMS(created)
	return a, nil
}

// Devices returns the account's devices ordered by id; ErrNotFound if the
// account does not exist. One statement reads both, so the answer comes
// from one snapshot: an account with no rows here does not exist, and an
// account without devices gives one row of NULLs.
func (s *Store) Devices(ctx context.Context, username string) ([]store.Device, error) {
	rows, err := s.pool.Query(ctx, `SELECT d.device_id, d.signing_key, d.identity_key, d.created_ms, d.last_seen_ms
		FROM accounts a LEFT JOIN devices d ON d.username = a.username
		WHERE a.username = $1 ORDER BY d.device_id`, username)
	if err != nil {
		return nil, fmt.Errorf("postgres: devices of %q: %w", username, err)
	}
	defer rows.Close()
	account := false
	var out []store.Device
	for rows.Next() {
		account = true
		var (
			id            *uint32
			sk, ik        []byte
			created, seen *int64
		)
		if err := rows.Scan(&id, &sk, &ik, &created, &seen); err != nil {
			return nil, fmt.Errorf("postgres: devices of %q: %w", username, err)
		}
		if id == nil {
			continue // the account has no devices
		}
		out = append(out, store.Device{
			Username: username, ID: *id, SigningKey: sk, IdentityKey: ik,
			Created: fromMS(*created), LastSeen: fromMS(*seen),
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: devices of %q: %w", username, err)
	}
	if !account {
		return nil, notFound("account %q", username)
	}
	return out, nil
}

// devicesTx lists the account's devices inside a transaction.
func devicesTx(ctx context.Context, tx pgx.Tx, username string) ([]store.Device, error) {
	rows, err := tx.Query(ctx, `SELECT device_id, signing_key, identity_key, created_ms, last_seen_ms
		FROM devices WHERE username = $1 ORDER BY device_id`, username)
	if err != nil {
		return nil, fmt.Errorf("postgres: devices of %q: %w", username, err)
	}
	defer rows.Close()
	var out []store.Device
	for rows.Next() {
		d := store.Device{Username: username}
		var created, seen int64
		if err := rows.Scan(&d.ID, &d.SigningKey, &d.IdentityKey, &created, &seen); err != nil {
			return nil, fmt.Errorf("postgres: devices of %q: %w", username, err)
		}
		d.Created, d.LastSeen = fromMS(created), fromMS(seen)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: devices of %q: %w", username, err)
	}
	return out, nil
}

const sqlDevice = `SELECT signing_key, identity_key, created_ms, last_seen_ms
	FROM devices WHERE username = $1 AND device_id = $2`

// Device returns one device.
func (s *Store) Device(ctx context.Context, ref store.DeviceRef) (store.Device, error) {
	return scanDevice(s.pool.QueryRow(ctx, sqlDevice, ref.Username, ref.ID), ref)
}

func scanDevice(row pgx.Row, ref store.DeviceRef) (store.Device, error) {
	d := store.Device{Username: ref.Username, ID: ref.ID}
	var created, seen int64
	err := row.Scan(&d.SigningKey, &d.IdentityKey, &created, &seen)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Device{}, notFound("device %s/%d", ref.Username, ref.ID)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("postgres: device %s/%d: %w", ref.Username, ref.ID, err)
	}
	d.Created, d.LastSeen = fromMS(created), fromMS(seen)
	return d, nil
}

// UpdateDeviceList installs a newer device list. A listed id whose keys
// differ from the stored device's is a different device reusing the id: the
// old one is removed with its prekeys and queue (they were made for keys no
// longer in the list) and the new one added. Removing a device row
// cascades to its prekeys and messages. The change's prekeys and new
// account key go in the same transaction.
//
// The account row is locked first, so two updates of one account run one
// after the other and the second compares against the first's version and
// account key.
func (s *Store) UpdateDeviceList(ctx context.Context, username string, c store.DeviceListChange) error {
	v, err := int64Of("device list version", c.Version)
	if err != nil {
		return err
	}
	listed := make(map[uint32]store.Device, len(c.Devices))
	for _, d := range c.Devices {
		if d.Username != "" && d.Username != username {
			return fmt.Errorf("postgres: update device list of %q: device %d belongs to %q", username, d.ID, d.Username)
		}
		if _, dup := listed[d.ID]; dup {
			return fmt.Errorf("postgres: update device list of %q: device %d listed twice", username, d.ID)
		}
		listed[d.ID] = d
	}
	for id := range c.Prekeys {
		if _, ok := listed[id]; !ok {
			return fmt.Errorf("postgres: update device list of %q: prekeys for device %d, which is not in the list: %w", username, id, store.ErrNotFound)
		}
	}

	return s.tx(ctx, func(tx pgx.Tx) error {
		var cur int64
		var key []byte
		err := tx.QueryRow(ctx, "SELECT device_list_version, account_key FROM accounts WHERE username = $1 FOR UPDATE", username).Scan(&cur, &key)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("account %q", username)
		}
		if err != nil {
			return fmt.Errorf("postgres: update device list of %q: %w", username, err)
		}
		if c.ExpectAccountKey != nil && !bytes.Equal(key, c.ExpectAccountKey) {
			return fmt.Errorf("postgres: update device list of %q: %w", username, store.ErrAccountKeyChanged)
		}
		if v <= cur {
			return fmt.Errorf("postgres: update device list of %q to version %d over %d: %w", username, v, cur, store.ErrVersionConflict)
		}
		old, err := devicesTx(ctx, tx, username)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		kept := make(map[uint32]bool, len(old))
		for _, o := range old {
			n, ok := listed[o.ID]
			if ok && bytes.Equal(n.SigningKey, o.SigningKey) && bytes.Equal(n.IdentityKey, o.IdentityKey) {
				kept[o.ID] = true
				continue
			}
			b.Queue("DELETE FROM devices WHERE username = $1 AND device_id = $2", username, o.ID)
		}
		for _, d := range c.Devices {
			if !kept[d.ID] {
				queueInsertDevice(b, username, d)
			}
		}
		for id, up := range c.Prekeys {
			queueUploadPrekeys(b, store.DeviceRef{Username: username, ID: id}, up)
		}
		if c.NewAccountKey != nil {
			key = c.NewAccountKey
		}
		b.Queue("UPDATE accounts SET device_list = $1, device_list_version = $2, account_key = $3 WHERE username = $4",
			nonNil(c.List), v, nonNil(key), username)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("postgres: update device list of %q: %w", username, err)
		}
		return nil
	})
}

// TouchDevice sets a device's last-seen time.
func (s *Store) TouchDevice(ctx context.Context, ref store.DeviceRef, t time.Time) error {
	tag, err := s.exec(ctx, "UPDATE devices SET last_seen_ms = $1 WHERE username = $2 AND device_id = $3",
		ms(t), ref.Username, ref.ID)
	if err != nil {
		return fmt.Errorf("postgres: touch device %s/%d: %w", ref.Username, ref.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("device %s/%d", ref.Username, ref.ID)
	}
	return nil
}
