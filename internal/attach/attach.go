// Package attach encrypts files for attachments (docs/protocol.md §9.14).
//
// A file is cut into ChunkSize-byte plaintext chunks, each sealed with
// AES-256-GCM under a key derived from the file's random key. The nonce is
// an 11-byte big-endian chunk counter followed by a flag byte that is 1 on
// the final chunk only (the STREAM construction), so dropping, reordering
// or appending chunks, or cutting the file anywhere, fails authentication.
// Memory use is constant: one chunk at a time.
package attach

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hush-chat/hush/internal/primitive"
)

const (
	// ChunkSize is the plaintext bytes per chunk; every chunk but the last
	// is exactly this long.
	ChunkSize = 64 << 10
	// KeySize is the size of a file key.
	KeySize = 32
	// Overhead is the authentication tag added to each chunk.
	Overhead = 16
	// MaxChunks bounds a file: beyond it the counter would need a wider
	// field than we allow for, and nobody sends 256 TiB attachments.
	MaxChunks = 1 << 32

	label     = "Hush-Attachment-v1"
	nonceSize = 12
)

// ErrInvalid is returned for any ciphertext that does not authenticate:
// a wrong key, a flipped bit, or missing, reordered or extra chunks.
var ErrInvalid = errors.New("attach: file is corrupted or was tampered with")

// ErrTooLarge is returned when a file would need more than MaxChunks chunks.
var ErrTooLarge = errors.New("attach: file is too large")

// CiphertextSize is the encrypted size of a plaintext of n bytes. An empty
// file is one empty final chunk.
func CiphertextSize(n int64) int64 {
	chunks := (n + ChunkSize - 1) / ChunkSize
	if chunks == 0 {
		chunks = 1
	}
	return n + chunks*Overhead
}

// chunkKey derives the AEAD key from the file key. Deriving (rather than
// using the file key directly) separates this use of the key from any
// other the protocol might add later.
func chunkKey(fileKey []byte) ([]byte, error) {
	if len(fileKey) != KeySize {
		return nil, fmt.Errorf("attach: key is %d bytes, want %d", len(fileKey), KeySize)
	}
	return primitive.HKDF(fileKey, nil, label, primitive.AEADKeySize)
}

// nonce sets n to counter || last.
func nonce(n *[nonceSize]byte, counter uint64, last bool) {
	clear(n[:3])
	binary.BigEndian.PutUint64(n[3:11], counter)
	n[11] = 0
	if last {
		n[11] = 1
	}
}

type writer struct {
	dst     io.Writer
	key     []byte
	buf     []byte // pending plaintext, at most ChunkSize
	out     []byte // sealed chunk
	counter uint64
	err     error
	closed  bool
}

// NewWriter returns a writer that encrypts everything written to it under
// key and writes the ciphertext to dst. Close must be called to write the
// final chunk; it does not close dst.
func NewWriter(dst io.Writer, key []byte) (io.WriteCloser, error) {
	k, err := chunkKey(key)
	if err != nil {
		return nil, err
	}
	return &writer{dst: dst, key: k, buf: make([]byte, 0, ChunkSize), out: make([]byte, 0, ChunkSize+Overhead)}, nil
}

func (w *writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("attach: write after close")
	}
	n := 0
	for len(p) > 0 {
		// A full buffer is only sealed once more data shows it is not the
		// last chunk.
		if len(w.buf) == ChunkSize {
			if err := w.seal(false); err != nil {
				return n, err
			}
		}
		k := copy(w.buf[len(w.buf):ChunkSize], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		n += k
	}
	return n, nil
}

func (w *writer) seal(last bool) error {
	if w.counter >= MaxChunks {
		w.err = ErrTooLarge
		return w.err
	}
	var n [nonceSize]byte
	nonce(&n, w.counter, last)
	out, err := primitive.Seal(w.out[:0], w.key, n[:], w.buf, nil)
	if err != nil {
		w.err = err
		return err
	}
	if _, err := w.dst.Write(out); err != nil {
		w.err = err
		return err
	}
	w.counter++
	w.buf = w.buf[:0]
	return nil
}

// Close writes the final chunk.
func (w *writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.seal(true)
	primitive.Wipe(w.buf[:cap(w.buf)])
	return err
}

type reader struct {
	src     *bufio.Reader
	key     []byte
	buf     []byte // ciphertext chunk, then its plaintext
	plain   []byte // authenticated plaintext not yet returned
	counter uint64
	done    bool // the final chunk was authenticated
	err     error
}

// NewReader returns a reader of the plaintext of the ciphertext in src.
// It returns only authenticated plaintext, one chunk at a time; any
// tampering, including truncation at a chunk boundary or trailing data,
// ends it with ErrInvalid (or the underlying read error).
func NewReader(src io.Reader, key []byte) (io.Reader, error) {
	k, err := chunkKey(key)
	if err != nil {
		return nil, err
	}
	return &reader{src: bufio.NewReaderSize(src, 4096), key: k, buf: make([]byte, ChunkSize+Overhead)}, nil
}

func (r *reader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.err = r.next()
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

// next reads and opens one chunk. Whether it is the last one is decided by
// looking one byte ahead: an authentic stream ends right after the chunk
// sealed as last, so any other guess fails to authenticate.
func (r *reader) next() error {
	n, err := io.ReadFull(r.src, r.buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		// Short: it can only be the last chunk.
	case err != nil:
		return err
	}
	last := n < len(r.buf)
	if !last {
		if _, err := r.src.Peek(1); err == io.EOF {
			last = true
		} else if err != nil {
			return err
		}
	}
	if n < Overhead {
		return ErrInvalid
	}
	if r.counter >= MaxChunks {
		return ErrInvalid
	}
	var nn [nonceSize]byte
	nonce(&nn, r.counter, last)
	pt, err := primitive.Open(r.buf[:0], r.key, nn[:], r.buf[:n], nil)
	if err != nil {
		return ErrInvalid
	}
	r.counter++
	r.plain = pt
	r.done = last
	return nil
}
