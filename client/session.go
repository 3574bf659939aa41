package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/hush-chat/hush/internal/ratchet"
)

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// loadRecord reads the ratchet record for one peer device; an empty record
// if there is none yet.
func loadRecord(ctx context.Context, q querier, peer string, device uint32) (*ratchet.Record, error) {
	var b []byte
	err := q.QueryRowContext(ctx, `SELECT record FROM sessions WHERE peer = ? AND device = ?`, peer, device).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return &ratchet.Record{}, nil
	}
	if err != nil {
		return nil, &localError{err}
	}
	r, err := ratchet.UnmarshalRecord(b)
	if err != nil {
		// Our own file is corrupt; not the peer's fault, and retrying will
		// not help, but it must not be mistaken for a bad message either.
		return nil, &localError{fmt.Errorf("session with %s/%d: %w", peer, device, err)}
	}
	return r, nil
}

func saveRecord(ctx context.Context, tx *sql.Tx, peer string, device uint32, r *ratchet.Record) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO sessions (peer, device, record) VALUES (?, ?, ?)
		ON CONFLICT (peer, device) DO UPDATE SET record = excluded.record`, peer, device, r.Marshal())
	if err != nil {
		return &localError{err}
	}
	return nil
}
