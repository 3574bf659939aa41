package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

// The schema lives in numbered files, migrations/NNNN_name.sql, applied in
// order; each one, with its row in schema_migrations, commits or rolls back
// as a unit. A released migration is never edited: a change is a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the embedded migrations and checks they are numbered
// 1, 2, 3, … without gaps, so "schema version N" means the same everywhere.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("sqlite: read migrations: %w", err)
	}
	var all []migration
	for _, e := range entries { // ReadDir sorts by name
		name := e.Name()
		num, _, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || len(num) != 4 || err != nil {
			return nil, fmt.Errorf("sqlite: migration %q is not named NNNN_name.sql", name)
		}
		if v != len(all)+1 {
			return nil, fmt.Errorf("sqlite: migration %q has version %d, want %d", name, v, len(all)+1)
		}
		body, err := migrationFS.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, fmt.Errorf("sqlite: read migration %q: %w", name, err)
		}
		all = append(all, migration{version: v, name: name, sql: string(body)})
	}
	return all, nil
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
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("sqlite: migration %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)",
		m.version, m.name, ms(time.Now())); err != nil {
		return false, fmt.Errorf("sqlite: record migration %s: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: commit migration %s: %w", m.name, err)
	}
	return false, nil
}
