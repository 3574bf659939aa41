// Package postgres is the store.Store for more than one server node:
// PostgreSQL through github.com/jackc/pgx/v5, with SQL kept to what
// PostgreSQL-compatible distributed databases (CockroachDB, YugabyteDB)
// also run.
//
// Portability rules the code keeps: no advisory locks and no LISTEN/NOTIFY
// (correctness rests on row locks and transactions only); every write
// transaction is retried on serialization failures and deadlocks, which a
// distributed database reports where PostgreSQL would have waited (tx.go);
// the schema comes from embedded numbered migrations, serialised by a row
// lock (migrate.go).
//
// Times are stored as unix milliseconds (BIGINT), like the SQLite store, so
// both round-trip a time the same way. uint32 ids are stored as BIGINT,
// since PostgreSQL has no unsigned types.
package postgres

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hush-chat/hush/internal/store"
)

// Store is a store.Store backed by a PostgreSQL connection pool.
type Store struct {
	pool      *pgxpool.Pool
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or key=value
// connection string; pgx settings such as pool_max_conns and server
// parameters such as search_path may be given in it) and brings its schema
// up to date. The pool holds at most max(4, CPUs) connections unless
// pool_max_conns says otherwise; a node serving many devices wants more,
// since each commit holds a connection while the server flushes it. A database whose schema is newer than this binary knows is
// refused. Error messages never repeat the URL's password: pgx redacts it.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool}, nil
}

// Ping checks a connection can be had and the server answers (for /readyz).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close waits for connections in use to be returned, then closes them all.
// Later calls to other methods fail; calling Close again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// ms stores a time as unix milliseconds; fromMS reverses it.
func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v) }

// int64Of converts a uint64 for storage; BIGINT is signed.
func int64Of(what string, v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("postgres: %s %d is too large to store", what, v)
	}
	return int64(v), nil
}

// nonNil turns a nil slice into an empty one, so NOT NULL BYTEA columns get
// a zero-length value instead of NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// notFound wraps store.ErrNotFound with what was missing.
func notFound(format string, args ...any) error {
	return fmt.Errorf("postgres: %s: %w", fmt.Sprintf(format, args...), store.ErrNotFound)
}
