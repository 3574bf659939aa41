package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SetDeliveryTokenHash replaces the account's delivery token hash.
func (s *Store) SetDeliveryTokenHash(ctx context.Context, username string, hash []byte) error {
	return s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE accounts SET delivery_token_hash = ? WHERE username = ?", nonNil(hash), username)
		if err != nil {
			return fmt.Errorf("sqlite: set delivery token of %q: %w", username, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: set delivery token of %q: %w", username, err)
		} else if n == 0 {
			return notFound("account %q", username)
		}
		return nil
	})
}

// SetBlocked replaces the account's blocked list in one transaction.
func (s *Store) SetBlocked(ctx context.Context, username string, blocked []string) error {
	return s.writeTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := accountExists(ctx, tx, username); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM blocked WHERE username = ?", username); err != nil {
			return fmt.Errorf("sqlite: set blocked list of %q: %w", username, err)
		}
		for _, b := range blocked {
			if _, err := tx.ExecContext(ctx, "INSERT INTO blocked (username, blocked) VALUES (?, ?) ON CONFLICT DO NOTHING",
				username, b); err != nil {
				return fmt.Errorf("sqlite: set blocked list of %q: %w", username, err)
			}
		}
		return nil
	})
}

// Blocked returns the account's blocked usernames, sorted.
func (s *Store) Blocked(ctx context.Context, username string) ([]string, error) {
	var out []string
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if err := accountExists(ctx, tx, username); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT blocked FROM blocked WHERE username = ? ORDER BY blocked", username)
		if err != nil {
			return fmt.Errorf("sqlite: blocked list of %q: %w", username, err)
		}
		defer rows.Close()
		for rows.Next() {
			var b string
			if err := rows.Scan(&b); err != nil {
				return fmt.Errorf("sqlite: blocked list of %q: %w", username, err)
			}
			out = append(out, b)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlite: blocked list of %q: %w", username, err)
		}
		return nil
	})
	return out, err
}

func accountExists(ctx context.Context, q queryer, username string) error {
	var one int
	err := q.QueryRowContext(ctx, "SELECT 1 FROM accounts WHERE username = ?", username).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("account %q", username)
	}
	if err != nil {
		return fmt.Errorf("sqlite: account %q: %w", username, err)
	}
	return nil
}
