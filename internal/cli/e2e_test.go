package cli_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCLIWalkthroughBothDirections(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	// A contact, so alice's messages are no message requests.
	bob.ok("accept", "alice")

	who := alice.ok("whoami")
	for _, want := range []string{"alice", "device:      1", s.URL, "fingerprint:"} {
		if !strings.Contains(who, want) {
			t.Errorf("whoami output %q lacks %q", who, want)
		}
	}
	alice.ok("send", "bob", "hello", "bob")
	alice.run("second line\n", "send", "bob", "-")
	if got := messages(t, bob.ok("recv")); !slices.Equal(got, []string{"alice: hello bob", "alice: second line"}) {
		t.Fatalf("bob's recv: %q", got)
	}
	if out := bob.ok("recv"); out != "" {
		t.Fatalf("second recv printed %q", out)
	}
	bob.ok("send", "alice", "hi alice")
	if got := messages(t, alice.ok("recv")); !slices.Equal(got, []string{"bob: hi alice"}) {
		t.Fatalf("alice's recv: %q", got)
	}
	// Home files are private.
	for path, want := range map[string]os.FileMode{alice.home: 0o700, filepath.Join(alice.home, "hush.db"): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", path, fi.Mode().Perm(), want, err)
		}
	}
}

func TestCLIRecvJSONFormat(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	// A contact, so alice's messages are no message requests.
	bob.ok("accept", "alice")
	before := time.Now().Add(-time.Second)
	alice.ok("send", "bob", `quotes " and \ backslash`)
	out := bob.ok("recv", "--json")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("recv --json printed %d lines: %q", len(lines), out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("not JSON: %q: %v", lines[0], err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"device", "from", "id", "received", "sent", "text", "type"}; !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	if m["from"] != "alice" || m["device"] != 1.0 || m["type"] != "text" || m["text"] != `quotes " and \ backslash` {
		t.Fatalf("object %v", m)
	}
	if id, _ := m["id"].(string); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Fatalf("id %q is not 32 hex digits", id)
	}
	for _, k := range []string{"sent", "received"} {
		ts, err := time.Parse(time.RFC3339, m[k].(string))
		if err != nil || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
			t.Fatalf("%s = %q: %v", k, m[k], err)
		}
	}
}

func TestCLISendToUnknownUser(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	r := alice.run("", "send", "carol", "hello?")
	if r.code != 1 || r.stderr != "hush: no user \"carol\"\n" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestCLIOversizedMessageRefused(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	register(t, s, "bob")
	big := strings.Repeat("a", 96<<10+1)
	for _, r := range []result{alice.run(big, "send", "bob", "-"), alice.run("", "send", "bob", big)} {
		if r.code != 1 || !strings.HasPrefix(r.stderr, "hush: message") || !strings.Contains(r.stderr, "limit") || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	}
}

func TestCLIServerDownKeepsMessageInOutbox(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	// A contact, so alice's messages are no message requests.
	bob.ok("accept", "alice")
	s.stop()
	r := alice.run("", "send", "bob", "written while the server was down")
	if want := "hush: server unreachable at " + s.URL + "; message kept in outbox\n"; r.code != 1 || r.stderr != want {
		t.Fatalf("exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	r = bob.run("", "recv")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "hush: server unreachable at "+s.URL) {
		t.Fatalf("recv while down: exit %d, stderr %q", r.code, r.stderr)
	}
	s.start()
	// alice's next recv flushes her outbox; then bob has it.
	alice.ok("recv")
	if got := messages(t, bob.ok("recv")); !slices.Equal(got, []string{"alice: written while the server was down"}) {
		t.Fatalf("bob got %q", got)
	}
}

func TestCLIServerRestartBetweenSendAndReceive(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	// A contact, so alice's messages are no message requests.
	bob.ok("accept", "alice")
	alice.ok("send", "bob", "before the restart")
	s.restart()
	if got := messages(t, bob.ok("recv")); !slices.Equal(got, []string{"alice: before the restart"}) {
		t.Fatalf("bob got %q", got)
	}
}

func TestCLIRecvWaitsForAMessage(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	// A contact, so alice's messages are no message requests.
	bob.ok("accept", "alice")
	if r := bob.run("", "recv", "--wait", "100ms"); r.code != 0 || r.stdout != "" {
		t.Fatalf("recv --wait with nothing: %+v", r)
	}
	connected := func() int { return strings.Count(s.stderr.String(), "msg=connected user=bob") }
	before := connected()
	done := make(chan result, 1)
	go func() { done <- bob.run("", "recv", "--wait", "2m") }()
	// Send once bob's recv is connected (the server logs it), so the
	// message arrives live; should the log change, the backlog path is
	// tested instead.
	deadline := time.Now().Add(10 * time.Second)
	for connected() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	alice.ok("send", "bob", "ping")
	select {
	case r := <-done:
		if got := messages(t, r.stdout); r.code != 0 || !slices.Equal(got, []string{"alice: ping"}) {
			t.Fatalf("recv --wait: %+v", r)
		}
	case <-time.After(time.Minute):
		t.Fatal("recv --wait did not return after a message")
	}
}

func TestCLIChatLineMode(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	// A contact, so alice's messages are no message requests.
	bob.ok("accept", "alice")

	cmd := alice.command(t.Context(), "chat", "bob")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	fmt.Fprintln(stdin, "hello from chat")
	if got := messages(t, bob.ok("recv", "--wait", "1m")); !slices.Equal(got, []string{"alice: hello from chat"}) {
		t.Fatalf("bob got %q", got)
	}
	bob.ok("send", "alice", "reply to chat")
	// Bob's delivery receipt for the first message comes first.
	for got := []string(nil); len(got) == 0; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("chat ended; stderr: %s", stderr.String())
			}
			if got = messages(t, l); len(got) > 0 && !slices.Equal(got, []string{"bob: reply to chat"}) {
				t.Fatalf("chat printed %q", l)
			}
		case <-time.After(time.Minute):
			t.Fatalf("chat did not print the reply; stderr: %s", stderr.String())
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("chat exited with %v; stderr %s", err, stderr.String())
	}
}

func TestCLIThousandMessagesInOrder(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	// A contact, so alice's messages are no message requests.
	bob.ok("accept", "alice")
	const n = 1000
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "message %04d\n", i)
	}
	// chat's line mode sends one message per line, in one process.
	if r := alice.run(in.String(), "chat", "bob"); r.code != 0 {
		t.Fatalf("chat: exit %d, stderr %s", r.code, r.stderr)
	}
	out := bob.ok("recv", "--json")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("bob got %d messages, want %d", len(lines), n)
	}
	ids := map[string]bool{}
	for i, l := range lines {
		var m struct{ ID, From, Text string }
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("message %04d", i); m.Text != want || m.From != "alice" || ids[m.ID] {
			t.Fatalf("message %d: %+v, want %q once", i, m, want)
		}
		ids[m.ID] = true
	}
	if out := bob.ok("recv"); out != "" {
		t.Fatalf("delivered again: %q", out)
	}
}

// TestCLICanaryNeverReachesServer sends distinctive plaintexts and then
// searches every file of the server's data directory (database, WAL and
// shared-memory files included) and its log for them.
func TestCLICanaryNeverReachesServer(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	// A contact, so alice's messages are no message requests.
	bob.ok("accept", "alice")
	canaries := []string{
		"CANARY-7f3a9c-zebra-quartz",
		"canary two: the owl flies at midnight 4417",
		"КАНАРЕЙКА-юникод-9931",
	}
	alice.ok("send", "bob", canaries[0])
	alice.run(canaries[1]+"\n", "send", "bob", "-")
	alice.run(canaries[2]+"\n", "chat", "bob")
	bob.ok("send", "alice", canaries[0]+" echoed")

	check := func(when string) {
		t.Helper()
		files := 0
		err := filepath.Walk(s.data, func(path string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			files++
			t.Logf("%s: searching %s (%d bytes)", when, filepath.Base(path), fi.Size())
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, c := range canaries {
				if strings.Contains(string(b), c) {
					t.Errorf("%s: %s contains %q", when, path, c)
				}
			}
			return nil
		})
		if err != nil || files == 0 {
			t.Fatalf("%s: walked %d files: %v", when, files, err)
		}
		for _, c := range canaries {
			if strings.Contains(s.stderr.String(), c) {
				t.Errorf("%s: the server log contains %q", when, c)
			}
		}
	}
	// While running, queued ciphertext sits in the WAL.
	check("while queued")
	out := bob.ok("recv")
	alice.ok("recv")
	check("after delivery")
	s.stop()
	check("after shutdown")
	// Self-check: the search would have found them where they belong.
	for _, c := range canaries {
		if !strings.Contains(out, c) {
			t.Errorf("bob's own output lacks %q: the canary test is blind", c)
		}
	}
}

func TestCLIUsageAndErrors(t *testing.T) {
	s := startServe(t)
	u := newHome(t, s.URL)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{nil, 2, "hush: no command given"},
		{[]string{"frobnicate"}, 2, `hush: unknown command "frobnicate"`},
		{[]string{"send", "bob"}, 2, "hush: send takes USERNAME and TEXT"},
		{[]string{"recv", "--wait", "-1s"}, 2, "hush: recv: --wait must not be negative"},
		{[]string{"recv", "--bogus"}, 2, "hush: recv: flag provided but not defined"},
		{[]string{"register"}, 2, "hush: register takes one USERNAME"},
		{[]string{"whoami"}, 1, "hush: no account in " + u.home + `; run "hush register USERNAME" first`},
		{[]string{"send", "bob", "hi"}, 1, "hush: no account in"},
		{[]string{"register", "x"}, 1, "hush: invalid username"},
	} {
		r := u.run("", tc.args...)
		if r.code != tc.code || !strings.HasPrefix(r.stderr, tc.stderr) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("hush %q: exit %d, stderr %q; want exit %d, stderr starting %q", tc.args, r.code, r.stderr, tc.code, tc.stderr)
		}
	}
	if r := u.run("", "help"); r.code != 0 || !strings.Contains(r.stdout, "hush [--server URL] [--home DIR] recv") {
		t.Errorf("help: %+v", r)
	}
	u.ok("register", "Dora")
	r := u.run("", "register", "dora2")
	if r.code != 1 || !strings.Contains(r.stderr, "already has an account (dora)") {
		t.Errorf("second register: %+v", r)
	}
	other := newHome(t, s.URL)
	if r := other.run("", "register", "dora"); r.code != 1 || !strings.Contains(r.stderr, `"dora" is taken`) {
		t.Errorf("taken name: %+v", r)
	}
}
