package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	schema "github.com/hush-chat/hush/internal/migrate"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema lives in numbered files, migrations/NNNN_name.sql, applied in
// order; each one, with its row in schema_migrations, commits or rolls back
// as a unit. A released migration is never edited: a change is a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

type migration = schema.Migration

// loadMigrations reads the embedded migrations (internal/migrate checks
// their naming and numbering).
func loadMigrations() ([]migration, error) {
	ms, err := schema.Load(migrationFS)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return ms, nil
}

// Several nodes may start at once against one database. They serialise
// on the single row of schema_lock: each migration transaction first
// updates that row, so a second node waits until the first commits (or,
// under SERIALIZABLE, fails with a serialization error and retries), and
// then reads the schema version afresh. Advisory locks would be simpler in
// PostgreSQL, but distributed databases do not have them.
const (
	sqlCreateLock = `CREATE TABLE IF NOT EXISTS schema_lock (
		id        INT    NOT NULL PRIMARY KEY CHECK (id = 1),
		locked_ms BIGINT NOT NULL
	)`
	sqlInsertLock     = "INSERT INTO schema_lock (id, locked_ms) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
	sqlTakeLock       = "UPDATE schema_lock SET locked_ms = $1 WHERE id = 1"
	sqlCreateVersions = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    BIGINT NOT NULL PRIMARY KEY,
		name       TEXT   NOT NULL,
		applied_ms BIGINT NOT NULL
	)`
)

// migrate brings the database up to the newest embedded migration. It
// refuses a database written by a newer binary rather than run against a
// schema it does not understand.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	all, err := loadMigrations()
	if err != nil {
		return err
	}
	if err := createLock(ctx, pool); err != nil {
		return err
	}
	for {
		var done bool
		err := retry(ctx, func() error {
			done = false
			return txOnce(ctx, pool, func(tx pgx.Tx) (err error) {
				done, err = migrateOne(ctx, tx, all)
				return err
			})
		})
		if err != nil || done {
			return err
		}
	}
}

// createLock makes the lock table and its row. Two nodes creating the
// same table at once can make PostgreSQL fail one CREATE TABLE IF NOT
// EXISTS with a duplicate-key or duplicate-table error (the check and the
// creation are not atomic); running it again then finds the table.
func createLock(ctx context.Context, pool *pgxpool.Pool) error {
	for attempt := 1; ; attempt++ {
		_, err := pool.Exec(ctx, sqlCreateLock)
		if err == nil {
			_, err = pool.Exec(ctx, sqlInsertLock)
		}
		if err == nil {
			return nil
		}
		switch pgCode(err) {
		case sqlUniqueViolation, sqlDuplicateTable, sqlDuplicateObject, sqlSerializationFailure:
			if attempt < maxAttempts {
				continue
			}
		}
		return fmt.Errorf("postgres: create schema_lock: %w", err)
	}
}

// migrateOne takes the schema lock, then applies the next migration if
// there is one. done reports that the schema is up to date.
func migrateOne(ctx context.Context, tx pgx.Tx, all []migration) (done bool, err error) {
	tag, err := tx.Exec(ctx, sqlTakeLock, ms(time.Now()))
	if err != nil {
		return false, fmt.Errorf("postgres: take schema lock: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return false, errors.New("postgres: schema_lock has no row")
	}
	if _, err := tx.Exec(ctx, sqlCreateVersions); err != nil {
		return false, fmt.Errorf("postgres: create schema_migrations: %w", err)
	}
	var cur int64
	if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&cur); err != nil {
		return false, fmt.Errorf("postgres: read schema version: %w", err)
	}
	if cur > int64(len(all)) {
		return false, fmt.Errorf("postgres: database schema version %d is newer than this binary supports (%d); upgrade hush", cur, len(all))
	}
	if cur == int64(len(all)) {
		return true, nil
	}
	m := all[cur]
	// No arguments: pgx sends the file as one simple-protocol query, which
	// may hold several statements.
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("postgres: migration %s: %w", m.Name, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, applied_ms) VALUES ($1, $2, $3)",
		m.Version, m.Name, ms(time.Now())); err != nil {
		return false, fmt.Errorf("postgres: record migration %s: %w", m.Name, err)
	}
	return false, nil
}
