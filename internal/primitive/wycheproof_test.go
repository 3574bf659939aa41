package primitive_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io/fs"
	"testing"

	"github.com/c2sp/wycheproof"

	"github.com/hush-chat/hush/internal/primitive"
)

// Wycheproof result values.
const (
	resultValid      = "valid"
	resultInvalid    = "invalid"
	resultAcceptable = "acceptable"
)

// wycheproofTest holds the fields every Wycheproof test case has.
type wycheproofTest struct {
	TcID    int      `json:"tcId"`
	Comment string   `json:"comment"`
	Flags   []string `json:"flags"`
	Result  string   `json:"result"`
}

// wycheproofFile is the common shape of a testvectors_v1 file; G is the
// file-specific test group type.
type wycheproofFile[G any] struct {
	Algorithm     string `json:"algorithm"`
	Schema        string `json:"schema"`
	NumberOfTests int    `json:"numberOfTests"`
	TestGroups    []G    `json:"testGroups"`
}

// loadWycheproof decodes the named file of wycheproof.TestVectors, checking
// that it declares the expected schema.
func loadWycheproof[G any](t *testing.T, name, schema string) *wycheproofFile[G] {
	t.Helper()
	data, err := fs.ReadFile(wycheproof.TestVectors, name)
	if err != nil {
		t.Fatal(err)
	}
	var f wycheproofFile[G]
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if f.Schema != schema {
		t.Fatalf("%s: schema %q, want %q", name, f.Schema, schema)
	}
	return &f
}

// vectorCount tallies the vectors a test ran and checks the total against
// the file's numberOfTests.
type vectorCount struct {
	file  string
	total int
	byKey map[string]int
}

func newVectorCount(file string) *vectorCount {
	return &vectorCount{file: file, byKey: map[string]int{}}
}

func (c *vectorCount) add(key string) {
	c.total++
	c.byKey[key]++
}

// report logs the counts and fails if nothing ran or if fewer vectors ran
// than the file declares.
func (c *vectorCount) report(t *testing.T, declared int) {
	t.Helper()
	t.Logf("%s: ran %d of %d vectors %v", c.file, c.total, declared, c.byKey)
	if c.total == 0 {
		t.Fatalf("%s: no vectors ran", c.file)
	}
	if c.total != declared {
		t.Errorf("%s: ran %d vectors, file declares %d", c.file, c.total, declared)
	}
}

func isAllZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

type xdhTest struct {
	wycheproofTest
	Public  hexBytes `json:"public"`
	Private hexBytes `json:"private"`
	Shared  hexBytes `json:"shared"`
}

type xdhGroup struct {
	Type  string    `json:"type"`
	Curve string    `json:"curve"`
	Tests []xdhTest `json:"tests"`
}

// TestX25519Wycheproof runs x25519_test.json through primitive.X25519:
// valid cases must give the expected shared value; acceptable cases whose
// expected output is all zero must be rejected with ErrLowOrder, and other
// acceptable cases may be rejected but, if accepted, must give the
// expected value; invalid cases must be rejected.
func TestX25519Wycheproof(t *testing.T) {
	const name = "x25519_test.json"
	f := loadWycheproof[xdhGroup](t, name, "xdh_comp_schema_v1.json")
	count := newVectorCount(name)
	rejectedAcceptable := 0
	for _, g := range f.TestGroups {
		if g.Curve != "curve25519" {
			t.Fatalf("%s: unexpected curve %q", name, g.Curve)
		}
		for _, tc := range g.Tests {
			count.add(tc.Result)
			priv, err := ecdh.X25519().NewPrivateKey(tc.Private)
			if err != nil {
				t.Errorf("tcId %d (%s): NewPrivateKey: %v", tc.TcID, tc.Comment, err)
				continue
			}
			got, err := primitive.X25519(priv, tc.Public)
			switch tc.Result {
			case resultValid:
				if err != nil {
					t.Errorf("tcId %d (%s) %v: valid case rejected: %v", tc.TcID, tc.Comment, tc.Flags, err)
				} else if !bytes.Equal(got, tc.Shared) {
					t.Errorf("tcId %d (%s) %v: got %x, want %x", tc.TcID, tc.Comment, tc.Flags, got, tc.Shared)
				}
			case resultAcceptable:
				switch {
				case isAllZero(tc.Shared):
					if !errors.Is(err, primitive.ErrLowOrder) {
						t.Errorf("tcId %d (%s) %v: all-zero shared secret: got (%x, %v), want ErrLowOrder", tc.TcID, tc.Comment, tc.Flags, got, err)
					}
				case err != nil:
					rejectedAcceptable++
				case !bytes.Equal(got, tc.Shared):
					t.Errorf("tcId %d (%s) %v: got %x, want %x", tc.TcID, tc.Comment, tc.Flags, got, tc.Shared)
				}
			case resultInvalid:
				if err == nil {
					t.Errorf("tcId %d (%s) %v: invalid case accepted, got %x", tc.TcID, tc.Comment, tc.Flags, got)
				}
			default:
				t.Errorf("tcId %d: unknown result %q", tc.TcID, tc.Result)
			}
		}
	}
	t.Logf("%s: %d acceptable non-zero cases rejected", name, rejectedAcceptable)
	count.report(t, f.NumberOfTests)
}

type eddsaTest struct {
	wycheproofTest
	Msg hexBytes `json:"msg"`
	Sig hexBytes `json:"sig"`
}

type eddsaGroup struct {
	Type      string `json:"type"`
	PublicKey struct {
		Curve string   `json:"curve"`
		PK    hexBytes `json:"pk"`
	} `json:"publicKey"`
	Tests []eddsaTest `json:"tests"`
}

// TestEd25519Wycheproof runs ed25519_test.json through primitive.Verify:
// valid signatures must verify and invalid ones (malleable, truncated,
// wrong encodings, ...) must not.
func TestEd25519Wycheproof(t *testing.T) {
	const name = "ed25519_test.json"
	f := loadWycheproof[eddsaGroup](t, name, "eddsa_verify_schema_v1.json")
	count := newVectorCount(name)
	for _, g := range f.TestGroups {
		if g.PublicKey.Curve != "edwards25519" {
			t.Fatalf("%s: unexpected curve %q", name, g.PublicKey.Curve)
		}
		pub := ed25519.PublicKey(g.PublicKey.PK)
		for _, tc := range g.Tests {
			count.add(tc.Result)
			ok := primitive.Verify(pub, tc.Msg, tc.Sig)
			switch tc.Result {
			case resultValid:
				if !ok {
					t.Errorf("tcId %d (%s) %v: valid signature rejected", tc.TcID, tc.Comment, tc.Flags)
				}
			case resultInvalid:
				if ok {
					t.Errorf("tcId %d (%s) %v: invalid signature accepted", tc.TcID, tc.Comment, tc.Flags)
				}
			default:
				t.Errorf("tcId %d (%s) %v: unhandled result %q", tc.TcID, tc.Comment, tc.Flags, tc.Result)
			}
		}
	}
	count.report(t, f.NumberOfTests)
}

type aeadTest struct {
	wycheproofTest
	Key hexBytes `json:"key"`
	IV  hexBytes `json:"iv"`
	AAD hexBytes `json:"aad"`
	Msg hexBytes `json:"msg"`
	CT  hexBytes `json:"ct"`
	Tag hexBytes `json:"tag"`
}

type aeadGroup struct {
	Type    string     `json:"type"`
	KeySize int        `json:"keySize"`
	IVSize  int        `json:"ivSize"`
	TagSize int        `json:"tagSize"`
	Tests   []aeadTest `json:"tests"`
}

// TestAESGCMWycheproof runs aes_gcm_test.json through primitive.Seal and
// primitive.Open. Hush only uses AES-256 with a 96-bit nonce and 128-bit
// tag: for those groups valid cases must seal to ct||tag and open to msg,
// and invalid cases must fail to open with ErrAEAD. Every other group uses
// a key or nonce size the wrappers must refuse, so both must return an
// error (not ErrAEAD, and never output).
func TestAESGCMWycheproof(t *testing.T) {
	const name = "aes_gcm_test.json"
	f := loadWycheproof[aeadGroup](t, name, "aead_test_schema_v1.json")
	count := newVectorCount(name)
	for _, g := range f.TestGroups {
		ours := g.KeySize == 8*primitive.AEADKeySize &&
			g.IVSize == 8*primitive.AEADNonceLen &&
			g.TagSize == 8*primitive.AEADTagSize
		for _, tc := range g.Tests {
			ctTag := append(bytes.Clone(tc.CT), tc.Tag...)
			if !ours {
				count.add("refused")
				sealed, err := primitive.Seal(nil, tc.Key, tc.IV, tc.Msg, tc.AAD)
				if err == nil || sealed != nil {
					t.Errorf("tcId %d (key %d, iv %d bits): Seal = (%x, %v), want an error", tc.TcID, g.KeySize, g.IVSize, sealed, err)
				}
				opened, err := primitive.Open(nil, tc.Key, tc.IV, ctTag, tc.AAD)
				if err == nil || opened != nil {
					t.Errorf("tcId %d (key %d, iv %d bits): Open = (%x, %v), want an error", tc.TcID, g.KeySize, g.IVSize, opened, err)
				} else if errors.Is(err, primitive.ErrAEAD) {
					t.Errorf("tcId %d (key %d, iv %d bits): Open reported ErrAEAD, want a parameter error", tc.TcID, g.KeySize, g.IVSize)
				}
				continue
			}
			count.add(tc.Result)
			switch tc.Result {
			case resultValid:
				sealed, err := primitive.Seal(nil, tc.Key, tc.IV, tc.Msg, tc.AAD)
				if err != nil {
					t.Errorf("tcId %d (%s) %v: Seal: %v", tc.TcID, tc.Comment, tc.Flags, err)
				} else if !bytes.Equal(sealed, ctTag) {
					t.Errorf("tcId %d (%s) %v: Seal = %x, want %x", tc.TcID, tc.Comment, tc.Flags, sealed, ctTag)
				}
				// Seal must append to dst.
				prefix := []byte("prefix")
				sealed, err = primitive.Seal(bytes.Clone(prefix), tc.Key, tc.IV, tc.Msg, tc.AAD)
				if err != nil || !bytes.Equal(sealed, append(bytes.Clone(prefix), ctTag...)) {
					t.Errorf("tcId %d (%s) %v: Seal with dst = (%x, %v)", tc.TcID, tc.Comment, tc.Flags, sealed, err)
				}
				opened, err := primitive.Open(nil, tc.Key, tc.IV, ctTag, tc.AAD)
				if err != nil {
					t.Errorf("tcId %d (%s) %v: Open: %v", tc.TcID, tc.Comment, tc.Flags, err)
				} else if !bytes.Equal(opened, tc.Msg) {
					t.Errorf("tcId %d (%s) %v: Open = %x, want %x", tc.TcID, tc.Comment, tc.Flags, opened, tc.Msg)
				}
			case resultInvalid:
				opened, err := primitive.Open(nil, tc.Key, tc.IV, ctTag, tc.AAD)
				if !errors.Is(err, primitive.ErrAEAD) || opened != nil {
					t.Errorf("tcId %d (%s) %v: Open = (%x, %v), want ErrAEAD", tc.TcID, tc.Comment, tc.Flags, opened, err)
				}
			default:
				t.Errorf("tcId %d (%s) %v: unhandled result %q", tc.TcID, tc.Comment, tc.Flags, tc.Result)
			}
		}
	}
	if count.byKey[resultValid] == 0 || count.byKey[resultInvalid] == 0 {
		t.Errorf("%s: no AES-256-GCM valid or invalid vectors ran: %v", name, count.byKey)
	}
	count.report(t, f.NumberOfTests)
}

type hkdfTest struct {
	wycheproofTest
	IKM  hexBytes `json:"ikm"`
	Salt hexBytes `json:"salt"`
	Info hexBytes `json:"info"`
	Size int      `json:"size"`
	OKM  hexBytes `json:"okm"`
}

type hkdfGroup struct {
	Type    string     `json:"type"`
	KeySize int        `json:"keySize"`
	Tests   []hkdfTest `json:"tests"`
}

// TestHKDFWycheproof runs hkdf_sha256_test.json through primitive.HKDF:
// valid cases must give the expected output key material, invalid ones
// (output longer than 255*32 bytes) must be an error.
func TestHKDFWycheproof(t *testing.T) {
	const name = "hkdf_sha256_test.json"
	f := loadWycheproof[hkdfGroup](t, name, "hkdf_test_schema_v1.json")
	count := newVectorCount(name)
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			count.add(tc.Result)
			okm, err := primitive.HKDF(tc.IKM, tc.Salt, string(tc.Info), tc.Size)
			switch tc.Result {
			case resultValid:
				if err != nil {
					t.Errorf("tcId %d (%s) %v: %v", tc.TcID, tc.Comment, tc.Flags, err)
				} else if !bytes.Equal(okm, tc.OKM) {
					t.Errorf("tcId %d (%s) %v: got %x, want %x", tc.TcID, tc.Comment, tc.Flags, okm, tc.OKM)
				}
			case resultInvalid:
				if err == nil {
					t.Errorf("tcId %d (%s) %v: size %d accepted, got %d bytes", tc.TcID, tc.Comment, tc.Flags, tc.Size, len(okm))
				}
			default:
				t.Errorf("tcId %d (%s) %v: unhandled result %q", tc.TcID, tc.Comment, tc.Flags, tc.Result)
			}
		}
	}
	count.report(t, f.NumberOfTests)
}

type macTest struct {
	wycheproofTest
	Key hexBytes `json:"key"`
	Msg hexBytes `json:"msg"`
	Tag hexBytes `json:"tag"`
}

type macGroup struct {
	Type    string    `json:"type"`
	KeySize int       `json:"keySize"`
	TagSize int       `json:"tagSize"`
	Tests   []macTest `json:"tests"`
}

// TestHMACWycheproof runs hmac_sha256_test.json through primitive.HMAC.
// Hush always uses the full 256-bit tag; for the truncated-tag groups the
// test compares the tag with the same-length prefix of our output. Valid
// tags must match and invalid (modified) tags must not.
func TestHMACWycheproof(t *testing.T) {
	const name = "hmac_sha256_test.json"
	f := loadWycheproof[macGroup](t, name, "mac_test_schema_v1.json")
	count := newVectorCount(name)
	for _, g := range f.TestGroups {
		if g.TagSize <= 0 || g.TagSize > 8*primitive.HashSize || g.TagSize%8 != 0 {
			t.Fatalf("%s: unexpected tagSize %d", name, g.TagSize)
		}
		n := g.TagSize / 8
		kind := "full"
		if n < primitive.HashSize {
			kind = "truncated"
		}
		for _, tc := range g.Tests {
			count.add(kind + "/" + tc.Result)
			mac := primitive.HMAC(tc.Key, tc.Msg)
			if len(mac) != primitive.HashSize {
				t.Fatalf("tcId %d: HMAC is %d bytes, want %d", tc.TcID, len(mac), primitive.HashSize)
			}
			if len(tc.Tag) != n {
				t.Errorf("tcId %d: tag is %d bytes, group says %d", tc.TcID, len(tc.Tag), n)
				continue
			}
			match := bytes.Equal(mac[:n], tc.Tag)
			switch tc.Result {
			case resultValid:
				if !match {
					t.Errorf("tcId %d (%s) %v: got %x, want %x", tc.TcID, tc.Comment, tc.Flags, mac[:n], tc.Tag)
				}
			case resultInvalid:
				if match {
					t.Errorf("tcId %d (%s) %v: invalid tag %x matches", tc.TcID, tc.Comment, tc.Flags, tc.Tag)
				}
			default:
				t.Errorf("tcId %d (%s) %v: unhandled result %q", tc.TcID, tc.Comment, tc.Flags, tc.Result)
			}
		}
	}
	count.report(t, f.NumberOfTests)
}
