package client

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	schema "github.com/hush-chat/hush/internal/migrate"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// dbFile is the name of the local database inside a home directory.
const dbFile = "hush.db"

//go:embed migrations/*.sql
var migrationFS embed.FS

type migration = schema.Migration

// loadMigrations reads the embedded migrations (internal/migrate checks
// their naming and numbering).
func loadMigrations() ([]migration, error) {
	ms, err := schema.Load(migrationFS)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return ms, nil
}

// openDB opens (creating if needed) the home's database: directory 0700,
// files 0600, WAL with synchronous=FULL so a committed transaction survives
// a power cut, and IMMEDIATE transactions so two processes sharing a home
// serialize their read-modify-write of ratchet state instead of both
// encrypting with the same chain key.
func openDB(ctx context.Context, home string) (*sql.DB, error) {
	if strings.ContainsAny(home, "?#") {
		return nil, fmt.Errorf("client: home directory %q must not contain '?' or '#'", home)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("client: create home: %w", err)
	}
	// MkdirAll keeps the mode of an existing directory; tighten it.
	if err := os.Chmod(home, 0o700); err != nil {
		return nil, fmt.Errorf("client: home: %w", err)
	}
	path := filepath.Join(home, dbFile)
	// Create the file ourselves so it never exists with looser permissions;
	// SQLite gives the -wal and -shm files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("client: create database: %w", err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("client: database permissions: %w", err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	// Erased messages (deleted, disappeared) are overwritten in the file,
	// not just unlinked (docs/protocol.md §12).
	q.Add("_pragma", "secure_delete(ON)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("client: open database: %w", err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// migrate applies the embedded migrations newer than PRAGMA user_version,
// each in its own transaction together with the version bump.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("client: open database: %w", err)
	}
	defer tx.Rollback()
	var have int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&have); err != nil {
		return fmt.Errorf("client: read schema version: %w", err)
	}
	if have > len(ms) {
		return fmt.Errorf("client: the local database has schema version %d, newer than this hush (%d); upgrade hush", have, len(ms))
	}
	for _, m := range ms[have:] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("client: migration %d: %w", m.Version, err)
		}
		// PRAGMA takes no bind parameters; the version is an int we made.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.Version)); err != nil {
			return fmt.Errorf("client: migration %d: %w", m.Version, err)
		}
	}
	return tx.Commit()
}

// inTx runs f in one IMMEDIATE transaction and commits it.
func inTx(ctx context.Context, db *sql.DB, f func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return &localError{err}
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return &localError{err}
	}
	return nil
}
