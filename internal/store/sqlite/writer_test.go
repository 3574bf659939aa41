package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
)

// TestGroupCommitIsolatesWrites runs one group by hand: writes that fail
// (after changing something) or whose caller gave up are rolled back alone;
// the others commit together.
func TestGroupCommitIsolatesWrites(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "hush.db"))
	addBob(t, s, 1)
	insert := func(id uint64, fail error) func(ctx context.Context, tx *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			m := message(1, id, "x")
			if _, err := tx.ExecContext(ctx, `INSERT INTO messages
				(username, device_id, message_id, sender, sender_device, content, received_ms, expires_ms)
				VALUES ('bob', 1, ?, '', 0, x'00', 0, ?)`, m.MessageID, ms(m.Expires)); err != nil {
				return err
			}
			return fail
		}
	}
	errBoom := errors.New("boom")
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	group := []*writeReq{
		{ctx: t.Context(), fn: insert(1, nil)},
		{ctx: t.Context(), fn: insert(2, errBoom)},
		{ctx: t.Context(), fn: insert(3, nil)},
		{ctx: cancelled, fn: insert(4, nil)},
		{ctx: t.Context(), fn: insert(1, nil)}, // violates UNIQUE: a SQL error
		{ctx: t.Context(), fn: insert(5, nil)},
	}
	for _, r := range group {
		r.done = make(chan error, 1)
	}
	// The writer goroutine is idle, so the test may drive a group itself.
	s.wr.commit(group)

	want := []error{nil, errBoom, nil, context.Canceled, nil, nil}
	for i, r := range group {
		err := <-r.done
		switch {
		case i == 4:
			if err == nil {
				t.Errorf("write %d: duplicate insert succeeded", i)
			}
		case !errors.Is(err, want[i]):
			t.Errorf("write %d: %v, want %v", i, err, want[i])
		}
	}
	msgs, err := s.Pending(t.Context(), store.DeviceRef{Username: "bob", ID: 1}, 0, 100, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, m := range msgs {
		got = append(got, m.MessageID[15])
	}
	if string(got) != "\x01\x03\x05" {
		t.Fatalf("committed message ids %v, want [1 3 5]", got)
	}
}

// TestConcurrentWritesWithFailures mixes failing and succeeding writes
// from many goroutines, so they share commits: each caller gets its own
// outcome.
func TestConcurrentWritesWithFailures(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "hush.db"))
	addBob(t, s, 1)
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			to := uint32(1)
			if i%2 == 1 {
				to = 9 // no such device
			}
			_, err := s.Enqueue(t.Context(), []store.Message{message(to, uint64(i), "x")})
			if to == 1 && err != nil {
				t.Errorf("write %d: %v", i, err)
			}
			if to == 9 && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("write %d to a missing device: %v, want ErrNotFound", i, err)
			}
		})
	}
	wg.Wait()
	msgs, err := s.Pending(t.Context(), store.DeviceRef{Username: "bob", ID: 1}, 0, 1000, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n/2 {
		t.Fatalf("%d messages stored, want %d", len(msgs), n/2)
	}
}

func TestWritesAfterCloseFail(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "hush.db"))
	addBob(t, s, 1)
	// Writes racing Close each finish, one way or the other.
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			_, err := s.Enqueue(t.Context(), []store.Message{message(1, uint64(i), "x")})
			if err != nil && !errors.Is(err, errClosed) {
				t.Errorf("write %d: %v", i, err)
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	_, err := s.Enqueue(t.Context(), []store.Message{message(1, 100, "x")})
	if !errors.Is(err, errClosed) {
		t.Fatalf("Enqueue after Close: %v, want errClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCancelledWriteIsNotApplied(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "hush.db"))
	addBob(t, s, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Enqueue(ctx, []store.Message{message(1, 1, "x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue with a cancelled context: %v", err)
	}
	msgs, err := s.Pending(t.Context(), store.DeviceRef{Username: "bob", ID: 1}, 0, 10, time.Now())
	if err != nil || len(msgs) != 0 {
		t.Fatalf("Pending: %d messages, %v; want none", len(msgs), err)
	}
}
