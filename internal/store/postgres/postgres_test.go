package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hush-chat/hush/internal/store"
	"github.com/hush-chat/hush/internal/store/storetest"
)

// testURLEnv names the database the tests may use, as a postgres:// URL,
// e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable. Each test
// works in schemas of its own, created with a random name and dropped when
// it ends, so runs never see each other's data.
const testURLEnv = "HUSH_TEST_POSTGRES"

func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(testURLEnv)
	if u == "" {
		t.Skipf("%s is not set; skipping PostgreSQL tests", testURLEnv)
	}
	return u
}

// testSchemas hands out fresh schemas in the test database under one
// random prefix, and drops them all when the test that made it ends.
type testSchemas struct {
	base   string
	prefix string
	mu     sync.Mutex
	urls   map[string]string
}

func newTestSchemas(t testing.TB) *testSchemas {
	t.Helper()
	ts := &testSchemas{
		base:   testURL(t),
		prefix: fmt.Sprintf("hush_test_%08x", rand.Uint32()),
		urls:   map[string]string{},
	}
	t.Cleanup(func() {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for name := range ts.urls {
			if err := ts.admin(context.Background(), "DROP SCHEMA "+ts.ident(name)+" CASCADE"); err != nil {
				t.Errorf("drop schema for %q: %v", name, err)
			}
		}
	})
	return ts
}

func (ts *testSchemas) schema(name string) string { return ts.prefix + "_" + name }

func (ts *testSchemas) ident(name string) string { return pgx.Identifier{ts.schema(name)}.Sanitize() }

// admin runs statements on a connection of its own, outside any store.
// The URL is parsed as Open parses it, so pool settings in it (which a
// single connection would send to the server as unknown parameters) are
// understood.
func (ts *testSchemas) admin(ctx context.Context, sql ...string) error {
	cfg, err := pgxpool.ParseConfig(ts.base)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// url returns a URL whose connections work in schema name, creating the
// schema on first use.
func (ts *testSchemas) url(t testing.TB, name string) string {
	t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if u, ok := ts.urls[name]; ok {
		return u
	}
	u, err := url.Parse(ts.base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL", testURLEnv)
	}
	q := u.Query()
	q.Set("search_path", ts.schema(name))
	u.RawQuery = q.Encode()
	if err := ts.admin(context.Background(), "CREATE SCHEMA "+ts.ident(name)); err != nil {
		t.Fatalf("create schema for %q: %v", name, err)
	}
	ts.urls[name] = u.String()
	return ts.urls[name]
}

// open opens a store in schema name, closed when t ends.
func (ts *testSchemas) open(t testing.TB, name string) *Store {
	t.Helper()
	s, err := Open(context.Background(), ts.url(t, name))
	if err != nil {
		t.Fatalf("Open(%q): %v", name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the suite the SQLite store passes; each database
// name of the suite is a schema, so reopening a name sees its data.
func TestConformance(t *testing.T) {
	ts := newTestSchemas(t)
	storetest.Run(t, func(t *testing.T, name string) store.Store {
		s, err := Open(t.Context(), ts.url(t, name))
		if err != nil {
			t.Fatalf("Open(%q): %v", name, err)
		}
		return s
	})
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

func TestMigrationsRecordedOnceWhenNodesStartTogether(t *testing.T) {
	ts := newTestSchemas(t)
	u := ts.url(t, "start_together")
	const nodes = 6
	stores := make([]*Store, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), u) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: Open: %v", i, err)
		}
		defer stores[i].Close()
	}

	all, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := stores[0].pool.Query(t.Context(), "SELECT version, name FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s", v, name))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range all {
		want = append(want, fmt.Sprintf("%d %s", m.Version, m.Name))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("schema_migrations holds %v, want %v", got, want)
	}
	// Every node works against the one schema.
	addBob(t, stores[0], 1)
	for i, s := range stores {
		if _, err := s.Device(t.Context(), store.DeviceRef{Username: "bob", ID: 1}); err != nil {
			t.Fatalf("node %d: Device: %v", i, err)
		}
	}
}

func TestDevicesOfAccountWithoutDevices(t *testing.T) {
	s := newTestSchemas(t).open(t, "no_devices")
	a := store.Account{Username: "erin", AccountKey: []byte("ak"), DeviceList: []byte("list"), DeviceListVersion: 1}
	if err := s.CreateAccount(t.Context(), a, nil, nil); err != nil {
		t.Fatal(err)
	}
	devs, err := s.Devices(t.Context(), "erin")
	if err != nil || len(devs) != 0 {
		t.Fatalf("Devices of an account without devices = %v, %v; want none and no error", devs, err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ts := newTestSchemas(t)
	s := ts.open(t, "newer_schema")
	addBob(t, s, 1)
	s.Close()
	if err := ts.admin(t.Context(),
		"INSERT INTO "+ts.ident("newer_schema")+".schema_migrations (version, name, applied_ms) VALUES (999, '0999_future.sql', 0)"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(t.Context(), ts.url(t, "newer_schema"))
	if err == nil || !strings.Contains(err.Error(), "schema version 999 is newer") {
		t.Fatalf("Open of a schema from a newer binary: %v, want a refusal naming version 999", err)
	}
}

func TestReopenKeepsSchema(t *testing.T) {
	ts := newTestSchemas(t)
	s := ts.open(t, "reopen")
	addBob(t, s, 1)
	s.Close()
	// A second Open migrates nothing and sees the data.
	s = ts.open(t, "reopen")
	if _, err := s.Device(t.Context(), store.DeviceRef{Username: "bob", ID: 1}); err != nil {
		t.Fatalf("Device after reopen: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	// Nothing listens on port 1; the error must still not repeat the
	// password, since callers log it.
	_, err := Open(t.Context(), "postgres://hush:s3cretpw@127.0.0.1:1/hush?connect_timeout=2")
	if err == nil {
		t.Fatal("Open of an unreachable database succeeded")
	}
	if strings.Contains(err.Error(), "s3cretpw") {
		t.Fatalf("error repeats the password: %v", err)
	}
	_, err = Open(t.Context(), "postgres://hush:s3cretpw@127.0.0.1:bad/hush")
	if err == nil || strings.Contains(err.Error(), "s3cretpw") {
		t.Fatalf("Open of a malformed URL: %v; want an error without the password", err)
	}
}

// TestPingFailsWhenCancelled checks Ping reports failure rather than
// hang or succeed when it cannot ask the server (here: no time left).
func TestPingFailsWhenCancelled(t *testing.T) {
	ts := newTestSchemas(t)
	s := ts.open(t, "ping")
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ping with a cancelled context: %v", err)
	}
}
