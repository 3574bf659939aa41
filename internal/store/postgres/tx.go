package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Retry bounds. PostgreSQL at READ COMMITTED rarely needs a retry (a
// deadlock between two batches); CockroachDB runs SERIALIZABLE and asks
// clients to retry contended transactions routinely, so the loop has to
// be cheap and bounded: about a second of backoff in all before giving up.
const (
	maxAttempts  = 10
	firstBackoff = 2 * time.Millisecond
	maxBackoff   = 250 * time.Millisecond
)

// SQLSTATEs after which the whole transaction can safely run again: the
// server rolled it back, and nothing it did is visible.
const (
	sqlSerializationFailure = "40001"
	sqlDeadlockDetected     = "40P01"
)

// Other SQLSTATEs the store looks for.
const (
	sqlUniqueViolation = "23505"
	sqlDuplicateTable  = "42P07"
	sqlDuplicateObject = "42710"
)

// pgCode is the SQLSTATE of err, or "" if err did not come from the server.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func retryable(err error) bool {
	switch pgCode(err) {
	case sqlSerializationFailure, sqlDeadlockDetected:
		return true
	}
	return false
}

// tx runs fn in a transaction and commits it, running it again from the
// start after a serialization failure or deadlock. fn may therefore run
// more than once: it must set its results afresh on each run, never
// append to state from an earlier one.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return retry(ctx, func() error { return txOnce(ctx, s.pool, fn) })
}

// exec runs one statement on its own (an implicit transaction), retried
// like tx; it saves the round trips of BEGIN and COMMIT.
func (s *Store) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := retry(ctx, func() error {
		var err error
		tag, err = s.pool.Exec(ctx, sql, args...)
		return err
	})
	return tag, err
}

// beginner is what both a pool and a single connection offer.
type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

func txOnce(ctx context.Context, db beginner, fn func(tx pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		// The error from fn is the one worth reporting; a failed rollback
		// leaves the connection broken, and the pool discards it.
		_ = tx.Rollback(ctx)
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// retry calls attempt until it succeeds, fails with an error that is not
// retryable, ctx ends, or maxAttempts is reached. Backoff doubles from
// firstBackoff up to maxBackoff, with jitter so that transactions that
// collided do not collide again in lockstep.
func retry(ctx context.Context, attempt func() error) error {
	backoff := firstBackoff
	for n := 1; ; n++ {
		err := attempt()
		if err == nil || !retryable(err) {
			return err
		}
		if n == maxAttempts {
			return fmt.Errorf("postgres: gave up after %d attempts: %w", n, err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("postgres: %w (retrying after: %w)", ctx.Err(), err)
		case <-timer.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
