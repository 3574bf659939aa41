package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hush-chat/hush/internal/natsbus"
	"github.com/hush-chat/hush/internal/server"
	"github.com/hush-chat/hush/internal/store/postgres"
)

// What "hush serve" connects to beyond its data directory: PostgreSQL
// (--db) and NATS (--nats), for several nodes sharing one deployment
// (docs/deploy.md).

// backendFlags are serve's --db, --nats, --nats-prefix and --server-key.
type backendFlags struct {
	db, nats, natsPrefix, serverKey string
}

// check refuses combinations that cannot work.
func (f backendFlags) check() error {
	if f.db != "" && !strings.HasPrefix(f.db, "postgres://") && !strings.HasPrefix(f.db, "postgresql://") {
		return usagef("serve: --db takes a postgres:// URL (without --db the database is SQLite in --data)")
	}
	if f.nats != "" && f.db == "" {
		return usagef("serve: --nats is for several nodes, which must share one database: add --db postgres://…")
	}
	if f.natsPrefix == "" {
		return usagef("serve: --nats-prefix must not be empty")
	}
	return nil
}

// backends are what the server is given; close releases them once the
// server has stopped.
type backends struct {
	cfg    server.Config // Store, Bus, LowBus, Control, ServerKeyFile
	closes []func() error
}

// openBackends connects to PostgreSQL and NATS as the flags say. Neither
// URL is ever printed: pgx and natsbus redact passwords in their errors.
func openBackends(ctx context.Context, f backendFlags, logger *slog.Logger) (*backends, error) {
	b := &backends{}
	b.cfg.ServerKeyFile = f.serverKey
	if f.db != "" {
		octx, cancel := context.WithTimeout(ctx, time.Minute)
		st, err := postgres.Open(octx, f.db)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("serve: open the database: %w", err)
		}
		b.cfg.Store = st
		b.closes = append(b.closes, st.Close)
	}
	if f.nats != "" {
		// Two buses under sibling prefixes: new mail, and low prekeys.
		// Control events ride on the first.
		for _, prefix := range []string{f.natsPrefix, f.natsPrefix + "-low"} {
			octx, cancel := context.WithTimeout(ctx, 30*time.Second)
			bus, err := natsbus.NewConfig(octx, natsbus.Config{URL: f.nats, Prefix: prefix}, logger)
			cancel()
			if err != nil {
				b.close()
				return nil, fmt.Errorf("serve: %w", err)
			}
			b.closes = append(b.closes, bus.Close)
			if b.cfg.Bus == nil {
				b.cfg.Bus, b.cfg.Control = bus, bus
			} else {
				b.cfg.LowBus = bus
			}
		}
		if f.serverKey == "" {
			logger.Warn("several nodes need one server key: give every node the same --server-key file")
		}
	}
	return b, nil
}

// close releases the buses, then the database, in reverse order of
// opening.
func (b *backends) close() error {
	var errs []error
	for i := len(b.closes) - 1; i >= 0; i-- {
		errs = append(errs, b.closes[i]())
	}
	b.closes = nil
	return errors.Join(errs...)
}
