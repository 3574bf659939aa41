package client

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/hush-chat/hush/internal/attach"
)

// Files of the sizes at the chunk boundaries round-trip through a real
// server with the same SHA-256.
func TestFileSizesRoundTrip(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, srv.URL, "bob")
	knows(t, bob, "alice")
	for _, n := range []int{0, 1, attach.ChunkSize - 1, attach.ChunkSize, attach.ChunkSize + 1, 2 * attach.ChunkSize} {
		path, data := writeFile(t, "f.bin", n)
		if _, err := alice.SendFile(ctxT(t), "bob", path, "", nil); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		m := receiveFile(t, bob)
		if m.Attachment.Size != int64(n) {
			t.Fatalf("%d bytes: announced size %d", n, m.Attachment.Size)
		}
		saved, err := bob.Download(ctxT(t), m.Attachment, t.TempDir(), nil)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, err := os.ReadFile(saved)
		if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("%d bytes: saved file differs (%d bytes, %v)", n, len(got), err)
		}
	}
}

// A server that swaps, truncates, extends or reorders a blob is caught:
// the receiver reports a corrupted file and saves nothing.
func TestDownloadRefusesAlteredBlobs(t *testing.T) {
	chunk := attach.ChunkSize + attach.Overhead
	var mu sync.Mutex
	var other []byte // the ciphertext of another file, for the swap
	alter := map[string]func([]byte) []byte{
		"swap": func(b []byte) []byte {
			mu.Lock()
			defer mu.Unlock()
			return bytes.Clone(other)
		},
		"truncate": func(b []byte) []byte { return b[:len(b)-attach.Overhead] },
		"truncate-chunk": func(b []byte) []byte {
			return b[:2*chunk]
		},
		"extend": func(b []byte) []byte { return append(b, b[len(b)-chunk:]...) },
		"reorder": func(b []byte) []byte {
			out := bytes.Clone(b)
			copy(out[:chunk], b[chunk:2*chunk])
			copy(out[chunk:2*chunk], b[:chunk])
			return out
		},
	}
	var mode string // which alteration the proxy applies; "" passes blobs through
	srv := startServer(t)
	target, _ := url.Parse(srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method != http.MethodGet || !strings.HasPrefix(r.Request.URL.Path, "/v1/blobs/") || r.StatusCode != http.StatusOK {
			return nil
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		mu.Lock()
		m := mode
		mu.Unlock()
		if m == "" {
			mu.Lock()
			other = bytes.Clone(b)
			mu.Unlock()
		} else {
			b = alter[m](b)
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		r.Header.Del("Content-Length")
		return nil
	}
	evil := httptest.NewServer(proxy)
	t.Cleanup(evil.Close)

	alice := newUser(t, srv.URL, "alice")
	bob := newUser(t, evil.URL, "bob")
	knows(t, bob, "alice")

	// A file of the same size whose blob the server will pass off as
	// another's.
	path, _ := writeFile(t, "decoy.bin", 3*attach.ChunkSize+100)
	if _, err := alice.SendFile(ctxT(t), "bob", path, "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Download(ctxT(t), receiveFile(t, bob).Attachment, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"swap", "truncate", "truncate-chunk", "extend", "reorder"} {
		t.Run(name, func(t *testing.T) {
			mu.Lock()
			mode = name
			mu.Unlock()
			path, _ := writeFile(t, "x.bin", 3*attach.ChunkSize+100)
			if _, err := alice.SendFile(ctxT(t), "bob", path, "", nil); err != nil {
				t.Fatal(err)
			}
			m := receiveFile(t, bob)
			dir := t.TempDir()
			_, err := bob.Download(ctxT(t), m.Attachment, dir, nil)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("err = %v, want a corrupted-file error", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("left %d files behind", len(entries))
			}
			if m.Attachment.Path != "" {
				t.Fatal("Path set after a failed download")
			}
		})
	}
}
