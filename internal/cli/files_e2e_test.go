package cli_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLISendFileAndDownload(t *testing.T) {
	s := startServe(t)
	alice := register(t, s, "alice")
	bob := register(t, s, "bob")
	bob.ok("accept", "alice")

	data := make([]byte, 2<<20+3)
	rand.Read(data)
	src := filepath.Join(t.TempDir(), "photo.jpg")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	alice.ok("send", "bob", "--file", src, "holiday", "photo")
	dir := t.TempDir()
	out := bob.ok("recv", "--json", "--download-dir", dir)
	var m struct {
		Type, From, Text, File, Name, SHA256 string
		Size                                 int64
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &m); err != nil {
		t.Fatalf("recv --json printed %q: %v", out, err)
	}
	if m.Type != "file" || m.From != "alice" || m.Text != "holiday photo" || m.Name != "photo.jpg" ||
		m.Size != int64(len(data)) || m.SHA256 != fmt.Sprintf("%x", sha256.Sum256(data)) || m.File != filepath.Join(dir, "photo.jpg") {
		t.Fatalf("recv --json: %+v", m)
	}
	got, err := os.ReadFile(m.File)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("saved file differs (%v)", err)
	}

	// Without a caption, flags first; text output names the file.
	alice.ok("send", "--file", src, "bob")
	out = bob.ok("recv", "--download-dir", dir)
	if want := "saved as " + filepath.Join(dir, "photo (1).jpg"); !strings.Contains(out, "[file photo.jpg, ") || !strings.Contains(out, want) {
		t.Fatalf("recv printed %q, want it to mention %q", out, want)
	}
}
