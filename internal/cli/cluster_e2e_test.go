package cli_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hush-chat/hush/client"
)

// TestClusterTwoNodes runs two "hush serve" processes sharing one fresh
// PostgreSQL schema, one NATS server and one --server-key file. alice
// registers on node 1, bob on node 2 (each client pins the key it was
// given there). Messages go both ways live. Then node 2 is killed with
// SIGKILL while alice keeps sending; bob, pointed at node 1, gets every
// message exactly once.
func TestClusterTwoNodes(t *testing.T) {
	pgURL, natsURL := os.Getenv("HUSH_TEST_POSTGRES"), os.Getenv("HUSH_TEST_NATS")
	if pgURL == "" || natsURL == "" {
		t.Skip("needs HUSH_TEST_POSTGRES and HUSH_TEST_NATS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	dir := t.TempDir()
	tag := strings.ToLower(rand.Text()[:10])
	db := freshSchema(t, pgURL, "hush_test_cluster_"+tag)
	args := []string{"--db", db, "--nats", natsURL, "--nats-prefix", "hushtest-" + tag,
		"--server-key", filepath.Join(dir, "server.key")}
	node1 := startNode(t, filepath.Join(dir, "node1"), args...)
	node2 := startNode(t, filepath.Join(dir, "node2"), args...)
	for _, n := range []*nodeProc{node1, node2} {
		if code := httpStatus(t, n.URL+"/readyz"); code != http.StatusOK {
			t.Fatalf("/readyz on %s: %d", n.URL, code)
		}
	}

	alice := openClient(t, filepath.Join(dir, "alice"), "")
	bob := openClient(t, filepath.Join(dir, "bob"), "")
	if err := alice.Register(ctx, node1.URL, "alice"); err != nil {
		t.Fatalf("register alice on node 1: %v", err)
	}
	if err := bob.Register(ctx, node2.URL, "bob"); err != nil {
		t.Fatalf("register bob on node 2: %v", err)
	}
	// Contacts both ways, so every message is shown at once and, once
	// the delivery tokens have crossed, sent sealed: sender certificates
	// from node 1 must verify with the key bob pinned on node 2.
	if _, err := alice.Accept(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Accept(ctx, "alice"); err != nil {
		t.Fatal(err)
	}

	// Take in the tokens before receiving in the background: a client
	// replaces a connection that had to drop pushes while nobody was
	// receiving, and a Send racing with that replacement fails.
	for _, c := range []*client.Client{alice, bob} {
		if err := c.Receive(ctx, 0, func(client.Event) {}); err != nil {
			t.Fatal(err)
		}
	}
	aliceIn := receiveForever(ctx, alice)
	bobIn := receiveForever(ctx, bob)
	exchange := func(i int) {
		t.Helper()
		text := fmt.Sprintf("live a2b %d", i)
		if _, err := alice.Send(ctx, "bob", text); err != nil {
			t.Fatalf("alice sends via node 1: %v", err)
		}
		bobIn.waitText(t, text)
		text = fmt.Sprintf("live b2a %d", i)
		if _, err := bob.Send(ctx, "alice", text); err != nil {
			t.Fatalf("bob sends via node 2: %v", err)
		}
		aliceIn.waitText(t, text)
	}
	// Once a message has come through, each receiver holds its
	// connection; every later message must come over it, pushed live.
	exchange(0)
	conns1, conns2 := node1.connected("alice"), node2.connected("bob")
	for i := 1; i <= 5; i++ {
		exchange(i)
	}
	if n1, n2 := node1.connected("alice"), node2.connected("bob"); n1 != conns1 || n2 != conns2 {
		t.Fatalf("live messages needed new connections (alice %d→%d on node 1, bob %d→%d on node 2)", conns1, n1, conns2, n2)
	}

	// Node 2 dies mid-stream.
	const total = 40
	sent := make(chan error, 1)
	go func() {
		for i := range total {
			if _, err := alice.Send(ctx, "bob", fmt.Sprintf("seq %03d", i)); err != nil {
				sent <- fmt.Errorf("send %d: %w", i, err)
				return
			}
			// Pacing, so that node 2 dies with messages before and after.
			time.Sleep(20 * time.Millisecond)
		}
		sent <- nil
	}()
	bobIn.waitCount(t, "seq ", 10)
	node2.kill()
	if err := bobIn.wait(t); err == nil {
		t.Fatal("bob's receive on node 2 ended without an error when node 2 died")
	}
	if err := <-sent; err != nil {
		t.Fatalf("alice, on node 1, could not send while node 2 was down: %v", err)
	}
	got := bobIn.events()
	before := countPrefix(got, "seq ")
	if before >= total {
		t.Fatalf("bob had all %d messages before node 2 died: the test shows nothing", total)
	}
	bob.Close()

	// Bob comes back through node 1 (as a load balancer would send him).
	bob = openClient(t, filepath.Join(dir, "bob"), node1.URL)
	deadline := time.Now().Add(time.Minute)
	for countPrefix(got, "seq ") < total {
		if time.Now().After(deadline) {
			t.Fatalf("bob has %d of %d messages after reconnecting to node 1", countPrefix(got, "seq "), total)
		}
		err := bob.Receive(ctx, 5*time.Second, func(e client.Event) {
			if m, ok := e.(*client.MessageEvent); ok {
				got = append(got, m)
			}
		})
		if err != nil {
			t.Fatalf("bob receives via node 1: %v", err)
		}
	}
	t.Logf("bob got %d messages on node 2 before it was killed, %d on node 1 after", before, countPrefix(got, "seq ")-before)
	seen := map[client.MessageID]bool{}
	texts := map[string]int{}
	for _, m := range got {
		if seen[m.ID] {
			t.Errorf("message %s (%q) handed over twice", m.ID, m.Text)
		}
		seen[m.ID] = true
		texts[m.Text]++
	}
	for i := range total {
		if n := texts[fmt.Sprintf("seq %03d", i)]; n != 1 {
			t.Errorf("seq %03d received %d times, want exactly once", i, n)
		}
	}
	// alice's messages went sealed, under certificates node 1 signed:
	// bob checked them against the key he pinned on node 2.
	if body := httpBody(t, node1.URL+"/metrics"); !regexp.MustCompile(`hush_requests_total\{code="ok",type="sealed_send"\} [1-9]`).MatchString(body) {
		t.Error("node 1 stored no sealed sends: the cross-node sender certificate path was not exercised")
	}
	if strings.Contains(node1.stderr.String(), "different server key") {
		t.Error("node 1 reports a node with another server key")
	}
}

// freshSchema creates a schema in the test database, dropped when the
// test ends, and returns a URL whose connections work in it.
func freshSchema(t *testing.T, base, schema string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatal("HUSH_TEST_POSTGRES must be a postgres:// URL")
	}
	exec := func(sql string) {
		cfg, err := pgxpool.ParseConfig(base)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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
	ident := pgx.Identifier{schema}.Sanitize()
	exec("CREATE SCHEMA " + ident)
	t.Cleanup(func() { exec("DROP SCHEMA " + ident + " CASCADE") })
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func openClient(t *testing.T, home, server string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Home: home, Server: server})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func httpStatus(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func httpBody(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func countPrefix(ms []*client.MessageEvent, prefix string) int {
	n := 0
	for _, m := range ms {
		if strings.HasPrefix(m.Text, prefix) {
			n++
		}
	}
	return n
}

// nodeProc is one running "hush serve" node.
type nodeProc struct {
	t      *testing.T
	URL    string
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan error
	once   sync.Once
}

// startNode starts "hush serve" on a free loopback port with data
// directory data, no proof of work, and args.
func startNode(t *testing.T, data string, args ...string) *nodeProc {
	t.Helper()
	n := &nodeProc{t: t, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	pr, pw := io.Pipe()
	n.cmd = exec.Command(hushBin, append([]string{"serve", "--listen", "127.0.0.1:0", "--data", data, "--pow-bits", "0", "--turn-listen", "127.0.0.1:0"}, args...)...)
	n.cmd.Stderr = pw
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := n.cmd.Wait()
		pw.Close()
		n.exited <- err
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			n.stderr.Write(append(sc.Bytes(), '\n'))
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case addr := <-found:
		n.URL = "http://" + addr
	case err := <-n.exited:
		t.Fatalf("hush serve exited: %v\n%s", err, n.stderr)
	case <-time.After(time.Minute):
		n.cmd.Process.Kill()
		t.Fatalf("hush serve did not report its address:\n%s", n.stderr)
	}
	t.Cleanup(n.stop)
	return n
}

// kill ends the node at once, as a crash would.
func (n *nodeProc) kill() {
	n.once.Do(func() {
		n.cmd.Process.Kill()
		<-n.exited
	})
}

// stop shuts the node down gracefully and checks it exits cleanly.
func (n *nodeProc) stop() {
	n.once.Do(func() {
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-n.exited:
			if err != nil {
				n.t.Errorf("hush serve exited with %v after SIGTERM:\n%s", err, n.stderr)
			}
		case <-time.After(30 * time.Second):
			n.cmd.Process.Kill()
			<-n.exited
			n.t.Errorf("hush serve did not stop within 30s of SIGTERM")
		}
	})
	if n.t.Failed() {
		n.t.Logf("%s log:\n%s", n.URL, n.stderr)
	}
}

// connected counts the node's "connected" log lines for user.
func (n *nodeProc) connected(user string) int {
	re := regexp.MustCompile(`msg=connected user=` + regexp.QuoteMeta(user) + ` `)
	return len(re.FindAllString(n.stderr.String(), -1))
}

// inbox is a client receiving in the background.
type inbox struct {
	mu     sync.Mutex
	msgs   []*client.MessageEvent
	change chan struct{} // closed and replaced on every event
	done   chan struct{}
	err    error
}

// receiveForever runs c.Receive(Forever) until ctx ends or it fails.
func receiveForever(ctx context.Context, c *client.Client) *inbox {
	in := &inbox{change: make(chan struct{}), done: make(chan struct{})}
	go func() {
		err := c.Receive(ctx, client.Forever, func(e client.Event) {
			m, ok := e.(*client.MessageEvent)
			if !ok {
				return
			}
			in.mu.Lock()
			in.msgs = append(in.msgs, m)
			close(in.change)
			in.change = make(chan struct{})
			in.mu.Unlock()
		})
		in.mu.Lock()
		in.err = err
		in.mu.Unlock()
		close(in.done)
	}()
	return in
}

func (in *inbox) events() []*client.MessageEvent {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]*client.MessageEvent(nil), in.msgs...)
}

// until waits for cond over the messages so far, up to 30s.
func (in *inbox) until(t *testing.T, what string, cond func([]*client.MessageEvent) bool) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		in.mu.Lock()
		ok, ch := cond(in.msgs), in.change
		in.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-in.done:
			t.Fatalf("receiving ended (%v) while waiting for %s", in.err, what)
		case <-timeout:
			t.Fatalf("no %s within 30s", what)
		}
	}
}

func (in *inbox) waitText(t *testing.T, text string) {
	t.Helper()
	in.until(t, fmt.Sprintf("message %q", text), func(ms []*client.MessageEvent) bool {
		for _, m := range ms {
			if m.Text == text {
				return true
			}
		}
		return false
	})
}

func (in *inbox) waitCount(t *testing.T, prefix string, n int) {
	t.Helper()
	in.until(t, fmt.Sprintf("%d messages starting %q", n, prefix), func(ms []*client.MessageEvent) bool {
		return countPrefix(ms, prefix) >= n
	})
}

// wait returns Receive's error once it has ended.
func (in *inbox) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-in.done:
		return in.err
	case <-time.After(time.Minute):
		t.Fatal("receiving did not end")
	}
	return nil
}
