package attach

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "regenerate testdata/vector.json")

func testKey() []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

func testData(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func encrypt(t testing.TB, key, pt []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, key)
	if err != nil {
		t.Fatal(err)
	}
	// Odd write sizes exercise the buffering.
	for p := pt; len(p) > 0; {
		n := min(len(p), 10007)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decrypt(key, ct []byte) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(ct), key)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3*ChunkSize + 5, 4 * ChunkSize} {
		pt := testData(n)
		ct := encrypt(t, testKey(), pt)
		if int64(len(ct)) != CiphertextSize(int64(n)) {
			t.Errorf("size %d: ciphertext %d bytes, CiphertextSize says %d", n, len(ct), CiphertextSize(int64(n)))
		}
		got, err := decrypt(testKey(), ct)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("size %d: plaintext differs", n)
		}
	}
}

func TestTampering(t *testing.T) {
	pt := testData(3*ChunkSize + 100)
	ct := encrypt(t, testKey(), pt)
	full := ChunkSize + Overhead
	chunk := func(i int) []byte { return ct[i*full : min((i+1)*full, len(ct))] }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	flipped := func(i int) []byte {
		b := bytes.Clone(ct)
		b[i] ^= 0x01
		return b
	}
	empty := encrypt(t, testKey(), nil)
	cases := map[string][]byte{
		"drop last chunk":        ct[:3*full],
		"drop first chunk":       ct[full:],
		"cut mid chunk":          ct[:full+1000],
		"cut mid last chunk":     ct[:len(ct)-1],
		"cut to less than a tag": ct[:3*full+5],
		"empty input":            {},
		"swap chunks":            cat(chunk(1), chunk(0), chunk(2), chunk(3)),
		"duplicate chunk":        cat(chunk(0), chunk(0), chunk(1), chunk(2), chunk(3)),
		"append chunk":           cat(ct, chunk(3)),
		"append byte":            cat(ct, []byte{0}),
		"append empty final":     cat(ct, empty),
		"flip first byte":        flipped(0),
		"flip tag byte":          flipped(full - 1),
		"flip last byte":         flipped(len(ct) - 1),
		"flip middle":            flipped(2*full + 333),
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := decrypt(testKey(), c)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			// Whatever came out before the error was authentic.
			if !bytes.HasPrefix(pt, got) {
				t.Fatalf("returned %d unauthenticated bytes", len(got))
			}
		})
	}
	wrong := testKey()
	wrong[0] ^= 1
	if _, err := decrypt(wrong, ct); !errors.Is(err, ErrInvalid) {
		t.Fatalf("wrong key: err = %v", err)
	}
	// A full-chunk file cut at the boundary of its only chunk.
	one := encrypt(t, testKey(), testData(2*ChunkSize))
	if _, err := decrypt(testKey(), one[:full]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("truncated full-chunk file: err = %v", err)
	}
}

func TestBadKey(t *testing.T) {
	if _, err := NewWriter(io.Discard, make([]byte, 16)); err == nil {
		t.Fatal("NewWriter accepted a 16-byte key")
	}
	if _, err := NewReader(bytes.NewReader(nil), nil); err == nil {
		t.Fatal("NewReader accepted an empty key")
	}
}

func TestCiphertextSize(t *testing.T) {
	for n, want := range map[int64]int64{0: 16, 1: 17, ChunkSize: ChunkSize + 16, ChunkSize + 1: ChunkSize + 33} {
		if got := CiphertextSize(n); got != want {
			t.Errorf("CiphertextSize(%d) = %d, want %d", n, got, want)
		}
	}
}

// vector freezes the format: plaintext is testData(n), the key testKey().
// Our construction is not C2SP's chunked encryption (which adds its own
// header and key derivation), so its vectors cannot be reused.
type vector struct {
	Key              string `json:"key"`
	PlaintextLength  int    `json:"plaintext_length"`
	PlaintextSHA256  string `json:"plaintext_sha256"`
	CiphertextSHA256 string `json:"ciphertext_sha256"`
	CiphertextHead   string `json:"ciphertext_head"` // first 48 bytes
	CiphertextTail   string `json:"ciphertext_tail"` // last 48 bytes
}

func TestKnownAnswer(t *testing.T) {
	path := filepath.Join("testdata", "vectors.json")
	var got []vector
	for _, n := range []int{0, 5, ChunkSize, 2*ChunkSize + 3} {
		pt := testData(n)
		ct := encrypt(t, testKey(), pt)
		ps, cs := sha256.Sum256(pt), sha256.Sum256(ct)
		got = append(got, vector{
			Key: hex.EncodeToString(testKey()), PlaintextLength: n,
			PlaintextSHA256: hex.EncodeToString(ps[:]), CiphertextSHA256: hex.EncodeToString(cs[:]),
			CiphertextHead: hex.EncodeToString(ct[:min(48, len(ct))]), CiphertextTail: hex.EncodeToString(ct[max(0, len(ct)-48):]),
		})
	}
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	var want []vector
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Fatalf("%d vectors, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("vector %d (length %d) changed:\n got %+v\nwant %+v", i, want[i].PlaintextLength, got[i], want[i])
		}
	}
}

func FuzzNewReader(f *testing.F) {
	f.Add(encrypt(f, testKey(), nil))
	f.Add(encrypt(f, testKey(), []byte("hello")))
	f.Add(encrypt(f, testKey(), testData(ChunkSize+1)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ct []byte) {
		r, err := NewReader(bytes.NewReader(ct), testKey())
		if err != nil {
			t.Fatal(err)
		}
		pt, err := io.ReadAll(r)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		// Accepted: it must be exactly what the writer makes.
		if !bytes.Equal(encrypt(t, testKey(), pt), ct) {
			t.Fatal("accepted a ciphertext the writer would not produce")
		}
	})
}
