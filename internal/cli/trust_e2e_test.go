package cli_test

import (
	"database/sql"
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// fails runs hush and requires exit code 1 with want on stderr.
func (u *user) fails(want string, args ...string) result {
	u.t.Helper()
	r := u.run("", args...)
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		u.t.Fatalf("hush %v: exit %d, stderr %q; want exit 1 and %q", args, r.code, r.stderr, want)
	}
	return r
}

var safetyLine = regexp.MustCompile(`^\d{5}( \d{5}){11}$`)

// safetyNumber runs "hush safety peer" and returns its first line, after
// checking it is the number and a QR code follows.
func safetyNumber(t *testing.T, u *user, peer string) (string, result) {
	t.Helper()
	r := u.run("", "safety", peer)
	if r.code != 0 {
		t.Fatalf("safety %s: exit %d: %s", peer, r.code, r.stderr)
	}
	ls := strings.Split(r.stdout, "\n")
	if !safetyLine.MatchString(ls[0]) {
		t.Fatalf("safety %s: first line %q is not the number", peer, ls[0])
	}
	if len(ls) < 10 || !strings.ContainsAny(strings.Join(ls[1:], ""), "█▀▄") {
		t.Fatalf("safety %s: no QR code after the number:\n%s", peer, r.stdout)
	}
	return ls[0], r
}

func TestCLIMessageRequestsAcceptBlock(t *testing.T) {
	s := startServe(t)
	bob := register(t, s, "bob")
	carol := register(t, s, "carol")

	carol.ok("send", "bob", "hi from carol")
	r := bob.run("", "recv")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, `hush: message request from carol; "hush accept carol" to read it`) {
		t.Fatalf("recv of a request: %+v", r)
	}
	carol.ok("send", "bob", "second one")
	var m map[string]any
	if err := json.Unmarshal([]byte(bob.ok("recv", "--json")), &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != "request" || m["from"] != "carol" || m["text"] != nil {
		t.Fatalf("recv --json of a request: %v", m)
	}
	want := []string{"carol: hi from carol", "carol: second one"}
	if got := messages(t, bob.ok("requests")); !slices.Equal(got, want) {
		t.Fatalf("requests: %q", got)
	}
	bob.fails("accept it", "send", "carol", "hello?")
	if got := messages(t, bob.ok("accept", "carol")); !slices.Equal(got, want) {
		t.Fatalf("accept printed %q", got)
	}
	if out := bob.ok("requests"); out != "" {
		t.Fatalf("requests after accept: %q", out)
	}
	if out := bob.ok("contacts"); !regexp.MustCompile(`(?m)^USERNAME +VERIFIED +BLOCKED +NOTE\ncarol +no +no *$`).MatchString(out) {
		t.Fatalf("contacts:\n%s", out)
	}
	carol.ok("recv") // bob's token
	carol.ok("send", "bob", "sealed now")
	if got := messages(t, bob.ok("recv")); !slices.Equal(got, []string{"carol: sealed now"}) {
		t.Fatalf("recv: %q", got)
	}

	if out := bob.ok("block", "carol"); out != "blocked carol\n" {
		t.Fatalf("block: %q", out)
	}
	carol.ok("send", "bob", "while blocked")
	if r := bob.run("", "recv"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("recv from a blocked sender: %+v", r)
	}
	if err := json.Unmarshal([]byte(bob.ok("contacts", "--json")), &m); err != nil || m["username"] != "carol" || m["blocked"] != true {
		t.Fatalf("contacts --json: %v %v", m, err)
	}
	bob.ok("unblock", "carol")
	carol.ok("send", "bob", "after unblock")
	if got := messages(t, bob.ok("recv")); !slices.Equal(got, []string{"carol: after unblock"}) {
		t.Fatalf("recv after unblock: %q", got)
	}
	bob.fails(`no user "nobody"`, "accept", "nobody")
	if r := bob.run("", "accept"); r.code != 2 {
		t.Fatalf("accept without a name: exit %d", r.code)
	}
}

func TestCLISafetyVerifyTrustAndIdentityReset(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bob.ok("accept", "alice")
	alice.ok("send", "bob", "hi")
	bob.ok("recv")

	n1, _ := safetyNumber(t, alice, "bob")
	if n2, _ := safetyNumber(t, bob, "alice"); n1 != n2 {
		t.Fatalf("alice sees %s, bob sees %s", n1, n2)
	}
	wrong := "00000" + n1[5:]
	if wrong == n1 {
		wrong = "11111" + n1[5:]
	}
	alice.fails("do not match", "verify", "bob", wrong)
	if out := alice.ok(append([]string{"verify", "bob"}, strings.Fields(n1)...)...); !strings.Contains(out, "bob is verified") {
		t.Fatalf("verify: %q", out)
	}
	if _, r := safetyNumber(t, alice, "bob"); !strings.Contains(r.stdout, "bob is verified") {
		t.Fatalf("safety after verify: %q", r.stdout)
	}

	if out := bob.ok("identity", "reset"); !strings.Contains(out, "account key fingerprint:") {
		t.Fatalf("identity reset: %q", out)
	}
	r := alice.fails(`WARNING: bob's verified safety number changed; compare it with "hush safety bob", then run "hush trust bob"`, "send", "bob", "after the reset")
	if strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("send printed more than one line: %q", r.stderr)
	}
	if out := bob.ok("recv"); out != "" {
		t.Fatalf("bob received %q while alice had not accepted his new key", out)
	}
	// recv shows the notice; the new number is the one bob shows.
	if r := alice.run("", "recv"); r.code != 0 || !strings.Contains(r.stdout, "bob has a new account key") || !strings.Contains(r.stderr, "safety number changed") {
		t.Fatalf("alice's recv after bob's reset: %+v", r)
	}
	nNew, r := safetyNumber(t, alice, "bob")
	if nNew == n1 || !strings.Contains(r.stderr, "NEW") {
		t.Fatalf("safety after the change: %s (%q)", nNew, r.stderr)
	}
	if nBob, _ := safetyNumber(t, bob, "alice"); nBob != nNew {
		t.Fatalf("alice shows %s, bob shows %s", nNew, nBob)
	}
	alice.fails("safety number", "send", "bob", "still refused")
	if out := alice.ok("trust", "bob"); !strings.Contains(out, "accepted bob's new account key") {
		t.Fatalf("trust: %q", out)
	}
	if out := alice.ok("trust", "bob"); !strings.Contains(out, "has not changed") {
		t.Fatalf("second trust: %q", out)
	}
	alice.ok("send", "bob", "after trust")
	if got := messages(t, bob.ok("recv")); !slices.Equal(got, []string{"alice: after trust"}) {
		t.Fatalf("bob's recv after trust: %q", got)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(alice.ok("contacts", "--json")), &m); err != nil || m["verified"] != false || m["key_changed"] != false {
		t.Fatalf("contacts after trust: %v %v", m, err)
	}
}

func TestCLISealedMessagesStoredWithoutSender(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	alice.ok("send", "bob", "first contact") // carries alice's token
	bob.ok("recv")
	bob.ok("accept", "alice") // sends bob's token, sealed already
	alice.ok("recv")
	before := len(s.stderr.String())
	alice.ok("send", "bob", "sealed one")
	alice.ok("send", "bob", "sealed two")
	bob.ok("send", "alice", "sealed back")

	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.data, "hush.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rs, err := db.Query(`SELECT username, sender, sender_device FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for rs.Next() {
		var to, from string
		var dev int
		rs.Scan(&to, &from, &dev)
		rows = append(rows, to+"<"+from+"/"+string(rune('0'+dev)))
	}
	rs.Close()
	slices.Sort(rows)
	if !slices.Equal(rows, []string{"alice</0", "bob</0", "bob</0"}) {
		t.Fatalf("stored messages (recipient<sender/device): %q", rows)
	}
	// At hush serve's log level a sealed send is not logged at all; the
	// only lines naming alice are her own device connecting for the
	// sender certificate and the recipient's keys (a timing link the
	// closing note lists), never one about the sends.
	for _, l := range strings.Split(s.stderr.String()[before:], "\n") {
		if strings.Contains(l, "user=alice") && !strings.Contains(l, "msg=connected") && !strings.Contains(l, "msg=disconnected") {
			t.Errorf("the server logged alice during her sealed sends: %s", l)
		}
		if strings.Contains(l, "sealed") && strings.Contains(l, "127.0.0.1") {
			t.Errorf("a sealed send's log line names an address: %s", l)
		}
	}
	if got := messages(t, bob.ok("recv")); !slices.Equal(got, []string{"alice: sealed one", "alice: sealed two"}) {
		t.Fatalf("bob's recv: %q", got)
	}
	if got := messages(t, alice.ok("recv")); !slices.Equal(got, []string{"bob: sealed back"}) {
		t.Fatalf("alice's recv: %q", got)
	}
}
