package client

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hush-chat/hush/wire"
)

func writeFile(t *testing.T, name string, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// receiveFile returns the one message bob has, which must carry a file.
func receiveFile(t *testing.T, bob *Client) *MessageEvent {
	t.Helper()
	got, drops := collect(t, bob, 0)
	if len(got) != 1 || len(drops) > 0 || got[0].Attachment == nil {
		t.Fatalf("bob got %q (dropped %v), want one file", texts(got), drops)
	}
	return got[0]
}

func TestSendFileAndDownload(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	knows(t, bob, "alice")

	path, data := writeFile(t, "report.pdf", 3<<20+17)
	var calls int
	var last int64
	if _, err := alice.SendFile(ctxT(t), "bob", path, "the report", func(done, total int64) { calls++; last = done }); err != nil {
		t.Fatal(err)
	}
	if calls == 0 || last == 0 {
		t.Fatalf("progress called %d times, last %d", calls, last)
	}
	m := receiveFile(t, bob)
	a := m.Attachment
	if m.Text != "the report" || a.Name != "report.pdf" || a.Size != int64(len(data)) || a.ContentType != "application/pdf" {
		t.Fatalf("message %q with %+v", m.Text, a)
	}
	dir := t.TempDir()
	saved, err := bob.Download(ctxT(t), a, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if saved != filepath.Join(dir, "report.pdf") || a.Path != saved {
		t.Fatalf("saved at %q (Path %q)", saved, a.Path)
	}
	got, err := os.ReadFile(saved)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded file differs (err %v)", err)
	}
	if st, _ := os.Stat(saved); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	// A second download does not overwrite the first.
	again, err := bob.Download(ctxT(t), a, dir, nil)
	if err != nil || again != filepath.Join(dir, "report (1).pdf") {
		t.Fatalf("second download at %q: %v", again, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("dir holds %d entries, want 2 (no temp files left)", len(entries))
	}
	// The sender's history shows it.
	h, err := alice.History(ctxT(t), "bob", 1)
	if err != nil || len(h) != 1 || h[0].Attachment == nil || h[0].Attachment.Name != "report.pdf" {
		t.Fatalf("alice's history %+v (%v)", h, err)
	}
}

func TestSendEmptyFileWithoutCaption(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	knows(t, bob, "alice")
	path, _ := writeFile(t, "empty.txt", 0)
	if _, err := alice.SendFile(ctxT(t), "bob", path, "", nil); err != nil {
		t.Fatal(err)
	}
	m := receiveFile(t, bob)
	saved, err := bob.Download(ctxT(t), m.Attachment, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(saved); err != nil || st.Size() != 0 {
		t.Fatalf("saved %v, %v", st, err)
	}
}

// A server that changes the blob is caught by the checksum before
// anything is decrypted, and nothing is saved.
func TestDownloadRefusesTamperedBlob(t *testing.T) {
	srv := startServer(t)
	target, _ := url.Parse(srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method != http.MethodGet || !strings.HasPrefix(r.Request.URL.Path, "/v1/blobs/") {
			return nil
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		b[len(b)/2] ^= 0x40
		r.Body = io.NopCloser(bytes.NewReader(b))
		return nil
	}
	evil := httptest.NewServer(proxy)
	t.Cleanup(evil.Close)

	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, evil.URL, "bob")
	knows(t, bob, "alice")
	path, _ := writeFile(t, "x.bin", 200<<10)
	if _, err := alice.SendFile(ctxT(t), "bob", path, "", nil); err != nil {
		t.Fatal(err)
	}
	m := receiveFile(t, bob)
	dir := t.TempDir()
	if _, err := bob.Download(ctxT(t), m.Attachment, dir, nil); !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("err = %v, want a checksum mismatch", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left %d files behind", len(entries))
	}
	if m.Attachment.Path != "" {
		t.Fatal("Path set after a failed download")
	}
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{
		"report.pdf":             "report.pdf",
		"../../etc/passwd":       "passwd",
		`..\..\boot.ini`:         "boot.ini",
		".bashrc":                "bashrc",
		"..":                     "file",
		"":                       "file",
		"a\x1b[2Jb.txt":          "a_[2Jb.txt",
		"name.":                  "name",
		"c:evil":                 "c_evil",
		strings.Repeat("a", 300): strings.Repeat("a", maxFileName),
	} {
		if got := safeName(in); got != want {
			t.Errorf("safeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIncomingAttachmentValidation(t *testing.T) {
	key := make([]byte, 32)
	sum := sha256.Sum256(nil)
	good := func() *wireAttachment {
		return &wireAttachment{BlobId: hex.EncodeToString(make([]byte, 16)), Key: key, Sha256: sum[:], Size: 1, CiphertextSize: 17, FileName: "../a", ChunkSize: 64 << 10}
	}
	if a, err := attachmentInfo(good()); err != nil || a.Name != "a" {
		t.Fatalf("valid attachment: %+v (%v)", a, err)
	}
	for name, mut := range map[string]func(*wireAttachment){
		"short key":      func(a *wireAttachment) { a.Key = key[:16] },
		"bad blob id":    func(a *wireAttachment) { a.BlobId = "../../v1/register" },
		"size mismatch":  func(a *wireAttachment) { a.CiphertextSize = 5 },
		"chunk size":     func(a *wireAttachment) { a.ChunkSize = 1 },
		"short checksum": func(a *wireAttachment) { a.Sha256 = sum[:4] },
	} {
		a := good()
		mut(a)
		if got, err := attachmentInfo(a); err == nil {
			t.Errorf("%s: accepted %+v", name, got)
		}
	}
}

type wireAttachment = wire.Attachment
