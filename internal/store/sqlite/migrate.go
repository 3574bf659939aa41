package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	schema "github.com/hush-chat/hush/internal/migrate"
	"time"
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
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return ms, nil
}

// schemaVersion is the highest migration recorded, 0 for a new database.
func schemaVersion(ctx context.Context, q queryer) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlite: read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// migrate brings the database up to the newest embedded migration. It
// refuses a database written by a newer binary rather than run against a
// schema it does not understand.
func migrate(ctx context.Context, db *sql.DB) error {
	all, err := loadMigrations()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_ms INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("sqlite: create schema_migrations: %w", err)
	}
	for {
		done, err := migrateOne(ctx, db, all)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next migration, if any, in its own transaction.
// The version is re-read inside the transaction (which holds the write
// lock), so two processes opening the same file cannot both apply it.
func migrateOne(ctx context.Context, db *sql.DB, all []migration) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: begin migration: %w", err)
	}
	defer func() {
		if err != nil || done {
			_ = tx.Rollback()
		}
	}()
	cur, err := schemaVersion(ctx, tx)
	if err != nil {
		return false, err
	}
	if cur > len(all) {
		return false, fmt.Errorf("sqlite: database schema version %d is newer than this binary supports (%d); upgrade hush", cur, len(all))
	}
	if cur == len(all) {
		return true, nil
	}
	m := all[cur]
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("sqlite: migration %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)",
		m.Version, m.Name, ms(time.Now())); err != nil {
		return false, fmt.Errorf("sqlite: record migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: commit migration %s: %w", m.Name, err)
	}
	return false, nil
}
