// Package sqlite is the default store.Store: one SQLite file in the
// server's data directory, through modernc.org/sqlite (pure Go, no cgo).
//
// Durability: WAL journal with synchronous=FULL, so a call that returned
// has its transaction fsynced and survives a crash or power loss.
//
// Concurrency: SQLite allows one writer at a time. Every write goes through
// one goroutine that owns the only write connection, so writers queue in Go
// instead of failing with SQLITE_BUSY, and a read-then-write inside one
// transaction (TakePrekeys, UpdateDeviceList) cannot race another writer.
// Writes that queue up together share one commit (writer.go). Reads use a
// separate read-only pool; WAL lets them run beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/hush-chat/hush/internal/store"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// busyTimeout bounds how long a connection waits for a lock held by
// another process (or a checkpoint) before giving up.
const busyTimeout = 10 * time.Second

// Store is a store.Store backed by one SQLite database file.
type Store struct {
	w  *sql.DB // exactly one connection: all writes, through wr
	ws *writeStmts
	wr *writer
	r  *sql.DB // read-only connections
	rs *readStmts

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at path and brings its
// schema up to date. A new file is created 0600 and a missing parent
// directory 0700, since the database names every user and device. A
// database whose schema is newer than this binary knows is refused.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: database path %q: %w", path, err)
	}
	if err := createPrivate(abs); err != nil {
		return nil, err
	}

	w, err := openPool(abs, true)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := checkPragmas(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}

	ws, err := prepareWrite(ctx, w)
	if err != nil {
		w.Close()
		return nil, err
	}

	r, err := openPool(abs, false)
	if err != nil {
		ws.close()
		w.Close()
		return nil, err
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	rs, err := prepareRead(ctx, r)
	if err != nil {
		r.Close()
		ws.close()
		w.Close()
		return nil, err
	}
	return &Store{w: w, ws: ws, wr: newWriter(w, ws), r: r, rs: rs}, nil
}

// createPrivate makes the database's directory (0700) and file (0600) if
// they do not exist yet. SQLite gives the -wal and -shm files the mode of
// the database file, so they inherit 0600. Existing files keep their mode:
// the operator may have chosen it.
func createPrivate(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sqlite: create directory %s: %w", dir, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case errors.Is(err, os.ErrExist):
		return nil
	case err != nil:
		return fmt.Errorf("sqlite: create %s: %w", path, err)
	}
	return f.Close()
}

// openPool opens a connection pool on the file. The URI form lets any
// path (even one containing '?' or '#') reach SQLite intact; the pragmas
// run on every new connection.
func openPool(path string, write bool) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(FULL)")
	if write {
		q.Add("_pragma", "journal_mode(WAL)")
		// Take the write lock at BEGIN, so a transaction that reads before
		// it writes cannot fail half-way with SQLITE_BUSY when another
		// process holds the lock.
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	u := url.URL{Scheme: "file", Path: path, OmitHost: true, RawQuery: q.Encode()}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// checkPragmas makes sure the settings durability depends on took effect:
// journal_mode=WAL can silently stay on another mode (e.g. on a file
// system without shared memory).
func checkPragmas(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: read journal_mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("sqlite: journal_mode is %q, want wal", mode)
	}
	var syncMode, fk int
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return fmt.Errorf("sqlite: read synchronous: %w", err)
	}
	if syncMode < 2 {
		return fmt.Errorf("sqlite: synchronous is %d, want FULL (2)", syncMode)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return fmt.Errorf("sqlite: read foreign_keys: %w", err)
	}
	if fk != 1 {
		return errors.New("sqlite: foreign keys are off")
	}
	return nil
}

// Ping checks the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close waits for the write in progress, then closes both pools; the
// writer last, so the final connection checkpoints the WAL into the main
// file. Later calls fail; calling Close again returns the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.wr.close()
		s.closeErr = errors.Join(s.rs.close(), s.r.Close(), s.ws.close(), s.w.Close())
	})
	return s.closeErr
}

// writeTx runs fn in a write transaction and returns once its changes are
// durably committed, or rolled back if fn failed. fn must use the ctx it is
// given, not its caller's (see writer.commit).
func (s *Store) writeTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.wr.do(ctx, fn)
}

// readTx runs fn in one read transaction, so its queries see one snapshot.
func (s *Store) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx)
}

// ms stores a time as unix milliseconds; fromMS reverses it.
func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v) }

// int64Of converts a uint64 for storage; SQLite integers are signed.
func int64Of(what string, v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("sqlite: %s %d is too large to store", what, v)
	}
	return int64(v), nil
}

// nonNil turns a nil slice into an empty one, so NOT NULL BLOB columns get
// a zero-length blob instead of NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// queryer is what both *sql.Tx and *sql.DB offer, so lookups can run
// inside or outside a transaction.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// notFound wraps store.ErrNotFound with what was missing.
func notFound(format string, args ...any) error {
	return fmt.Errorf("sqlite: %s: %w", fmt.Sprintf(format, args...), store.ErrNotFound)
}
