package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzParseBlobID checks the id and token parsers accept exactly their
// lowercase hex forms, so nothing else reaches the file system.
func FuzzParseBlobID(f *testing.F) {
	f.Add(strings.Repeat("0a", 16), "Bearer "+strings.Repeat("ff", 32))
	f.Add("../../etc/passwd", "Bearer x")
	f.Add(strings.Repeat("A", 32), "bearer "+strings.Repeat("FF", 32))
	f.Fuzz(func(t *testing.T, id, header string) {
		if got, ok := parseBlobID(id); ok {
			if got != id || len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
				t.Fatalf("accepted id %q", id)
			}
		}
		if tok, ok := parseBlobToken(header); ok && len(tok) != blobTokenSize {
			t.Fatalf("accepted token %q as %d bytes", header, len(tok))
		}
	})
}

// FuzzBlobPut sends arbitrary ids, authorization headers and bodies to
// PUT /v1/blobs/{id}, against one real grant: nothing panics, nothing is
// a 500, and only the real token with exactly the granted bytes stores.
func FuzzBlobPut(f *testing.F) {
	ts := startServer(f)
	c := blobClient(f, ts, "alice")
	g := grantBlob(f, c, 4)
	f.Add(g.Id, "Bearer "+g.UploadToken, []byte("abc"))
	f.Add(g.Id, "Bearer "+strings.Repeat("00", 32), []byte("abcd"))
	f.Add("..", "", []byte{})
	f.Fuzz(func(t *testing.T, id, auth string, body []byte) {
		req := httptest.NewRequest(http.MethodPut, "/v1/blobs/x", bytes.NewReader(body))
		req.SetPathValue("id", id)
		req.Header.Set("Authorization", auth)
		// Called directly, so ids that are not valid URL paths still
		// reach the handler.
		w := httptest.NewRecorder()
		ts.srv.handleBlobPut(w, req)
		switch w.Code {
		case http.StatusCreated:
			if id != g.Id || auth != "Bearer "+g.UploadToken || len(body) != 4 {
				t.Fatalf("stored %q with %q and %d bytes", id, auth, len(body))
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound, http.StatusConflict:
		default:
			t.Fatalf("PUT %q: %d %q", id, w.Code, w.Body.Bytes())
		}
	})
}
