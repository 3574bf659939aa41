package primitive_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/hush-chat/hush/internal/primitive"
)

// hexBytes is a byte string written as lowercase hex in the JSON vector
// files (both testdata/ and Wycheproof).
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = b
	return nil
}

// loadTestdata decodes testdata/name into v, failing the test on error.
func loadTestdata(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

type rfc7748File struct {
	Source string `json:"source"`
	X25519 struct {
		Source  string `json:"source"`
		Vectors []struct {
			Scalar hexBytes `json:"scalar"`
			U      hexBytes `json:"u"`
			Output hexBytes `json:"output"`
		} `json:"vectors"`
	} `json:"x25519"`
	Iterated struct {
		Source  string   `json:"source"`
		Start   hexBytes `json:"start"`
		Results []struct {
			Iterations int      `json:"iterations"`
			K          hexBytes `json:"k"`
		} `json:"results"`
	} `json:"iterated"`
	DH struct {
		Source       string   `json:"source"`
		AlicePrivate hexBytes `json:"alice_private"`
		AlicePublic  hexBytes `json:"alice_public"`
		BobPrivate   hexBytes `json:"bob_private"`
		BobPublic    hexBytes `json:"bob_public"`
		Shared       hexBytes `json:"shared"`
	} `json:"dh"`
}

// x25519 runs primitive.X25519 on a raw 32-byte scalar, the way the RFC
// vectors state their inputs.
func x25519(t *testing.T, scalar, u []byte) []byte {
	t.Helper()
	priv, err := ecdh.X25519().NewPrivateKey(scalar)
	if err != nil {
		t.Fatalf("NewPrivateKey(%x): %v", scalar, err)
	}
	out, err := primitive.X25519(priv, u)
	if err != nil {
		t.Fatalf("X25519(%x, %x): %v", scalar, u, err)
	}
	return out
}

// TestX25519RFC7748 checks the two scalar/u-coordinate vectors of
// RFC 7748 §5.2.
func TestX25519RFC7748(t *testing.T) {
	var f rfc7748File
	loadTestdata(t, "rfc7748.json", &f)
	if len(f.X25519.Vectors) != 2 {
		t.Fatalf("%s: %d vectors, want 2", f.X25519.Source, len(f.X25519.Vectors))
	}
	for i, v := range f.X25519.Vectors {
		if got := x25519(t, v.Scalar, v.U); !bytes.Equal(got, v.Output) {
			t.Errorf("%s vector %d: got %x, want %x", f.X25519.Source, i+1, got, v.Output)
		}
	}
}

// TestX25519IteratedRFC7748 runs the 1 and 1,000 iteration test of
// RFC 7748 §5.2 (the 1,000,000 iteration value is in the file but too slow
// to run).
func TestX25519IteratedRFC7748(t *testing.T) {
	var f rfc7748File
	loadTestdata(t, "rfc7748.json", &f)
	want := map[int][]byte{}
	for _, r := range f.Iterated.Results {
		want[r.Iterations] = r.K
	}
	if want[1] == nil || want[1000] == nil {
		t.Fatalf("%s: missing the 1 or 1,000 iteration result", f.Iterated.Source)
	}
	k := bytes.Clone(f.Iterated.Start)
	u := bytes.Clone(f.Iterated.Start)
	checked := 0
	for i := 1; i <= 1000; i++ {
		k, u = x25519(t, k, u), k
		if w, ok := want[i]; ok {
			checked++
			if !bytes.Equal(k, w) {
				t.Errorf("%s: after %d iterations got %x, want %x", f.Iterated.Source, i, k, w)
			}
		}
	}
	if checked != 2 {
		t.Fatalf("checked %d iteration results, want 2", checked)
	}
}

// TestX25519DiffieHellmanRFC7748 checks the Alice/Bob example of
// RFC 7748 §6.1: both public keys and the shared secret, in both
// directions.
func TestX25519DiffieHellmanRFC7748(t *testing.T) {
	var f rfc7748File
	loadTestdata(t, "rfc7748.json", &f)
	dh := f.DH
	basepoint := make([]byte, primitive.X25519Size)
	basepoint[0] = 9

	alice, err := ecdh.X25519().NewPrivateKey(dh.AlicePrivate)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := ecdh.X25519().NewPrivateKey(dh.BobPrivate)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		priv *ecdh.PrivateKey
		want []byte
	}{{"Alice", alice, dh.AlicePublic}, {"Bob", bob, dh.BobPublic}} {
		if got := c.priv.PublicKey().Bytes(); !bytes.Equal(got, c.want) {
			t.Errorf("%s: %s public key %x, want %x", dh.Source, c.name, got, c.want)
		}
		got, err := primitive.X25519(c.priv, basepoint)
		if err != nil {
			t.Fatalf("%s: X25519(%s, 9): %v", dh.Source, c.name, err)
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s: X25519(%s, 9) = %x, want %x", dh.Source, c.name, got, c.want)
		}
	}

	k1, err := primitive.X25519(alice, dh.BobPublic)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := primitive.X25519(bob, dh.AlicePublic)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1, dh.Shared) {
		t.Errorf("%s: X25519(a, B) = %x, want %x", dh.Source, k1, dh.Shared)
	}
	if !bytes.Equal(k2, dh.Shared) {
		t.Errorf("%s: X25519(b, A) = %x, want %x", dh.Source, k2, dh.Shared)
	}
}

type rfc8032File struct {
	Source  string `json:"source"`
	Vectors []struct {
		Name      string   `json:"name"`
		SecretKey hexBytes `json:"secret_key"`
		PublicKey hexBytes `json:"public_key"`
		Message   hexBytes `json:"message"`
		Signature hexBytes `json:"signature"`
	} `json:"vectors"`
}

// TestEd25519RFC8032 checks the Ed25519 vectors of RFC 8032 §7.1 (TEST 1,
// 2, 3, 1024 and SHA(abc)): key derivation from the seed, deterministic
// signing, verification, and that flipping any single bit of the
// signature, or changing the message, makes verification fail.
func TestEd25519RFC8032(t *testing.T) {
	var f rfc8032File
	loadTestdata(t, "rfc8032.json", &f)
	if len(f.Vectors) != 5 {
		t.Fatalf("%s: %d vectors, want 5", f.Source, len(f.Vectors))
	}
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			priv := ed25519.NewKeyFromSeed(v.SecretKey)
			pub := priv.Public().(ed25519.PublicKey)
			if !bytes.Equal(pub, v.PublicKey) {
				t.Errorf("public key %x, want %x", pub, v.PublicKey)
			}
			sig := primitive.Sign(priv, v.Message)
			if !bytes.Equal(sig, v.Signature) {
				t.Errorf("signature %x, want %x", sig, v.Signature)
			}
			if !primitive.Verify(ed25519.PublicKey(v.PublicKey), v.Message, v.Signature) {
				t.Errorf("Verify rejected the RFC signature")
			}
			for bit := range 8 * len(v.Signature) {
				bad := bytes.Clone(v.Signature)
				bad[bit/8] ^= 1 << (bit % 8)
				if primitive.Verify(ed25519.PublicKey(v.PublicKey), v.Message, bad) {
					t.Errorf("Verify accepted the signature with bit %d flipped", bit)
				}
			}
			msg := append(bytes.Clone(v.Message), 0)
			if primitive.Verify(ed25519.PublicKey(v.PublicKey), msg, v.Signature) {
				t.Errorf("Verify accepted the signature for a longer message")
			}
			if len(v.Message) > 0 {
				msg := bytes.Clone(v.Message)
				msg[0] ^= 1
				if primitive.Verify(ed25519.PublicKey(v.PublicKey), msg, v.Signature) {
					t.Errorf("Verify accepted the signature for a modified message")
				}
			}
			if primitive.Verify(ed25519.PublicKey(v.PublicKey), v.Message, v.Signature[:len(v.Signature)-1]) {
				t.Errorf("Verify accepted a truncated signature")
			}
			if primitive.Verify(ed25519.PublicKey(v.PublicKey[:len(v.PublicKey)-1]), v.Message, v.Signature) {
				t.Errorf("Verify accepted a truncated public key")
			}
		})
	}
}
