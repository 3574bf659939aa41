package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// jsonLines parses recv --json output.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var all []map[string]any
	for _, l := range lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("recv --json printed %q: %v", l, err)
		}
		all = append(all, m)
	}
	return all
}

// only returns the lines of type typ.
func only(all []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, m := range all {
		if m["type"] == typ {
			out = append(out, m)
		}
	}
	return out
}

func TestCLIEverydayMessaging(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bob.ok("accept", "alice")

	// send prints the message's id, the one the recipient sees: the
	// sender needs it to edit or delete the message.
	id := strings.TrimSpace(alice.ok("send", "bob", "hello bob"))
	got := only(jsonLines(t, bob.ok("recv", "--json")), "text")
	if len(got) != 1 || got[0]["id"] != id {
		t.Fatalf("alice's send printed %q; bob got %v", id, got)
	}

	// Delivered, then a reaction and a reply.
	bob.ok("react", "alice", id, "👍")
	replyID := strings.TrimSpace(bob.ok("reply", "alice", id, "hi", "alice"))
	all := jsonLines(t, alice.ok("recv", "--json"))
	if r := only(all, "receipt"); len(r) != 1 || r[0]["kind"] != "delivered" || r[0]["target"] != id || r[0]["from"] != "bob" {
		t.Fatalf("alice's receipts: %v", r)
	}
	if r := only(all, "reaction"); len(r) != 1 || r[0]["emoji"] != "👍" || r[0]["target"] != id {
		t.Fatalf("alice's reactions: %v", r)
	}
	if m := only(all, "text"); len(m) != 1 || m[0]["id"] != replyID || m[0]["text"] != "hi alice" || m[0]["reply_to"] != id || m[0]["reply_author"] != "alice" {
		t.Fatalf("alice's reply: %v", m)
	}

	// Only the author edits; the edit reaches the other side.
	if r := bob.run("", "edit", "alice", id, "bob's words"); r.code != 1 || !strings.Contains(r.stderr, "only its sender") {
		t.Fatalf("bob's edit of alice's message: exit %d, %q", r.code, r.stderr)
	}
	alice.ok("edit", "bob", id, "hello,", "bob!")
	if e := only(jsonLines(t, bob.ok("recv", "--json")), "edit"); len(e) != 1 || e[0]["text"] != "hello, bob!" || e[0]["target"] != id {
		t.Fatalf("bob's edits: %v", e)
	}

	// Read receipts and the timer, in text form too.
	bob.ok("read", "alice")
	out := alice.ok("recv")
	if !strings.Contains(out, "] * bob got "+id+" (read)") {
		t.Fatalf("alice's recv printed %q", out)
	}
	alice.ok("timer", "bob", "1w")
	if e := only(jsonLines(t, bob.ok("recv", "--json")), "timer"); len(e) != 1 || e[0]["seconds"] != float64(7*24*3600) {
		t.Fatalf("bob's timer events: %v", e)
	}
	alice.ok("send", "bob", "gone in a week")
	if m := only(jsonLines(t, bob.ok("recv", "--json")), "text"); len(m) != 1 || m[0]["expires"] == nil {
		t.Fatalf("a message under the timer: %v", m)
	}
	alice.ok("timer", "bob", "off")

	// Delete for everyone.
	alice.ok("delete", "bob", id)
	if e := only(jsonLines(t, bob.ok("recv", "--json")), "delete"); len(e) != 1 || e[0]["target"] != id || e[0]["from"] != "alice" {
		t.Fatalf("bob's deletes: %v", e)
	}
	if r := bob.run("", "react", "alice", id, "👍"); r.code != 1 {
		t.Fatalf("a reaction to a deleted message: exit %d", r.code)
	}
	alice.ok("recv")

	// Usage errors.
	for _, args := range [][]string{
		{"timer", "bob", "1s"},
		{"timer", "bob", "5y"},
		{"react", "bob", id},
		{"edit", "bob", "not-an-id", "x"},
		{"delete", "bob"},
		{"read"},
	} {
		if r := alice.run("", args...); r.code != 2 {
			t.Errorf("hush %v: exit %d, want 2 (%s)", args, r.code, r.stderr)
		}
	}
	if r := alice.run("", "react", "bob", id, "not one emoji"); r.code != 1 {
		t.Errorf("a sentence as a reaction: exit %d", r.code)
	}
	// Taking back a reaction that was never made is an error, not news
	// for the peer.
	if r := alice.run("", "react", "bob", replyID, "--remove"); r.code != 1 || !strings.Contains(r.stderr, "no reaction") {
		t.Errorf("taking back no reaction: exit %d, %q", r.code, r.stderr)
	}
	alice.ok("react", "bob", replyID, "🎉")
	alice.ok("react", "bob", replyID, "--remove")
	all = jsonLines(t, bob.ok("recv", "--json"))
	if r := only(all, "reaction"); len(r) != 2 || r[0]["emoji"] != "🎉" || r[1]["removed"] != true {
		t.Errorf("bob's reactions: %v", r)
	}
}

// TestCLIDisappearingMessages: with a 5 s timer, a message each way
// reaches both devices of both accounts; once its time is up no device
// shows it again and its text is in no file of any home, the database's
// write-ahead log included.
func TestCLIDisappearingMessages(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	alice.ok("send", "bob", "hi")
	bob.ok("accept", "alice")
	alice2, bob2 := newHome(t, s.URL), newHome(t, s.URL)
	linkCLI(t, alice, alice2, "alice-laptop")
	linkCLI(t, bob, bob2, "bob-laptop")
	devices := map[string]*user{"alice": alice, "alice2": alice2, "bob": bob, "bob2": bob2}
	for _, u := range devices {
		u.ok("recv")
	}

	const fromAlice, fromBob = "CANARY-vanishing-alice-5a0e", "CANARY-vanishing-bob-91c4"
	alice.ok("timer", "bob", "5s")
	alice.ok("send", "bob", fromAlice)
	// Every device shows the messages it did not send, each with the
	// time it erases them.
	var last time.Time
	check := func(name string, want ...string) {
		t.Helper()
		var seen []string
		for _, m := range only(jsonLines(t, devices[name].ok("recv", "--json")), "text") {
			seen = append(seen, m["text"].(string))
			exp, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["expires"]))
			if err != nil {
				t.Fatalf("%s: %v without a valid expiry: %v", name, m, err)
			}
			if exp.After(last) {
				last = exp
			}
		}
		if !slices.Equal(seen, want) {
			t.Fatalf("%s got %q, want %q", name, seen, want)
		}
	}
	check("bob", fromAlice)
	bob.ok("send", "alice", fromBob)
	check("alice", fromBob)
	check("alice2", fromAlice, fromBob)
	check("bob2", fromAlice, fromBob)
	// Bounded: every device erases by the last expiry it printed.
	time.Sleep(time.Until(last) + 100*time.Millisecond)
	for name, u := range devices {
		for _, args := range [][]string{{"recv"}, {"recv", "--json"}} {
			if out := u.ok(args...); strings.Contains(out, "CANARY-vanishing") {
				t.Fatalf("%s: hush %v after expiry printed %q", name, args, out)
			}
		}
		files, err := os.ReadDir(u.home)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(u.home, f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte("CANARY-vanishing")) {
				t.Fatalf("%s: %s still holds the text of an expired message", name, f.Name())
			}
		}
	}
}

// A name two groups share is refused with their ids, not taken for a
// username; a name no group has is one.
func TestCLIConversationNamedByTwoGroups(t *testing.T) {
	s := startServe(t)
	alice, _ := register(t, s, "alice"), register(t, s, "bob")
	alice.ok("group", "create", "Book club", "--members", "bob")
	alice.ok("group", "create", "Book club", "--members", "bob")
	for _, args := range [][]string{{"timer", "Book club", "1m"}, {"read", "Book club"}} {
		if r := alice.run("", args...); r.code != 1 || !strings.Contains(r.stderr, `2 groups are named "Book club"; give the id instead`) {
			t.Fatalf("hush %v: %+v", args, r)
		}
	}
	alice.ok("timer", "bob", "1m")
}

// hush requests shows that a stranger's message request is a file.
func TestCLIRequestShowsItsFile(t *testing.T) {
	s := startServe(t)
	bob, carol := register(t, s, "bob"), register(t, s, "carol")
	src := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(src, []byte("some notes"), 0o600); err != nil {
		t.Fatal(err)
	}
	carol.ok("send", "bob", "--file", src, "my notes")
	bob.ok("recv")
	if out := bob.ok("requests"); !strings.Contains(out, "carol: [file notes.txt, 10 bytes] my notes") {
		t.Fatalf("hush requests printed %q", out)
	}
	if out := bob.ok("requests", "--json"); !strings.Contains(out, `"name":"notes.txt","size":10`) {
		t.Fatalf("hush requests --json printed %q", out)
	}
	// Accepting hands the messages over: --download-dir saves the file.
	dir := t.TempDir()
	out := bob.ok("accept", "carol", "--download-dir", dir, "--json")
	saved := filepath.Join(dir, "notes.txt")
	if got, err := os.ReadFile(saved); err != nil || string(got) != "some notes" {
		t.Fatalf("accept --download-dir saved %q (%v); printed %s", got, err, out)
	}
	if !strings.Contains(out, `"file":"`+saved+`"`) || !strings.Contains(out, `"type":"file"`) {
		t.Fatalf("accept --json printed %s", out)
	}
}
