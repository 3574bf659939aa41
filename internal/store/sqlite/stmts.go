package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The per-message statements are prepared once: compiling SQL took close
// to half the CPU of a message's trip through the store. database/sql
// keeps each prepared statement per connection and re-prepares it on a new
// connection by itself.

const (
	sqlDevice = `SELECT signing_key, identity_key, created_ms, last_seen_ms
		FROM devices WHERE username = ? AND device_id = ?`
	sqlInsertMessage = `INSERT INTO messages
		(username, device_id, message_id, sender, sender_device, content, received_ms, expires_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (username, device_id, message_id) DO NOTHING
		RETURNING seq`
	messageCols      = "seq, message_id, sender, sender_device, content, received_ms, expires_ms"
	sqlStoredMessage = "SELECT " + messageCols +
		" FROM messages WHERE username = ? AND device_id = ? AND message_id = ?"
	sqlPending = "SELECT " + messageCols + ` FROM messages
		WHERE username = ? AND device_id = ? AND seq > ? AND expires_ms >= ?
		ORDER BY seq LIMIT ?`
	sqlAck = "DELETE FROM messages WHERE username = ? AND device_id = ? AND seq = ?"
)

// writeStmts are prepared on the write connection.
type writeStmts struct {
	device, insertMessage, storedMessage, ack *sql.Stmt
	savepoint, rollbackTo, release            *sql.Stmt
}

// readStmts are prepared on the read pool.
type readStmts struct {
	device, pending *sql.Stmt
}

func prepare(ctx context.Context, db *sql.DB, dst map[**sql.Stmt]string) error {
	for p, q := range dst {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite: prepare %q: %w", q, err)
		}
		*p = st
	}
	return nil
}

func prepareWrite(ctx context.Context, db *sql.DB) (*writeStmts, error) {
	s := &writeStmts{}
	err := prepare(ctx, db, map[**sql.Stmt]string{
		&s.device:        sqlDevice,
		&s.insertMessage: sqlInsertMessage,
		&s.storedMessage: sqlStoredMessage,
		&s.ack:           sqlAck,
		&s.savepoint:     "SAVEPOINT write",
		&s.rollbackTo:    "ROLLBACK TO write",
		&s.release:       "RELEASE write",
	})
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func prepareRead(ctx context.Context, db *sql.DB) (*readStmts, error) {
	s := &readStmts{}
	err := prepare(ctx, db, map[**sql.Stmt]string{&s.device: sqlDevice, &s.pending: sqlPending})
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func closeAll(sts ...*sql.Stmt) error {
	var errs []error
	for _, st := range sts {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

func (s *writeStmts) close() error {
	return closeAll(s.device, s.insertMessage, s.storedMessage, s.ack, s.savepoint, s.rollbackTo, s.release)
}

func (s *readStmts) close() error { return closeAll(s.device, s.pending) }
