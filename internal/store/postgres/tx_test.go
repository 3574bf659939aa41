package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRetry(t *testing.T) {
	serialization := &pgconn.PgError{Code: sqlSerializationFailure}
	deadlock := &pgconn.PgError{Code: sqlDeadlockDetected}
	unique := &pgconn.PgError{Code: sqlUniqueViolation}
	tests := []struct {
		name      string
		errs      []error // what successive attempts return; nil after the list
		wantCalls int
		wantErr   error
	}{
		{"success at once", nil, 1, nil},
		{"serialization failures, then success", []error{serialization, serialization}, 3, nil},
		{"deadlock, then success", []error{deadlock}, 2, nil},
		{"wrapped serialization failure is retried", []error{wrap(serialization)}, 2, nil},
		{"other server errors are not retried", []error{unique}, 1, unique},
		{"other errors are not retried", []error{errBoom}, 1, errBoom},
		{"gives up after maxAttempts", repeat(serialization, maxAttempts+5), maxAttempts, serialization},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := retry(t.Context(), func() error {
				calls++
				if calls <= len(tc.errs) {
					return tc.errs[calls-1]
				}
				return nil
			})
			if calls != tc.wantCalls {
				t.Errorf("%d attempts, want %d", calls, tc.wantCalls)
			}
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestRetryStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	err := retry(ctx, func() error {
		calls++
		cancel()
		return &pgconn.PgError{Code: sqlSerializationFailure}
	})
	if calls != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("%d attempts, error %v; want 1 attempt and context.Canceled", calls, err)
	}
}

var errBoom = errors.New("boom")

type wrapped struct{ err error }

func (w wrapped) Error() string { return "wrapped: " + w.err.Error() }
func (w wrapped) Unwrap() error { return w.err }

func wrap(err error) error { return wrapped{err} }

func repeat(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}
