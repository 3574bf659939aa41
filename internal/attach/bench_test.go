package attach

import (
	"crypto/aes"
	"crypto/cipher"
	"io"
	"runtime"
	"testing"
)

const benchSize = 16 << 20

func BenchmarkEncrypt(b *testing.B) {
	pt := testData(benchSize)
	b.SetBytes(benchSize)
	for b.Loop() {
		w, _ := NewWriter(io.Discard, testKey())
		w.Write(pt)
		w.Close()
	}
}

func BenchmarkDecrypt(b *testing.B) {
	ct := encrypt(b, testKey(), testData(benchSize))
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := decrypt(testKey(), ct); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawGCM is the baseline: one AES-GCM seal per 64 KiB with a
// cipher built once.
func BenchmarkRawGCM(b *testing.B) {
	pt := testData(benchSize)
	blk, _ := aes.NewCipher(testKey())
	g, _ := cipher.NewGCM(blk)
	out := make([]byte, 0, ChunkSize+Overhead)
	nonce := make([]byte, 12)
	b.SetBytes(benchSize)
	for b.Loop() {
		for p := pt; len(p) > 0; p = p[ChunkSize:] {
			out = g.Seal(out[:0], nonce, p[:ChunkSize], nil)
		}
	}
}

// zeros is an endless source of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestConstantMemory streams a large file through a pipe, encrypting and
// decrypting, and checks the heap does not grow with the file.
func TestConstantMemory(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 16 << 20
	}
	pr, pw := io.Pipe()
	go func() {
		w, err := NewWriter(pw, testKey())
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		if _, err := io.Copy(w, io.LimitReader(zeros{}, size)); err != nil {
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(w.Close())
	}()
	r, err := NewReader(pr, testKey())
	if err != nil {
		t.Fatal(err)
	}
	var peak uint64
	buf := make([]byte, 32<<10)
	var total int64
	for i := 0; ; i++ {
		n, err := r.Read(buf)
		total += int64(n)
		if i%512 == 0 {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if total != size {
		t.Fatalf("decrypted %d bytes, want %d", total, size)
	}
	if peak > 32<<20 {
		t.Fatalf("heap in use reached %d MiB for a %d MiB file", peak>>20, size>>20)
	}
}
