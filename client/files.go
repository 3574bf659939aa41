package client

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/attach"
	"github.com/hush-chat/hush/wire"
)

// Files travel as encrypted blobs (docs/protocol.md §9.14): the file is
// encrypted under a fresh key (internal/attach), uploaded to the server,
// and the key, the blob's id and the SHA-256 of the ciphertext go to the
// recipient inside an ordinary end-to-end encrypted message.

// maxFileName bounds the name sent with, and saved for, a file.
const maxFileName = 200

// Progress is called as an upload or download advances.
type Progress func(done, total int64)

// AttachmentInfo describes a file received with a message.
type AttachmentInfo struct {
	Name        string // as the sender named it, made safe to save
	ContentType string
	Size        int64  // plaintext bytes
	SHA256      string // hex, of the ciphertext
	Path        string // where Download saved it, once it did
	// SavedSHA256 is the hex SHA-256 of the saved file (the plaintext),
	// once Download saved it: what sha256sum says of Path.
	SavedSHA256 string
	att         *wire.Attachment
}

// SendFile encrypts the file at path, uploads it and sends it to every
// device of to with caption (which may be empty). progress, if not nil,
// follows the upload. Memory use does not depend on the file's size: it is
// encrypted into a temporary file first.
func (c *Client) SendFile(ctx context.Context, to, path, caption string, progress Progress) (MessageID, error) {
	a, err := c.account()
	if err != nil {
		return MessageID{}, err
	}
	if caption != "" {
		if err := checkText(caption); err != nil {
			return MessageID{}, err
		}
	}
	name := safeName(filepath.Base(path))
	f, err := os.Open(path)
	if err != nil {
		return MessageID{}, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return MessageID{}, err
	} else if !st.Mode().IsRegular() {
		return MessageID{}, fmt.Errorf("%s is not a regular file", path)
	}
	key := make([]byte, attach.KeySize)
	rand.Read(key)
	tmp, err := os.CreateTemp("", "hush-upload-*")
	if err != nil {
		return MessageID{}, &localError{err}
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	h := sha256.New()
	w, err := attach.NewWriter(io.MultiWriter(tmp, h), key)
	if err != nil {
		return MessageID{}, err
	}
	// The size is what was read, not what Stat said: the file may change.
	size, err := io.Copy(w, f)
	if err != nil {
		return MessageID{}, fmt.Errorf("read %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return MessageID{}, &localError{err}
	}
	ctSize := attach.CiphertextSize(size)
	id, err := c.upload(ctx, a, tmp, ctSize, progress)
	if err != nil {
		return MessageID{}, err
	}
	return c.sendContent(ctx, to, &wire.Content{
		Body: &wire.Content_Text{Text: &wire.Text{Body: caption}},
		Attachment: &wire.Attachment{
			BlobId:         id,
			Key:            key,
			Sha256:         h.Sum(nil),
			Size:           uint64(size),
			CiphertextSize: uint64(ctSize),
			FileName:       name,
			ContentType:    contentType(name),
			ChunkSize:      attach.ChunkSize,
		},
	})
}

// upload asks for a blob grant and PUTs the ciphertext in f; it returns the
// blob's id.
func (c *Client) upload(ctx context.Context, a *account, f *os.File, size int64, progress Progress) (string, error) {
	cn, err := c.connection(ctx)
	if err != nil {
		return "", err
	}
	r, err := cn.request(ctx, &wire.ClientFrame{Body: &wire.ClientFrame_BlobUpload{BlobUpload: &wire.BlobUploadRequest{Size: uint64(size)}}})
	var se *ServerError
	if errors.As(err, &se) && se.Code == "too_large" {
		return "", fmt.Errorf("%w: %s", ErrTooLarge, se.Message)
	}
	if err != nil {
		return "", err
	}
	g := r.GetBlobGrant()
	if g == nil || !validBlobID(g.GetId()) || g.GetUploadToken() == "" {
		return "", fmt.Errorf("%w: expected a blob grant", ErrProtocol)
	}
	u, err := c.blobURL(a, g.GetId())
	if err != nil {
		return "", err
	}
	body := &progressReader{r: io.NewSectionReader(f, 0, size), total: size, fn: progress}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, body)
	if err != nil {
		return "", err
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+g.GetUploadToken())
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.blobHTTP().Do(req)
	if err != nil {
		return "", &UnreachableError{URL: c.serverURL(a), Err: err}
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", &ServerError{Code: "upload_failed", Message: fmt.Sprintf("the server refused the upload with HTTP %d", resp.StatusCode)}
	}
	return g.GetId(), nil
}

// blobHTTP is the HTTP client without its overall timeout: a large file
// takes as long as it takes; the caller's context bounds it.
func (c *Client) blobHTTP() *http.Client {
	hc := *c.http
	hc.Timeout = 0
	return &hc
}

func (c *Client) blobURL(a *account, id string) (string, error) {
	u, err := parseServerURL(c.serverURL(a))
	if err != nil {
		return "", err
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/blobs/" + id
	return u.String(), nil
}

// Download fetches the file of att into dir and returns the path it was
// saved at (also set as att.Path). The ciphertext goes to a temporary file
// in dir and its SHA-256 is checked against the message's before anything
// is decrypted; a mismatch or any tampering leaves nothing behind. An
// existing file is never overwritten: "name (1).ext" and so on is used.
func (c *Client) Download(ctx context.Context, att *AttachmentInfo, dir string, progress Progress) (string, error) {
	a, err := c.account()
	if err != nil {
		return "", err
	}
	if att == nil || att.att == nil {
		return "", errors.New("no attachment to download")
	}
	w := att.att
	u, err := c.blobURL(a, w.GetBlobId())
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.blobHTTP().Do(req)
	if err != nil {
		return "", &UnreachableError{URL: c.serverURL(a), Err: err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", &ServerError{Code: "not_found", Message: "the file is no longer on the server"}
	case resp.StatusCode != http.StatusOK:
		return "", &ServerError{Code: "download_failed", Message: fmt.Sprintf("the server answered HTTP %d", resp.StatusCode)}
	}
	tmp, err := os.CreateTemp(dir, ".hush-download-*")
	if err != nil {
		return "", &localError{err}
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	want := int64(w.GetCiphertextSize())
	h := sha256.New()
	body := &progressReader{r: io.LimitReader(resp.Body, want+1), total: want, fn: progress}
	n, err := io.Copy(io.MultiWriter(tmp, h), body)
	if err != nil {
		return "", &UnreachableError{URL: c.serverURL(a), Err: err}
	}
	if n != want || !equalHash(h, w.GetSha256()) {
		return "", fmt.Errorf("%w: the downloaded file %q does not match its checksum; it was not saved", ErrProtocol, att.Name)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return "", &localError{err}
	}
	r, err := attach.NewReader(tmp, w.GetKey())
	if err != nil {
		return "", err
	}
	out, path, err := createUnique(dir, att.Name)
	if err != nil {
		return "", &localError{err}
	}
	ph := sha256.New()
	got, err := io.Copy(io.MultiWriter(out, ph), r)
	if err == nil && got != att.Size {
		err = fmt.Errorf("%w: file %q has %d bytes, the message said %d", ErrProtocol, att.Name, got, att.Size)
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = &localError{cerr}
	}
	if err != nil {
		os.Remove(path)
		return "", err
	}
	att.Path, att.SavedSHA256 = path, hex.EncodeToString(ph.Sum(nil))
	return path, nil
}

func equalHash(h hash.Hash, want []byte) bool {
	got := h.Sum(nil)
	return len(want) == len(got) && string(got) == string(want)
}

// createUnique creates dir/name, or dir/"base (k).ext" if taken, mode 0600.
func createUnique(dir, name string) (*os.File, string, error) {
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for k := range 1000 {
		n := name
		if k > 0 {
			n = fmt.Sprintf("%s (%d)%s", base, k, ext)
		}
		p := filepath.Join(dir, n)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			return f, p, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, "", err
		}
	}
	return nil, "", fmt.Errorf("too many files named like %q in %s", name, dir)
}

// safeName makes a sender-chosen name safe to save: the last path element
// only, no control characters, no leading dots (hidden files, "..") or
// spaces, bounded length.
func safeName(s string) string {
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		s = s[i+1:]
	}
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || r == ':' {
			return '_'
		}
		return r
	}, s)
	s = strings.TrimLeft(s, ". ")
	s = strings.TrimRight(s, ". ")
	for len(s) > maxFileName {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	if s == "" {
		return "file"
	}
	return s
}

func contentType(name string) string {
	if t := mime.TypeByExtension(filepath.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

func validBlobID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// attachmentInfo checks an attachment from a message: anything this
// version could not download and decrypt is an error.
func attachmentInfo(w *wire.Attachment) (*AttachmentInfo, error) {
	switch {
	case !validBlobID(w.GetBlobId()), len(w.GetKey()) != attach.KeySize, len(w.GetSha256()) != sha256.Size,
		w.GetChunkSize() != attach.ChunkSize, w.GetSize() > 1<<50,
		w.GetCiphertextSize() != uint64(attach.CiphertextSize(int64(w.GetSize()))):
		return nil, fmt.Errorf("%w: a file this version cannot read", ErrProtocol)
	}
	ct := w.GetContentType()
	if len(ct) > 128 || !utf8.ValidString(ct) {
		ct = "application/octet-stream"
	}
	return &AttachmentInfo{
		Name: safeName(w.GetFileName()), ContentType: ct, Size: int64(w.GetSize()),
		SHA256: hex.EncodeToString(w.GetSha256()), att: w,
	}, nil
}

// storedAttachment decodes history.attachment (checked when stored); nil
// if there is none.
func storedAttachment(b []byte) *AttachmentInfo {
	if b == nil {
		return nil
	}
	var w wire.Attachment
	if proto.Unmarshal(b, &w) != nil {
		return nil
	}
	a, err := attachmentInfo(&w)
	if err != nil {
		return nil
	}
	return a
}

// progressReader reports how much of total was read.
type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.fn != nil && n > 0 {
		p.fn(p.done, p.total)
	}
	return n, err
}
