package server

// Encrypted file blobs (docs/protocol.md §9.13). A client encrypts a file
// itself and asks on its WebSocket for a one-time upload grant; it then
// PUTs exactly the granted number of ciphertext bytes to /v1/blobs/{id}
// and passes the id (with the key, inside E2EE) to its peers, who GET it.
// The server never learns a file's name, type or key.
//
// Storage is a plain directory (Config.BlobDir) so several nodes can
// share it: for each blob, "<id>" holds the ciphertext once uploaded and
// "<id>.meta" a small JSON record (blobMeta). "<id>.part" is an upload
// in progress: created with O_EXCL, it is also the lock that makes the
// upload happen once. Every file is written to a temporary name and
// renamed, so a reader on any node sees a whole file or none.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hush-chat/hush/wire"
)

// Blob limits and lifetimes (§9.13).
const (
	DefaultMaxFileSize = 100 << 20           // ciphertext bytes per blob
	DefaultBlobQuota   = 1 << 30             // live and granted bytes per account
	BlobTTL            = 30 * 24 * time.Hour // an uploaded blob is deleted after this
	BlobGrantLifetime  = time.Hour           // an upload grant must be used within this
	MaxPendingGrants   = 100                 // unused grants per account
	blobIDSize         = 16                  // random bytes; 32 hex characters
	blobTokenSize      = 32                  // random bytes; 64 hex characters
	blobMetaSuffix     = ".meta"
	blobPartSuffix     = ".part"
	maxBlobMetaSize    = 4 << 10 // a meta file larger than this is not ours
)

// blobMeta is the record next to each blob. It names the owner (for the
// quota) and sizes and times; never a file name or type, which the
// server does not see.
type blobMeta struct {
	Owner        string `json:"owner"`
	Size         int64  `json:"size"`
	TokenSHA256  string `json:"token_sha256"` // hex SHA-256 of the upload token's bytes
	CreatedMS    int64  `json:"created_ms"`
	GrantExpMS   int64  `json:"grant_expires_ms"`
	ExpiresMS    int64  `json:"expires_ms"` // set on upload
	Uploaded     bool   `json:"uploaded"`
	UploadedAtMS int64  `json:"uploaded_ms,omitempty"`
}

// live reports whether m still counts: an uploaded blob until it
// expires, a grant until it does.
func (m *blobMeta) live(now time.Time) bool {
	if m.Uploaded {
		return now.UnixMilli() < m.ExpiresMS
	}
	return now.UnixMilli() < m.GrantExpMS
}

// parseBlobID accepts exactly 32 lowercase hex characters, so an id can
// name nothing in the file system but its own files.
func parseBlobID(s string) (string, bool) {
	if len(s) != 2*blobIDSize {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return s, true
}

// parseBlobToken reads "Bearer <64 lowercase hex>" and returns the
// token's bytes.
func parseBlobToken(header string) ([]byte, bool) {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || len(tok) != 2*blobTokenSize || strings.ToLower(tok) != tok {
		return nil, false
	}
	b, err := hex.DecodeString(tok)
	if err != nil {
		return nil, false
	}
	return b, true
}

// blobStore is the directory of blobs. It holds no state of its own
// besides the path: every node sharing the directory sees the same
// blobs.
type blobStore struct {
	dir string
}

func (b *blobStore) dataPath(id string) string { return filepath.Join(b.dir, id) }
func (b *blobStore) metaPath(id string) string { return filepath.Join(b.dir, id+blobMetaSuffix) }
func (b *blobStore) partPath(id string) string { return filepath.Join(b.dir, id+blobPartSuffix) }

func (b *blobStore) readMeta(id string) (*blobMeta, error) {
	f, err := os.Open(b.metaPath(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxBlobMetaSize+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxBlobMetaSize {
		return nil, fmt.Errorf("blob meta %s: over %d bytes", id, maxBlobMetaSize)
	}
	var m blobMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("blob meta %s: %w", id, err)
	}
	return &m, nil
}

// writeMeta replaces id's meta file atomically (temporary file, fsync,
// rename).
func (b *blobStore) writeMeta(id string, m *blobMeta) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(b.dir, "."+id+".meta-*") // 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(tmp, b.metaPath(id))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// usage sums owner's live blobs and grants: bytes, and unused grants.
// It reads every meta file; fine for the directory sizes one deployment
// keeps for 30 days, and it needs no index that nodes must agree on.
func (b *blobStore) usage(owner string, now time.Time) (bytes int64, grants int, err error) {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), blobMetaSuffix)
		if !ok {
			continue
		}
		if _, ok := parseBlobID(id); !ok {
			continue
		}
		m, err := b.readMeta(id)
		if err != nil || m.Owner != owner || !m.live(now) {
			continue // removed meanwhile, or another account's
		}
		bytes += m.Size
		if !m.Uploaded {
			grants++
		}
	}
	return bytes, grants, nil
}

// blobUpload answers blob_upload with a one-time grant (§9.13).
func (ss *session) blobUpload(req *wire.BlobUploadRequest) (*wire.ServerFrame, error) {
	s := ss.s
	if s.blobs == nil {
		return nil, apiErr(codeBadRequest, "this server stores no files")
	}
	size := req.GetSize()
	if size == 0 {
		return nil, apiErr(codeBadRequest, "a file must have at least one byte")
	}
	if size > uint64(s.maxFileSize) {
		return nil, apiErr(codeTooLarge, "file is %d bytes; the limit is %d", size, s.maxFileSize)
	}
	now := s.now()
	// The mutex keeps this node's concurrent grants for one account from
	// overshooting the quota together; across nodes it can be overshot
	// by at most one grant per node, which is harmless.
	s.blobMu.Lock()
	defer s.blobMu.Unlock()
	used, grants, err := s.blobs.usage(ss.ref.Username, now)
	if err != nil {
		return nil, fmt.Errorf("blob usage: %w", err)
	}
	if grants >= MaxPendingGrants {
		return nil, apiErr(codeRateLimited, "%d unused upload grants; use or let them expire first", grants)
	}
	if s.blobQuota >= 0 && used+int64(size) > s.blobQuota {
		return nil, apiErr(codeQuotaExceeded, "account stores %d bytes of files; %d more would exceed the quota of %d",
			used, size, s.blobQuota)
	}
	var idb [blobIDSize]byte
	var tok [blobTokenSize]byte
	rand.Read(idb[:])
	rand.Read(tok[:])
	id := hex.EncodeToString(idb[:])
	sum := sha256.Sum256(tok[:])
	grantExp := now.Add(BlobGrantLifetime)
	m := &blobMeta{
		Owner:       ss.ref.Username,
		Size:        int64(size),
		TokenSHA256: hex.EncodeToString(sum[:]),
		CreatedMS:   now.UnixMilli(),
		GrantExpMS:  grantExp.UnixMilli(),
	}
	if err := s.blobs.writeMeta(id, m); err != nil {
		return nil, fmt.Errorf("write blob meta: %w", err)
	}
	s.log.Debug("blob granted", "user", ss.ref.Username, "blob", id, "size", size)
	return &wire.ServerFrame{Body: &wire.ServerFrame_BlobGrant{BlobGrant: &wire.BlobUploadGrant{
		Id:          id,
		UploadToken: hex.EncodeToString(tok[:]),
		ExpiresMs:   grantExp.UnixMilli(),
		MaxSize:     size,
	}}}, nil
}

// handleBlobPut stores one blob: PUT /v1/blobs/{id} with the grant's
// bearer token and exactly the granted number of bytes (§9.13). The body
// is streamed to disk, never held in memory.
func (s *Server) handleBlobPut(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id, n, err := s.putBlob(r)
	if err == nil {
		s.metrics.blobsUploaded.Inc()
		s.metrics.blobBytesUploaded.Add(float64(n))
	}
	// The token is never logged; the id is a capability too, so only a
	// success names it, at Debug.
	var attrs []any
	if err == nil {
		attrs = []any{"blob", id, "size", n}
	}
	s.finishMsg("blob_put", "blob uploaded", start, err, attrs...)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) putBlob(r *http.Request) (id string, n int64, err error) {
	if s.blobs == nil {
		return "", 0, apiErr(codeNotFound, "this server stores no files")
	}
	id, ok := parseBlobID(r.PathValue("id"))
	if !ok {
		return "", 0, apiErr(codeNotFound, "no such blob")
	}
	tok, ok := parseBlobToken(r.Header.Get("Authorization"))
	if !ok {
		return id, 0, apiErr(codeUnauthorized, `upload needs "Authorization: Bearer <upload token>"`)
	}
	m, err := s.blobs.readMeta(id)
	if errors.Is(err, fs.ErrNotExist) {
		return id, 0, apiErr(codeNotFound, "no such blob")
	}
	if err != nil {
		return id, 0, err
	}
	want, err := hex.DecodeString(m.TokenSHA256)
	if err != nil {
		return id, 0, fmt.Errorf("blob meta %s: bad token hash", id)
	}
	got := sha256.Sum256(tok)
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return id, 0, apiErr(codeUnauthorized, "wrong upload token")
	}
	if m.Uploaded {
		return id, 0, apiErr(codeAlreadyUploaded, "this blob was already uploaded")
	}
	if s.now().UnixMilli() >= m.GrantExpMS {
		return id, 0, apiErr(codeNotFound, "the upload grant expired; ask for a new one")
	}
	if r.ContentLength >= 0 && r.ContentLength != m.Size {
		return id, 0, apiErr(codeBadRequest, "body is %d bytes; the grant is for exactly %d", r.ContentLength, m.Size)
	}

	// The part file is the upload lock: O_EXCL lets one PUT in, on any
	// node sharing the directory.
	part := s.blobs.partPath(id)
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return id, 0, apiErr(codeAlreadyUploaded, "this blob is being uploaded")
	}
	if err != nil {
		return id, 0, err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(part)
		}
	}()
	// Between an earlier upload's rename and its meta update the lock
	// is free again; the data file tells.
	if _, err := os.Stat(s.blobs.dataPath(id)); err == nil {
		return id, 0, apiErr(codeAlreadyUploaded, "this blob was already uploaded")
	}
	n, err = io.Copy(f, io.LimitReader(r.Body, m.Size+1))
	switch {
	case err != nil:
		return id, n, apiErr(codeBadRequest, "could not read the body after %d bytes", n)
	case n != m.Size:
		return id, n, apiErr(codeBadRequest, "body is %s bytes; the grant is for exactly %d", sizeWord(n, m.Size), m.Size)
	}
	if err := f.Sync(); err != nil {
		return id, n, err
	}
	if err := f.Close(); err != nil {
		return id, n, err
	}
	if err := os.Rename(part, s.blobs.dataPath(id)); err != nil {
		return id, n, err
	}
	keep = true
	syncDir(s.blobs.dir)
	now := s.now()
	m.Uploaded, m.UploadedAtMS, m.ExpiresMS = true, now.UnixMilli(), now.Add(BlobTTL).UnixMilli()
	if err := s.blobs.writeMeta(id, m); err != nil {
		// Without the uploaded flag the blob cannot be fetched; removing
		// the data lets the client retry with the same grant.
		os.Remove(s.blobs.dataPath(id))
		return id, n, err
	}
	return id, n, nil
}

// sizeWord describes a body that is not the granted size.
func sizeWord(n, size int64) string {
	if n > size {
		return "more than " + fmt.Sprint(size)
	}
	return fmt.Sprint(n)
}

// syncDir makes a rename in dir durable; a failure only weakens
// durability, so it is ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// handleBlobGet streams an uploaded blob. No authentication: the id is
// an unguessable capability that only the file's recipients learn.
func (s *Server) handleBlobGet(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	f, size, err := s.openBlob(r.PathValue("id"))
	s.finishMsg("blob_get", "blob download", start, err)
	if err != nil {
		writeError(w, err)
		return
	}
	defer f.Close()
	s.metrics.blobsDownloaded.Inc()
	cw := &countingWriter{ResponseWriter: w}
	cw.Header().Set("Content-Type", "application/octet-stream")
	cw.Header().Set("Cache-Control", "no-store")
	// ServeContent streams from the file and answers Range requests, so
	// an interrupted download can resume.
	http.ServeContent(cw, r, "", time.Time{}, io.NewSectionReader(f, 0, size))
	s.metrics.blobBytesDownloaded.Add(float64(cw.n))
}

func (s *Server) openBlob(raw string) (*os.File, int64, error) {
	notFound := apiErr(codeNotFound, "no such blob")
	if s.blobs == nil {
		return nil, 0, notFound
	}
	id, ok := parseBlobID(raw)
	if !ok {
		return nil, 0, notFound
	}
	m, err := s.blobs.readMeta(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, notFound
	}
	if err != nil {
		return nil, 0, err
	}
	if !m.Uploaded || !m.live(s.now()) {
		return nil, 0, notFound
	}
	f, err := os.Open(s.blobs.dataPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, notFound // swept meanwhile
	}
	if err != nil {
		return nil, 0, err
	}
	return f, m.Size, nil
}

// countingWriter counts the body bytes written, for the metrics.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// sweepBlobs deletes expired blobs, grants unused for their lifetime,
// and leftovers of interrupted uploads and meta writes. Any node may
// sweep a shared directory; removing a file twice is harmless.
func (s *Server) sweepBlobs(ctx context.Context) (int, error) {
	if s.blobs == nil {
		return 0, nil
	}
	entries, err := os.ReadDir(s.blobs.dir)
	if err != nil {
		return 0, err
	}
	now := s.now()
	deleted := 0
	for _, e := range entries {
		if ctx.Err() != nil {
			return deleted, ctx.Err()
		}
		name := e.Name()
		if id, ok := strings.CutSuffix(name, blobMetaSuffix); ok {
			if _, ok := parseBlobID(id); !ok {
				continue
			}
			m, err := s.blobs.readMeta(id)
			if err != nil || m.live(now) {
				continue
			}
			os.Remove(s.blobs.dataPath(id))
			os.Remove(s.blobs.partPath(id))
			if os.Remove(s.blobs.metaPath(id)) == nil && m.Uploaded {
				deleted++
			}
			continue
		}
		// A part file is touched by every write, and a temporary meta
		// file lives milliseconds: older ones were abandoned by a crash.
		if strings.HasSuffix(name, blobPartSuffix) || strings.HasPrefix(name, ".") && strings.Contains(name, ".meta-") {
			if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > BlobGrantLifetime {
				os.Remove(filepath.Join(s.blobs.dir, name))
			}
		}
	}
	return deleted, nil
}
