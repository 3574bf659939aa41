package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/pqxdh"
	"github.com/hush-chat/hush/internal/ratchet"
	"github.com/hush-chat/hush/wire"
)

// Prekey stock (docs/protocol.md §4.4).
const (
	// PrekeyTarget is how many one-time keys of each kind a device keeps
	// uploaded.
	PrekeyTarget = 100
	// uploadChunk bounds the KEM keys per upload frame (each is ~1.6 KB),
	// keeping frames small.
	uploadChunk = 16
	// signedPrekeyMaxAge is when a new signed prekey replaces the current
	// one; the old private half is kept for signedPrekeyKeep so sessions
	// started from it just before the rotation still complete.
	signedPrekeyMaxAge = 7 * 24 * time.Hour
	signedPrekeyKeep   = 30 * 24 * time.Hour
)

type otkPair struct {
	id   uint32
	priv keys.OneTimePrekeyPrivate
}

type kemPair struct {
	id   uint32
	priv keys.KEMPrivate
}

// prekeyBatch is a set of freshly generated prekeys, saved privately and
// then uploaded publicly.
type prekeyBatch struct {
	signedID   uint32
	signed     keys.SignedPrekeyPrivate // zero if not rotating
	oneTime    []otkPair
	kem        []kemPair
	lastID     uint32
	lastResort keys.KEMPrivate // zero if not replacing
	nextID     uint32          // the first id not used by this batch
}

// newPrekeyBatch generates keys with ids from firstID on.
func newPrekeyBatch(firstID uint32, nOneTime, nKEM int, signed, lastResort bool) (*prekeyBatch, error) {
	b := &prekeyBatch{nextID: firstID}
	id := func() uint32 { v := b.nextID; b.nextID++; return v }
	var err error
	if signed {
		if b.signed, err = keys.GenerateSignedPrekey(); err != nil {
			return nil, err
		}
		b.signedID = id()
	}
	if lastResort {
		if b.lastResort, err = keys.GenerateKEM(true); err != nil {
			return nil, err
		}
		b.lastID = id()
	}
	for range nOneTime {
		k, err := keys.GenerateOneTimePrekey()
		if err != nil {
			return nil, err
		}
		b.oneTime = append(b.oneTime, otkPair{id(), k})
	}
	for range nKEM {
		k, err := keys.GenerateKEM(false)
		if err != nil {
			return nil, err
		}
		b.kem = append(b.kem, kemPair{id(), k})
	}
	return b, nil
}

// save stores the private halves and advances the account's id counter.
func (b *prekeyBatch) save(ctx context.Context, tx *sql.Tx, now time.Time) error {
	if !b.signed.IsZero() {
		if _, err := tx.ExecContext(ctx, `INSERT INTO signed_prekeys (id, private, created_ms) VALUES (?, ?, ?)`,
			b.signedID, b.signed.Bytes(), now.UnixMilli()); err != nil {
			return &localError{err}
		}
	}
	if !b.lastResort.IsZero() {
		if _, err := tx.ExecContext(ctx, `INSERT INTO kem_prekeys (id, private, last_resort) VALUES (?, ?, 1)`,
			b.lastID, b.lastResort.Bytes()); err != nil {
			return &localError{err}
		}
	}
	for _, k := range b.oneTime {
		if _, err := tx.ExecContext(ctx, `INSERT INTO one_time_prekeys (id, private) VALUES (?, ?)`, k.id, k.priv.Bytes()); err != nil {
			return &localError{err}
		}
	}
	for _, k := range b.kem {
		if _, err := tx.ExecContext(ctx, `INSERT INTO kem_prekeys (id, private, last_resort) VALUES (?, ?, 0)`, k.id, k.priv.Bytes()); err != nil {
			return &localError{err}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE account SET next_prekey_id = ? WHERE id = 1`, b.nextID); err != nil {
		return &localError{err}
	}
	return nil
}

// uploads renders the public halves, signed by the device, as one or more
// upload frames of at most uploadChunk KEM keys each.
func (b *prekeyBatch) uploads(signer keys.DeviceSigningPrivate, ik keys.IdentityPublic) []*wire.PrekeyUpload {
	first := &wire.PrekeyUpload{}
	if !b.signed.IsZero() {
		pub := b.signed.Public().Bytes()
		first.SignedPrekey = &wire.SignedPrekey{Id: b.signedID, Key: pub, Signature: identity.SignPrekey(signer, ik, b.signedID, pub)}
	}
	if !b.lastResort.IsZero() {
		pub := b.lastResort.Public().Bytes()
		first.KemLastResort = &wire.KEMPrekey{Id: b.lastID, Key: pub, Signature: identity.SignPrekey(signer, ik, b.lastID, pub)}
	}
	n := max(len(b.oneTime), len(b.kem))
	out := []*wire.PrekeyUpload{first}
	for len(out)*uploadChunk < n {
		out = append(out, &wire.PrekeyUpload{})
	}
	for i, k := range b.oneTime {
		up := out[i/uploadChunk]
		up.OneTime = append(up.OneTime, &wire.OneTimePrekey{Id: k.id, Key: k.priv.Public().Bytes()})
	}
	for i, k := range b.kem {
		up := out[i/uploadChunk]
		pub := k.priv.Public().Bytes()
		up.KemOneTime = append(up.KemOneTime, &wire.KEMPrekey{Id: k.id, Key: pub, Signature: identity.SignPrekey(signer, ik, k.id, pub)})
	}
	return out
}

// merged is the whole batch as one upload, as registration sends it.
func merged(ups []*wire.PrekeyUpload) *wire.PrekeyUpload {
	m := &wire.PrekeyUpload{}
	for _, u := range ups {
		if u.SignedPrekey != nil {
			m.SignedPrekey = u.SignedPrekey
		}
		if u.KemLastResort != nil {
			m.KemLastResort = u.KemLastResort
		}
		m.OneTime = append(m.OneTime, u.OneTime...)
		m.KemOneTime = append(m.KemOneTime, u.KemOneTime...)
	}
	return m
}

// txPrekeys gives PQXDH the private prekeys, read inside the receiving
// transaction so keys deleted earlier in it are gone. A database failure is
// remembered in err: pqxdh reports every lookup failure as an unknown
// prekey, and the caller must not mistake a local failure for a bad message.
type txPrekeys struct {
	ctx context.Context
	tx  *sql.Tx
	err error
}

func (p *txPrekeys) lookup(query string, id uint32) ([]byte, error) {
	var b []byte
	err := p.tx.QueryRowContext(p.ctx, query, id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, pqxdh.ErrUnknownPrekey
	}
	if err != nil {
		if p.err == nil {
			p.err = &localError{err}
		}
		return nil, p.err
	}
	return b, nil
}

func (p *txPrekeys) SignedPrekey(id uint32) (keys.SignedPrekeyPrivate, error) {
	b, err := p.lookup(`SELECT private FROM signed_prekeys WHERE id = ?`, id)
	if err != nil {
		return keys.SignedPrekeyPrivate{}, err
	}
	return keys.ParseSignedPrekeyPrivate(b)
}

func (p *txPrekeys) OneTimePrekey(id uint32) (keys.OneTimePrekeyPrivate, error) {
	b, err := p.lookup(`SELECT private FROM one_time_prekeys WHERE id = ?`, id)
	if err != nil {
		return keys.OneTimePrekeyPrivate{}, err
	}
	return keys.ParseOneTimePrekeyPrivate(b)
}

func (p *txPrekeys) KEMPrekey(id uint32) (keys.KEMPrivate, error) {
	b, err := p.lookup(`SELECT private FROM kem_prekeys WHERE id = ?`, id)
	if err != nil {
		return keys.KEMPrivate{}, err
	}
	return keys.ParseKEMPrivate(b)
}

// consumePrekeys deletes the one-time prekeys a new session used; the
// signed prekey and the last-resort KEM key are reusable and stay.
func consumePrekeys(ctx context.Context, tx *sql.Tx, u *ratchet.PrekeyUse) error {
	if u == nil {
		return nil
	}
	if u.HasOneTime {
		if _, err := tx.ExecContext(ctx, `DELETE FROM one_time_prekeys WHERE id = ?`, u.OneTimePrekeyID); err != nil {
			return &localError{err}
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM kem_prekeys WHERE id = ? AND last_resort = 0`, u.KEMPrekeyID); err != nil {
		return &localError{err}
	}
	return nil
}

// refillPrekeys tops the server's one-time keys back up to PrekeyTarget
// and rotates the signed prekey when it is old. The private halves are
// committed before anything is uploaded, so every key the server hands out
// has its private half here.
func (c *Client) refillPrekeys(ctx context.Context, cn *conn, counts *wire.PrekeyCounts) error {
	if !c.refill.TryLock() {
		return nil // another goroutine is already doing it
	}
	defer c.refill.Unlock()
	a, err := c.account()
	if err != nil {
		return err
	}
	nOTK, nKEM := 0, 0
	if counts != nil && (counts.GetLow() || counts.GetOneTime() < PrekeyTarget/2 || counts.GetKemOneTime() < PrekeyTarget/2) {
		nOTK = PrekeyTarget - min(int(counts.GetOneTime()), PrekeyTarget)
		nKEM = PrekeyTarget - min(int(counts.GetKemOneTime()), PrekeyTarget)
	}
	now := c.now()
	var newest int64
	if err := c.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(created_ms), 0) FROM signed_prekeys`).Scan(&newest); err != nil {
		return &localError{err}
	}
	rotate := now.Sub(time.UnixMilli(newest)) > signedPrekeyMaxAge
	if nOTK == 0 && nKEM == 0 && !rotate {
		return nil
	}
	var batch *prekeyBatch
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		var next uint32
		if err := tx.QueryRowContext(ctx, `SELECT next_prekey_id FROM account WHERE id = 1`).Scan(&next); err != nil {
			return &localError{err}
		}
		if batch, err = newPrekeyBatch(next, nOTK, nKEM, rotate, false); err != nil {
			return err
		}
		if rotate {
			// Old signed prekeys stay usable for a while after rotation.
			if _, err := tx.ExecContext(ctx, `DELETE FROM signed_prekeys WHERE created_ms < ?`, now.Add(-signedPrekeyKeep).UnixMilli()); err != nil {
				return &localError{err}
			}
		}
		return batch.save(ctx, tx, now)
	})
	if err != nil {
		return err
	}
	for _, up := range batch.uploads(a.Signing, a.Identity.Public()) {
		if _, err := cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_UploadPrekeys{UploadPrekeys: up}}); err != nil {
			return fmt.Errorf("upload prekeys: %w", err)
		}
	}
	return nil
}
