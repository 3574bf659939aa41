package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Group commit. Every write is a durable commit, and with synchronous=FULL
// a commit costs an fsync (about half a millisecond here), which would cap
// the store near 2,000 writes a second however many clients wait. So one
// goroutine owns the write connection and runs the writes that queued up
// during the previous commit together in one transaction: each inside its
// own SAVEPOINT, so a write that fails rolls back alone and its caller
// alone gets the error, and one COMMIT (one fsync) makes the whole group
// durable before any caller hears back.

// maxGroup bounds how many writes share one commit, so one commit's
// latency stays bounded.
const maxGroup = 128

var errClosed = errors.New("sqlite: store is closed")

type writeReq struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	done chan error // buffered: the writer never blocks on a caller
}

// writer owns the single write connection.
type writer struct {
	db   *sql.DB
	st   *writeStmts
	reqs chan *writeReq // unbuffered: a request is either taken or refused
	quit chan struct{}
	done chan struct{}
}

func newWriter(db *sql.DB, st *writeStmts) *writer {
	w := &writer{db: db, st: st, reqs: make(chan *writeReq), quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// close stops the writer after the group in progress; later writes fail.
func (w *writer) close() {
	close(w.quit)
	<-w.done
}

// do runs fn in a write transaction and returns once it is durably
// committed (nil) or rolled back (its error). Once the writer has taken
// the request the caller waits for the outcome even if ctx ends, so an
// error never hides a write that was in fact committed.
func (w *writer) do(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case w.reqs <- req:
	case <-w.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.done
}

func (w *writer) run() {
	defer close(w.done)
	group := make([]*writeReq, 0, maxGroup)
	for {
		select {
		case req := <-w.reqs:
			group = append(group[:0], req)
		case <-w.quit:
			return
		}
		// Take the writers already waiting; senders blocked on the
		// unbuffered channel are received without waiting for more.
	fill:
		for len(group) < maxGroup {
			select {
			case req := <-w.reqs:
				group = append(group, req)
			default:
				break fill
			}
		}
		w.commit(group)
	}
}

// commit runs one group in one transaction and tells every caller.
func (w *writer) commit(group []*writeReq) {
	errs := make([]error, len(group))
	finish := func(commitErr error) {
		for i, req := range group {
			if errs[i] == nil {
				errs[i] = commitErr
			}
			req.done <- errs[i]
		}
	}
	// The transaction and each statement run without the callers'
	// cancellation: a cancelled context makes SQLite interrupt the
	// statement, which can roll back the whole transaction and with it the
	// other callers' writes. A caller whose context ended while queued is
	// skipped instead.
	ctx := context.Background()
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		finish(fmt.Errorf("sqlite: begin: %w", err))
		return
	}
	single := len(group) == 1
	for i, req := range group {
		if err := req.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		rctx := context.WithoutCancel(req.ctx)
		if single {
			errs[i] = req.fn(rctx, tx)
			continue
		}
		if _, err := tx.StmtContext(ctx, w.st.savepoint).ExecContext(ctx); err != nil {
			_ = tx.Rollback()
			finish(fmt.Errorf("sqlite: savepoint: %w", err))
			return
		}
		errs[i] = req.fn(rctx, tx)
		if errs[i] != nil {
			if _, err := tx.StmtContext(ctx, w.st.rollbackTo).ExecContext(ctx); err != nil {
				_ = tx.Rollback()
				finish(fmt.Errorf("sqlite: rollback to savepoint: %w", err))
				return
			}
		}
		if _, err := tx.StmtContext(ctx, w.st.release).ExecContext(ctx); err != nil {
			_ = tx.Rollback()
			finish(fmt.Errorf("sqlite: release savepoint: %w", err))
			return
		}
	}
	if single && errs[0] != nil {
		_ = tx.Rollback()
		finish(nil)
		return
	}
	if err := tx.Commit(); err != nil {
		finish(fmt.Errorf("sqlite: commit: %w", err))
		return
	}
	finish(nil)
}
