package cli_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// groupLine is the part of a recv --json line the group tests read.
type groupLine struct {
	Type, From, Text, Group, GroupName, File string
}

// groupLines parses recv --json output.
func groupLines(t *testing.T, out string) []groupLine {
	t.Helper()
	var got []groupLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m struct {
			Type      string `json:"type"`
			From      string `json:"from"`
			Text      string `json:"text"`
			Group     string `json:"group"`
			GroupName string `json:"group_name"`
			File      string `json:"file"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("recv --json printed %q: %v", l, err)
		}
		got = append(got, groupLine{m.Type, m.From, m.Text, m.Group, m.GroupName, m.File})
	}
	return got
}

// groupTexts keeps the text messages of recv --json output as
// "group_name from: text".
func groupTexts(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	for _, m := range groupLines(t, out) {
		if m.Type == "text" || m.Type == "file" {
			got = append(got, m.GroupName+" "+m.From+": "+m.Text)
		}
	}
	return got
}

func wantLines(t *testing.T, who string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s got %q\nwant %q", who, got, want)
	}
}

var groupID = regexp.MustCompile(`^[0-9a-f]{32}\n$`)

func TestCLIGroups(t *testing.T) {
	s := startServe(t)
	alice, bob, carol, dave := register(t, s, "alice"), register(t, s, "bob"), register(t, s, "carol"), register(t, s, "dave")
	out := alice.ok("group", "create", "Book club", "--members", "bob,carol")
	if !groupID.MatchString(out) {
		t.Fatalf("group create printed %q, want the id alone", out)
	}
	id := strings.TrimSpace(out)
	if out := bob.ok("recv"); !strings.Contains(out, "] alice: Book club: you are in the group, with alice, bob, carol") {
		t.Fatalf("bob's recv printed %q", out)
	}
	carol.ok("recv")

	var info struct {
		ID      string   `json:"id"`
		Name    string   `json:"name"`
		Epoch   uint64   `json:"epoch"`
		Members []string `json:"members"`
		Admins  []string `json:"admins"`
		Active  bool     `json:"active"`
	}
	if err := json.Unmarshal([]byte(bob.ok("group", "info", "Book club", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.ID != id || info.Name != "Book club" || info.Epoch != 1 || strings.Join(info.Members, ",") != "alice,bob,carol" ||
		strings.Join(info.Admins, ",") != "alice" || !info.Active {
		t.Fatalf("bob's group info: %+v", info)
	}
	if out := carol.ok("group", "list"); !strings.Contains(out, id) || !strings.Contains(out, "Book club") {
		t.Fatalf("carol's group list: %q", out)
	}

	// By name and by id; recv --json names the group.
	firstID := strings.TrimSpace(alice.ok("group", "send", "Book club", "first", "meeting"))
	bob.ok("group", "send", id, "see you there")
	carolOut := carol.ok("recv", "--json")
	// group send prints the message's id, the one members see.
	if len(firstID) != 32 || !strings.Contains(carolOut, `"id":"`+firstID+`"`) {
		t.Fatalf("group send printed %q; carol's recv --json: %s", firstID, carolOut)
	}
	got := groupLines(t, carolOut)
	if len(got) != 2 || got[0] != (groupLine{"text", "alice", "first meeting", id, "Book club", ""}) ||
		got[1] != (groupLine{"text", "bob", "see you there", id, "Book club", ""}) {
		t.Fatalf("carol's recv --json: %+v", got)
	}
	wantLines(t, "alice", groupTexts(t, alice.ok("recv", "--json")), "Book club bob: see you there")

	// A file, uploaded once, for everyone.
	data := make([]byte, 70<<10)
	rand.Read(data)
	src := filepath.Join(t.TempDir(), "agenda.pdf")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	alice.ok("group", "send", "Book club", "--file", src, "the agenda")
	for _, u := range []*user{bob, carol} {
		dir := t.TempDir()
		got := groupLines(t, u.ok("recv", "--json", "--download-dir", dir))
		var files []groupLine
		for _, m := range got {
			if m.Type == "file" {
				files = append(files, m)
			}
		}
		if len(files) != 1 || files[0].Group != id || files[0].Text != "the agenda" || files[0].File != filepath.Join(dir, "agenda.pdf") {
			t.Fatalf("recv --json: %+v", got)
		}
		if b, err := os.ReadFile(files[0].File); err != nil || !bytes.Equal(b, data) {
			t.Fatalf("saved file differs: %v", err)
		}
	}

	// Only admins change membership.
	if r := bob.run("", "group", "add", "Book club", "dave"); r.code != 1 || !strings.Contains(r.stderr, "only an admin") {
		t.Fatalf("bob adding: %+v", r)
	}
	if out := alice.ok("group", "add", "Book club", "dave"); out != "dave added to Book club\n" {
		t.Fatalf("group add printed %q", out)
	}
	if got := groupLines(t, dave.ok("recv", "--json")); len(got) != 1 || got[0] != (groupLine{"group", "alice", "", id, "Book club", ""}) {
		t.Fatalf("dave's recv --json: %+v", got)
	}
	alice.ok("group", "remove", "Book club", "carol")
	carol.ok("recv")
	if err := json.Unmarshal([]byte(carol.ok("group", "info", id, "--json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Active || info.Epoch != 3 {
		t.Fatalf("carol's view after removal: %+v", info)
	}
	if r := carol.run("", "group", "send", id, "hello?"); r.code != 1 || !strings.Contains(r.stderr, "no longer a member") {
		t.Fatalf("carol sending after removal: %+v", r)
	}
	dave.ok("group", "send", "Book club", "thanks for having me")
	wantLines(t, "carol", groupTexts(t, carol.ok("recv", "--json")))
	wantLines(t, "bob", groupTexts(t, bob.ok("recv", "--json")), "Book club dave: thanks for having me")

	// Bob leaves; nothing reaches him afterwards.
	if out := bob.ok("group", "leave", "Book club"); out != "left Book club\n" {
		t.Fatalf("group leave printed %q", out)
	}
	alice.ok("group", "send", "Book club", "just us")
	wantLines(t, "bob", groupTexts(t, bob.ok("recv", "--json")))
	wantLines(t, "dave", groupTexts(t, dave.ok("recv", "--json")), "Book club alice: just us")
	if err := json.Unmarshal([]byte(dave.ok("group", "info", "Book club", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	if strings.Join(info.Members, ",") != "alice,dave" || info.Epoch != 4 {
		t.Fatalf("dave's view after bob left: %+v", info)
	}

	// A second group of the same name: the name is ambiguous now.
	alice.ok("group", "create", "Book club", "--members", "dave")
	if r := alice.run("", "group", "send", "Book club", "which?"); r.code != 1 || !strings.Contains(r.stderr, `2 groups are named "Book club"`) {
		t.Fatalf("ambiguous name: %+v", r)
	}
	if r := alice.run("", "group", "info", "no such group"); r.code != 1 || !strings.Contains(r.stderr, `no group named "no such group"`) {
		t.Fatalf("unknown name: %+v", r)
	}
	if r := alice.run("", "group", "create", "x", "--members", "bob,nobody"); r.code != 1 || !strings.Contains(r.stderr, "nobody") {
		t.Fatalf("a group with an unknown member: %+v", r)
	}
	if r := alice.run("", "group", "frob"); r.code != 2 {
		t.Fatalf("unknown subcommand: %+v", r)
	}
}

// TestCLIGroupCanaryNeverReachesServer runs a group with a distinctive
// name and then searches every file of the server's data directory and
// its log for the name, the group id (hex and raw) and the member list
// as a group state encodes it.
func TestCLIGroupCanaryNeverReachesServer(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	register(t, s, "bob")
	carol := register(t, s, "carol")
	const name = "CANARY-GROUP-heron-5521-Ω"
	id := strings.TrimSpace(alice.ok("group", "create", name, "--members", "bob,carol"))
	alice.ok("group", "send", name, "group canary text 8832-lynx")
	// A file too: neither its content nor its name may reach the server.
	fileContent := bytes.Repeat([]byte("CANARY-FILE-CONTENT-osprey-7710 "), 4096)
	fileName := "canary-osprey-7710-plans.txt"
	src := filepath.Join(t.TempDir(), fileName)
	if err := os.WriteFile(src, fileContent, 0o600); err != nil {
		t.Fatal(err)
	}
	alice.ok("group", "send", name, "--file", src)
	dl := t.TempDir()
	raw, err := hex.DecodeString(id)
	if err != nil {
		t.Fatal(err)
	}
	// The members field of a GroupState: tag 3, length, name, repeated.
	var members []byte
	for _, m := range []string{"alice", "bob", "carol"} {
		members = append(members, 0x1a, byte(len(m)))
		members = append(members, m...)
	}
	needles := map[string][]byte{
		"group name": []byte(name), "group id": []byte(id), "raw group id": raw,
		"member list": []byte("alice,bob,carol"), "encoded member list": members,
		"group text":   []byte("group canary text 8832-lynx"),
		"file content": []byte("CANARY-FILE-CONTENT-osprey-7710"), "file name": []byte(fileName),
	}
	check := func(when string) {
		t.Helper()
		files := 0
		err := filepath.Walk(s.data, func(path string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			files++
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for what, n := range needles {
				if bytes.Contains(b, n) {
					t.Errorf("%s: %s contains the %s", when, path, what)
				}
			}
			return nil
		})
		if err != nil || files == 0 {
			t.Fatalf("%s: walked %d files: %v", when, files, err)
		}
		for what, n := range needles {
			if bytes.Contains([]byte(s.stderr.String()), n) {
				t.Errorf("%s: the server log contains the %s", when, what)
			}
		}
	}
	check("while queued")
	out := carol.ok("recv", "--json", "--download-dir", dl)
	check("after delivery")
	s.stop()
	check("after shutdown")
	if !strings.Contains(out, name) || !strings.Contains(out, id) {
		t.Errorf("carol's own output lacks the group: the canary test is blind (%q)", out)
	}
	if got, err := os.ReadFile(filepath.Join(dl, fileName)); err != nil || !bytes.Equal(got, fileContent) {
		t.Errorf("carol did not save the file (%v): the canary test is blind", err)
	}
}
