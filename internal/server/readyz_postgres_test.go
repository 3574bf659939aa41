package server

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hush-chat/hush/internal/store/postgres"
)

// TestReadyzFailsWhenPostgresIsUnreachable: a node on PostgreSQL is ready
// while the database answers and not ready once the network path to it
// is cut (a proxy in between is closed, with its connections).
func TestReadyzFailsWhenPostgresIsUnreachable(t *testing.T) {
	base := os.Getenv("HUSH_TEST_POSTGRES")
	if base == "" {
		t.Skip("HUSH_TEST_POSTGRES is not set")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	schema := "hush_test_readyz_" + strings.ToLower(rand.Text()[:10])
	adminExec(t, base, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
	t.Cleanup(func() { adminExec(t, base, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE") })

	p := startProxy(t, u.Host)
	u.Host = p.addr()
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	st, err := postgres.Open(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ts := startServer(t, func(c *Config) { c.Store = st })

	if s, _ := ts.get(t, "/readyz"); s != http.StatusOK {
		t.Fatalf("/readyz with PostgreSQL reachable: %d", s)
	}
	p.cut()
	if s, _ := ts.get(t, "/readyz"); s != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with PostgreSQL unreachable: %d, want 503", s)
	}
	if s, _ := ts.get(t, "/healthz"); s != http.StatusOK {
		t.Fatalf("/healthz (the process is alive) answered %d", s)
	}
}

func adminExec(t testing.TB, base, sql string) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// tcpProxy forwards connections to target until cut.
type tcpProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  bool
}

func startProxy(t testing.TB, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln}
	t.Cleanup(p.cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, up) {
				return
			}
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

// cut closes the listener and every forwarded connection.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
