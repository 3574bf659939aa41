package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	storetest.Run(t, func(t *testing.T, name string) store.Store {
		s, err := Open(t.Context(), filepath.Join(dir, name+".db"))
		if err != nil {
			t.Fatalf("Open(%q): %v", name, err)
		}
		return s
	})
}

func openT(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addBob registers bob with devices 1..n, no prekeys.
func addBob(t testing.TB, s *Store, n uint32) {
	t.Helper()
	var devs []store.Device
	for id := uint32(1); id <= n; id++ {
		devs = append(devs, store.Device{ID: id, SigningKey: []byte("sk"), IdentityKey: []byte("ik")})
	}
	a := store.Account{Username: "bob", AccountKey: []byte("ak"), DeviceList: []byte("list"), DeviceListVersion: 1}
	if err := s.CreateAccount(context.Background(), a, devs, nil); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
}

func message(to uint32, id uint64, content string) store.Message {
	mid := make([]byte, 16)
	for i := range 8 {
		mid[15-i] = byte(id >> (8 * i))
	}
	now := time.Now()
	return store.Message{
		Recipient: store.DeviceRef{Username: "bob", ID: to}, MessageID: mid,
		Sender: "alice", SenderDevice: 1, Content: []byte(content),
		Received: now, Expires: now.Add(30 * 24 * time.Hour),
	}
}

func TestFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "db")
	path := filepath.Join(dir, "hush.db")
	s := openT(t, path)
	addBob(t, s, 1)
	if _, err := s.Enqueue(t.Context(), []store.Message{message(1, 1, "x")}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 {
			t.Errorf("directory %s has mode %v, want 0700", d, perm)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, e.Name())
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), perm)
		}
	}
	// The WAL and shared-memory files exist while the store is open; they
	// hold the same data and must be just as private.
	for _, want := range []string{"hush.db", "hush.db-wal", "hush.db-shm"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("%s missing from %v", want, names)
		}
	}
}

func TestDurabilitySettings(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "hush.db"))
	ctx := t.Context()
	for _, db := range []struct {
		name string
		db   *sql.DB
	}{{"writer", s.w}, {"reader", s.r}} {
		var mode string
		var syncMode, fk, busy int
		if err := db.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if err := db.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
			t.Fatal(err)
		}
		if err := db.db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := db.db.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" || syncMode != 2 || fk != 1 || busy != int(busyTimeout.Milliseconds()) {
			t.Errorf("%s: journal_mode=%s synchronous=%d foreign_keys=%d busy_timeout=%d; want wal, 2 (FULL), 1, %d",
				db.name, mode, syncMode, fk, busy, busyTimeout.Milliseconds())
		}
	}
	// The read pool cannot write, so no write can bypass the single writer.
	if _, err := s.r.ExecContext(ctx, "DELETE FROM messages"); err == nil {
		t.Error("the read pool accepted a write")
	}
}

func TestMigrationsAreNumbered(t *testing.T) {
	all, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range all {
		if m.Version != i+1 || strings.TrimSpace(m.SQL) == "" {
			t.Errorf("migration %d: %+v", i, m)
		}
	}
}

func TestMigrationsRecordedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hush.db")
	for range 2 {
		s := openT(t, path)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := openT(t, path)
	all, _ := loadMigrations()
	var n, v int
	if err := s.r.QueryRow("SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != len(all) || v != len(all) {
		t.Fatalf("schema_migrations has %d rows up to %d, want %d", n, v, len(all))
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hush.db")
	s := openT(t, path)
	addBob(t, s, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A newer binary migrated this file further.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO schema_migrations (version, name, applied_ms) VALUES (9999, '9999_future.sql', 0)"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err = Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a database with a newer schema")
	}
	if !strings.Contains(err.Error(), "9999") || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("error does not say the schema is newer: %v", err)
	}
}

func TestPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%20 d")
	path := filepath.Join(dir, "hush.db")
	s := openT(t, path)
	addBob(t, s, 1)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not created at its path: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(dir))
	if len(entries) != 1 {
		t.Fatalf("files created outside the directory: %v", entries)
	}
}

// TestTwoStoresOnOneFile stands in for two processes sharing the file:
// their writers contend for SQLite's lock and must wait, not fail.
func TestTwoStoresOnOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hush.db")
	a := openT(t, path)
	addBob(t, a, 2)
	b := openT(t, path)
	var wg sync.WaitGroup
	for i, s := range []*Store{a, b} {
		wg.Go(func() {
			for j := range 50 {
				id := uint64(i*1000 + j)
				if _, err := s.Enqueue(t.Context(), []store.Message{message(1, id, "x"), message(2, id, "x")}); err != nil {
					t.Errorf("store %d: Enqueue: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	msgs, err := a.Pending(t.Context(), store.DeviceRef{Username: "bob", ID: 1}, 0, 1000, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 100 {
		t.Fatalf("%d messages stored, want 100", len(msgs))
	}
}

const crashEnv = "HUSH_SQLITE_CRASH_DB"

// TestMessageSurvivesKill stores a message in a child process that is then
// killed without closing the store; the message must be there on reopen.
func TestMessageSurvivesKill(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "hush.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMessageSurvivesKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Exited() {
		t.Fatalf("child was not killed: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "stored\n") {
		t.Fatalf("child did not store the message\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
	}

	s := openT(t, path)
	msgs, err := s.Pending(t.Context(), store.DeviceRef{Username: "bob", ID: 1}, 0, 10, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || string(msgs[0].Content) != "survives" {
		t.Fatalf("after the crash the queue holds %+v, want the stored message", msgs)
	}
}

// crashChild stores one message and kills its own process before the
// store can be closed or the WAL checkpointed.
func crashChild(path string) {
	s, err := Open(context.Background(), path)
	if err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(3)
	}
	a := store.Account{Username: "bob", AccountKey: []byte("ak"), DeviceList: []byte("list"), DeviceListVersion: 1}
	if err := s.CreateAccount(context.Background(), a, []store.Device{{ID: 1, SigningKey: []byte("sk"), IdentityKey: []byte("ik")}}, nil); err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(3)
	}
	if _, err := s.Enqueue(context.Background(), []store.Message{message(1, 1, "survives")}); err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(3)
	}
	os.Stdout.WriteString("stored\n")
	p, err := os.FindProcess(os.Getpid())
	if err == nil {
		err = p.Kill()
	}
	if err != nil {
		os.Stderr.WriteString("could not kill self: " + err.Error())
		os.Exit(3)
	}
	// SIGKILL is on its way; wait for it rather than return into code that
	// could close the store. Exiting normally makes the parent fail.
	time.Sleep(time.Minute)
	os.Exit(3)
}
