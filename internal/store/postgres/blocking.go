package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// SetDeliveryTokenHash replaces the account's delivery token hash.
func (s *Store) SetDeliveryTokenHash(ctx context.Context, username string, hash []byte) error {
	tag, err := s.exec(ctx, "UPDATE accounts SET delivery_token_hash = $1 WHERE username = $2", nonNil(hash), username)
	if err != nil {
		return fmt.Errorf("postgres: set delivery token of %q: %w", username, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("account %q", username)
	}
	return nil
}

// SetBlocked replaces the account's blocked list in one transaction. The
// account row is locked first, so two replacements run one after the
// other and the later one wins whole.
func (s *Store) SetBlocked(ctx context.Context, username string, blocked []string) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, "SELECT 1 FROM accounts WHERE username = $1 FOR UPDATE", username).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("account %q", username)
		}
		if err != nil {
			return fmt.Errorf("postgres: set blocked list of %q: %w", username, err)
		}
		b := &pgx.Batch{}
		b.Queue("DELETE FROM blocked WHERE username = $1", username)
		if len(blocked) > 0 {
			b.Queue(`INSERT INTO blocked (username, blocked)
				SELECT $1, n FROM unnest($2::TEXT[]) AS n ON CONFLICT DO NOTHING`, username, blocked)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("postgres: set blocked list of %q: %w", username, err)
		}
		return nil
	})
}

// Blocked returns the account's blocked usernames, sorted. One statement
// reads the account and its list, so an account with no rows here does not
// exist and one that blocks nobody gives one row with a NULL.
func (s *Store) Blocked(ctx context.Context, username string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT b.blocked FROM accounts a
		LEFT JOIN blocked b ON b.username = a.username
		WHERE a.username = $1`, username)
	if err != nil {
		return nil, fmt.Errorf("postgres: blocked list of %q: %w", username, err)
	}
	defer rows.Close()
	account := false
	var out []string
	for rows.Next() {
		account = true
		var b *string
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("postgres: blocked list of %q: %w", username, err)
		}
		if b != nil {
			out = append(out, *b)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: blocked list of %q: %w", username, err)
	}
	if !account {
		return nil, notFound("account %q", username)
	}
	// Sorted here rather than in SQL, where the order would depend on the
	// database's collation.
	slices.Sort(out)
	return out, nil
}
