package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hush-chat/hush/wire"
)

// blobClient registers a fresh user on ts and connects its device.
func blobClient(t testing.TB, ts *testServer, name string) *wsClient {
	t.Helper()
	u := newUser(t, name, 1)
	ts.mustRegister(t, u)
	return ts.dial(t, u)
}

func blobUploadFrame(size uint64) *wire.ClientFrame {
	return &wire.ClientFrame{Body: &wire.ClientFrame_BlobUpload{BlobUpload: &wire.BlobUploadRequest{Size: size}}}
}

func grantBlob(t testing.TB, c *wsClient, size uint64) *wire.BlobUploadGrant {
	t.Helper()
	r := c.do(t, blobUploadFrame(size))
	g := r.GetBlobGrant()
	if g == nil {
		t.Fatalf("blob_upload %d: %v", size, r)
	}
	return g
}

// putBlob uploads body (of length n; -1 sends it chunked) with token.
func putBlob(t testing.TB, ts *testServer, id, token string, body io.Reader, n int64) (int, *wire.Error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, ts.url("/v1/blobs/"+id), body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = n
	if n == 0 {
		req.Body = http.NoBody
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusCreated {
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	return decodeReply(t, resp, nil)
}

func mustPut(t testing.TB, ts *testServer, g *wire.BlobUploadGrant, data []byte) {
	t.Helper()
	if status, e := putBlob(t, ts, g.Id, g.UploadToken, bytes.NewReader(data), int64(len(data))); status != http.StatusCreated {
		t.Fatalf("PUT: %d %v", status, e)
	}
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestBlobRoundTripAcrossTwoNodesSharingBlobDir(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "blobs")
	withDir := func(c *Config) { c.BlobDir = shared }
	a, b := startServer(t, withDir), startServer(t, withDir)
	c := blobClient(t, a, "alice")
	data := randomBytes(t, 3<<20+17)
	g := grantBlob(t, c, uint64(len(data)))
	if len(g.Id) != 32 || len(g.UploadToken) != 64 || g.MaxSize != uint64(len(data)) {
		t.Fatalf("grant %v", g)
	}
	if exp := time.UnixMilli(g.ExpiresMs); time.Until(exp) < 59*time.Minute || time.Until(exp) > 61*time.Minute {
		t.Fatalf("grant expires %v", exp)
	}
	mustPut(t, a, g, data)
	for name, ts := range map[string]*testServer{"uploading node": a, "other node": b} {
		status, got := ts.get(t, "/v1/blobs/"+g.Id)
		if status != http.StatusOK || sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("%s: GET %d, %d bytes", name, status, len(got))
		}
	}
	// Files are private, and the token is stored only hashed.
	info, err := os.Stat(shared)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("blob dir %v %v", info.Mode(), err)
	}
	for _, f := range []string{g.Id, g.Id + blobMetaSuffix} {
		info, err := os.Stat(filepath.Join(shared, f))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, info.Mode(), err)
		}
	}
	meta, _ := os.ReadFile(filepath.Join(shared, g.Id+blobMetaSuffix))
	if bytes.Contains(meta, []byte(g.UploadToken)) {
		t.Fatal("meta file holds the upload token")
	}
	if bytes.Contains(a.logs.Bytes(), []byte(g.UploadToken)) {
		t.Fatal("log holds the upload token")
	}
	_, metrics := a.get(t, "/metrics")
	for _, want := range []string{"hush_blobs_uploaded_total 1", "hush_blobs_downloaded_total 1", "hush_blob_bytes_uploaded_total 3.145745e+06"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestBlobRangeDownload(t *testing.T) {
	ts := startServer(t)
	c := blobClient(t, ts, "alice")
	data := randomBytes(t, 1000)
	g := grantBlob(t, c, 1000)
	mustPut(t, ts, g, data)
	req, _ := http.NewRequest(http.MethodGet, ts.url("/v1/blobs/"+g.Id), nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data[100:200]) {
		t.Fatalf("range GET %d, %d bytes", resp.StatusCode, len(got))
	}
}

func TestBlobUploadRejections(t *testing.T) {
	ts := startServer(t)
	c := blobClient(t, ts, "alice")
	data := randomBytes(t, 4096)
	g := grantBlob(t, c, uint64(len(data)))
	wrongToken := strings.Repeat("ab", 32)

	t.Run("no token", func(t *testing.T) {
		status, e := putBlob(t, ts, g.Id, "", bytes.NewReader(data), int64(len(data)))
		wantHTTPError(t, status, e, codeUnauthorized)
	})
	t.Run("wrong token", func(t *testing.T) {
		status, e := putBlob(t, ts, g.Id, wrongToken, bytes.NewReader(data), int64(len(data)))
		wantHTTPError(t, status, e, codeUnauthorized)
	})
	t.Run("uppercase token", func(t *testing.T) {
		status, e := putBlob(t, ts, g.Id, strings.ToUpper(g.UploadToken), bytes.NewReader(data), int64(len(data)))
		wantHTTPError(t, status, e, codeUnauthorized)
	})
	t.Run("short body", func(t *testing.T) {
		status, e := putBlob(t, ts, g.Id, g.UploadToken, bytes.NewReader(data[:100]), 100)
		wantHTTPError(t, status, e, codeBadRequest)
	})
	t.Run("long chunked body", func(t *testing.T) {
		status, e := putBlob(t, ts, g.Id, g.UploadToken, bytes.NewReader(append(data, 1)), -1)
		wantHTTPError(t, status, e, codeBadRequest)
	})
	t.Run("short chunked body", func(t *testing.T) {
		status, e := putBlob(t, ts, g.Id, g.UploadToken, bytes.NewReader(data[1:]), -1)
		wantHTTPError(t, status, e, codeBadRequest)
	})
	t.Run("not uploaded is not found", func(t *testing.T) {
		if status, _ := ts.get(t, "/v1/blobs/"+g.Id); status != http.StatusNotFound {
			t.Fatalf("GET before upload: %d", status)
		}
	})
	t.Run("upload after failures, then a second one", func(t *testing.T) {
		mustPut(t, ts, g, data)
		status, e := putBlob(t, ts, g.Id, g.UploadToken, bytes.NewReader(data), int64(len(data)))
		wantHTTPError(t, status, e, codeAlreadyUploaded)
		if status != http.StatusConflict {
			t.Fatalf("second PUT %d", status)
		}
		if status, got := ts.get(t, "/v1/blobs/"+g.Id); status != http.StatusOK || !bytes.Equal(got, data) {
			t.Fatalf("GET %d", status)
		}
	})
	t.Run("unknown id", func(t *testing.T) {
		unknown := strings.Repeat("0", 32)
		if status, _ := ts.get(t, "/v1/blobs/"+unknown); status != http.StatusNotFound {
			t.Fatalf("GET unknown: %d", status)
		}
		status, e := putBlob(t, ts, unknown, g.UploadToken, bytes.NewReader(data), int64(len(data)))
		wantHTTPError(t, status, e, codeNotFound)
	})
	t.Run("size zero", func(t *testing.T) {
		wantError(t, c.do(t, blobUploadFrame(0)), codeBadRequest)
	})
	t.Run("too large", func(t *testing.T) {
		wantError(t, c.do(t, blobUploadFrame(DefaultMaxFileSize+1)), codeTooLarge)
		wantError(t, c.do(t, blobUploadFrame(1<<63)), codeTooLarge)
	})
}

func TestBlobConcurrentUploadsStoreOnce(t *testing.T) {
	ts := startServer(t)
	c := blobClient(t, ts, "alice")
	data := randomBytes(t, 256<<10)
	g := grantBlob(t, c, uint64(len(data)))
	const n = 8
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			statuses[i], _ = putBlob(t, ts, g.Id, g.UploadToken, bytes.NewReader(data), int64(len(data)))
		})
	}
	wg.Wait()
	created := 0
	for _, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
		default:
			t.Fatalf("statuses %v", statuses)
		}
	}
	if created != 1 {
		t.Fatalf("%d uploads succeeded: %v", created, statuses)
	}
}

func TestBlobQuotaAndPendingGrants(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.BlobQuota = 10_000; c.MaxFileSize = 6000 })
	alice := blobClient(t, ts, "alice")
	bob := blobClient(t, ts, "bob")
	wantError(t, alice.do(t, blobUploadFrame(6001)), codeTooLarge)
	g := grantBlob(t, alice, 6000)
	// An unused grant reserves its bytes.
	wantError(t, alice.do(t, blobUploadFrame(5000)), codeQuotaExceeded)
	mustPut(t, ts, g, randomBytes(t, 6000))
	wantError(t, alice.do(t, blobUploadFrame(4001)), codeQuotaExceeded)
	grantBlob(t, alice, 4000)
	// The quota is per account.
	grantBlob(t, bob, 6000)

	for range MaxPendingGrants - 1 { // bob holds one already
		grantBlob(t, bob, 1)
	}
	wantError(t, bob.do(t, blobUploadFrame(1)), codeRateLimited)
}

func TestBlobExpirySweep(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, func(c *Config) { c.Now = clock.Now })
	dir := filepath.Join(ts.dir, "blobs")
	c := blobClient(t, ts, "alice")
	up := grantBlob(t, c, 10)
	mustPut(t, ts, up, randomBytes(t, 10))
	unused := grantBlob(t, c, 10)
	// Leftovers of a crash mid-upload and mid-meta-write.
	for _, f := range []string{strings.Repeat("1", 32) + blobPartSuffix, "." + strings.Repeat("2", 32) + ".meta-123"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		old := clock.Now().Add(-2 * BlobGrantLifetime)
		os.Chtimes(filepath.Join(dir, f), old, old)
	}
	ctx := context.Background()

	clock.Advance(BlobGrantLifetime + time.Minute)
	if n, err := ts.srv.sweepBlobs(ctx); err != nil || n != 0 {
		t.Fatalf("sweep after an hour: %d %v", n, err)
	}
	status, e := putBlob(t, ts, unused.Id, unused.UploadToken, bytes.NewReader(make([]byte, 10)), 10)
	wantHTTPError(t, status, e, codeNotFound)
	if status, _ := ts.get(t, "/v1/blobs/"+up.Id); status != http.StatusOK {
		t.Fatalf("uploaded blob gone after an hour: %d", status)
	}
	wantFiles(t, dir, up.Id, up.Id+blobMetaSuffix)

	clock.Advance(BlobTTL)
	if status, _ := ts.get(t, "/v1/blobs/"+up.Id); status != http.StatusNotFound {
		t.Fatalf("expired blob served before the sweep: %d", status)
	}
	ts.srv.sweepExpired(ctx)
	wantFiles(t, dir)
	_, metrics := ts.get(t, "/metrics")
	if !strings.Contains(string(metrics), "hush_blobs_expired_total 1") {
		t.Error("expired blob not counted")
	}
}

// wantFiles checks dir holds exactly names.
func wantFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("blob dir holds %v, want %v", got, names)
	}
}

func TestBlobIDsCannotEscapeTheDirectory(t *testing.T) {
	ts := startServer(t)
	c := blobClient(t, ts, "alice")
	g := grantBlob(t, c, 3)
	mustPut(t, ts, g, []byte("abc"))
	key, err := os.ReadFile(filepath.Join(ts.dir, serverKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{
		"..%2Fserver.key", "..%2f..%2fhush.db", "%2e%2e%2fserver.key", "..",
		strings.ToUpper(g.Id), g.Id + blobMetaSuffix, g.Id + "%00", g.Id[:31], g.Id + "0",
		"%2Fetc%2Fpasswd", strings.Repeat("g", 32),
	} {
		status, body := ts.get(t, "/v1/blobs/"+id)
		if status == http.StatusOK || bytes.Contains(body, key) || bytes.Contains(body, []byte("owner")) {
			t.Errorf("GET %q: %d %q", id, status, body)
		}
		// Some of these the router refuses before the handler runs, with
		// a plain-text error: only the status matters.
		req, _ := http.NewRequest(http.MethodPut, ts.url("/v1/blobs/"+id), strings.NewReader("abc"))
		req.Header.Set("Authorization", "Bearer "+g.UploadToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if status := resp.StatusCode; status == http.StatusCreated || status/100 == 5 {
			t.Errorf("PUT %q: %d", id, status)
		}
	}
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{g.Id, true}, {strings.Repeat("0", 32), true}, {strings.ToUpper(g.Id), false},
		{"../" + g.Id[3:], false}, {"", false}, {g.Id + "/", false},
	} {
		if _, ok := parseBlobID(tc.id); ok != tc.ok {
			t.Errorf("parseBlobID(%q) = %v", tc.id, ok)
		}
	}
}

// patternReader yields n bytes without holding them, so the test's own
// memory does not hide the server's.
type patternReader struct {
	left int64
	peak uint64 // highest HeapInuse seen, sampled every 16 MiB
	next int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	for i := range b {
		b[i] = byte(i)
	}
	p.left -= int64(len(b))
	if p.next -= int64(len(b)); p.next <= 0 {
		p.next = 16 << 20
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		p.peak = max(p.peak, ms.HeapInuse)
	}
	return len(b), nil
}

// TestBlobUploadStreams uploads 200 MiB and checks the heap stays far
// below that: the body goes to disk, not into memory.
func TestBlobUploadStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MiB")
	}
	const size = 200 << 20
	ts := startServer(t, func(c *Config) { c.MaxFileSize = size; c.BlobQuota = -1 })
	c := blobClient(t, ts, "alice")
	g := grantBlob(t, c, size)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	body := &patternReader{left: size}
	if status, e := putBlob(t, ts, g.Id, g.UploadToken, body, size); status != http.StatusCreated {
		t.Fatalf("PUT: %d %v", status, e)
	}
	if grew := int64(body.peak) - int64(before.HeapInuse); grew > 32<<20 {
		t.Fatalf("heap grew by %d MiB during a 200 MiB upload", grew>>20)
	}
	info, err := os.Stat(filepath.Join(ts.dir, "blobs", g.Id))
	if err != nil || info.Size() != size {
		t.Fatalf("stored blob: %v %v", info, err)
	}
}
