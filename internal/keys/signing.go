package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"github.com/hush-chat/hush/internal/primitive"
)

// SigningPublic is an Ed25519 public key of kind K.
type SigningPublic[K kind] struct {
	k [ed25519Size]byte
}

// SigningPrivate is an Ed25519 private key of kind K. The key sits behind
// a pointer so that printing a struct holding one (fmt does not call
// String on unexported fields) shows an address, not the seed.
type SigningPrivate[K kind] struct {
	priv *ed25519.PrivateKey
}

// The Ed25519 key kinds (docs/protocol.md §2.1).
type (
	AccountPublic        = SigningPublic[accountKind]
	AccountPrivate       = SigningPrivate[accountKind]
	DeviceSigningPublic  = SigningPublic[deviceSigningKind]
	DeviceSigningPrivate = SigningPrivate[deviceSigningKind]
	ServerPublic         = SigningPublic[serverKind]
	ServerPrivate        = SigningPrivate[serverKind]
)

// SigningPublicSize is the encoded size of every Ed25519 public key.
const SigningPublicSize = 1 + ed25519Size

// SignatureSize is the size of an Ed25519 signature.
const SignatureSize = ed25519.SignatureSize

func parseSigningPublic[K kind](b []byte) (SigningPublic[K], error) {
	var k K
	var p SigningPublic[K]
	if err := checkEncoding(b, k.tag(), ed25519Size); err != nil {
		return p, err
	}
	copy(p.k[:], b[1:])
	return p, nil
}

// ParseAccountPublic parses an encoded account key.
func ParseAccountPublic(b []byte) (AccountPublic, error) { return parseSigningPublic[accountKind](b) }

// ParseDeviceSigningPublic parses an encoded device signing key.
func ParseDeviceSigningPublic(b []byte) (DeviceSigningPublic, error) {
	return parseSigningPublic[deviceSigningKind](b)
}

// ParseServerPublic parses an encoded server signing key.
func ParseServerPublic(b []byte) (ServerPublic, error) { return parseSigningPublic[serverKind](b) }

// Bytes returns the tagged encoding.
func (p SigningPublic[K]) Bytes() []byte {
	var k K
	out := make([]byte, 1+ed25519Size)
	out[0] = byte(k.tag())
	copy(out[1:], p.k[:])
	return out
}

// Raw returns the 32-byte Ed25519 key without the tag.
func (p SigningPublic[K]) Raw() []byte { return append([]byte(nil), p.k[:]...) }

// IsZero reports whether p is the zero value (no key).
func (p SigningPublic[K]) IsZero() bool { return p.k == [ed25519Size]byte{} }

// Equal compares two keys in constant time.
func (p SigningPublic[K]) Equal(o SigningPublic[K]) bool { return ctEqual(p.k[:], o.k[:]) }

// Verify reports whether sig is p's signature of msg.
func (p SigningPublic[K]) Verify(msg, sig []byte) bool {
	if p.IsZero() {
		return false
	}
	return primitive.Verify(ed25519.PublicKey(p.k[:]), msg, sig)
}

func (p SigningPublic[K]) String() string {
	var k K
	return k.name() + "(" + fingerprint(p.k[:]) + ")"
}

// MarshalText renders the key as hex of its tagged encoding.
func (p SigningPublic[K]) MarshalText() ([]byte, error) {
	return []byte(fmt.Sprintf("%x", p.Bytes())), nil
}

// GenerateSigning makes a new Ed25519 key of kind K from crypto/rand.
func generateSigning[K kind]() (SigningPrivate[K], error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SigningPrivate[K]{}, err
	}
	return SigningPrivate[K]{priv: &priv}, nil
}

// GenerateAccount makes a new account key.
func GenerateAccount() (AccountPrivate, error) { return generateSigning[accountKind]() }

// GenerateDeviceSigning makes a new device signing key.
func GenerateDeviceSigning() (DeviceSigningPrivate, error) {
	return generateSigning[deviceSigningKind]()
}

// GenerateServer makes a new server signing key.
func GenerateServer() (ServerPrivate, error) { return generateSigning[serverKind]() }

func signingFromSeed[K kind](seed []byte) (SigningPrivate[K], error) {
	if len(seed) != ed25519.SeedSize {
		return SigningPrivate[K]{}, parseErr("Ed25519 seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	k := ed25519.NewKeyFromSeed(seed)
	return SigningPrivate[K]{priv: &k}, nil
}

func parseSigningPrivate[K kind](b []byte) (SigningPrivate[K], error) {
	var k K
	if err := checkEncoding(b, k.tag()|PrivateBit, ed25519.SeedSize); err != nil {
		return SigningPrivate[K]{}, err
	}
	return signingFromSeed[K](b[1:])
}

// ParseAccountPrivate parses an encoded account private key.
func ParseAccountPrivate(b []byte) (AccountPrivate, error) {
	return parseSigningPrivate[accountKind](b)
}

// ParseDeviceSigningPrivate parses an encoded device signing private key.
func ParseDeviceSigningPrivate(b []byte) (DeviceSigningPrivate, error) {
	return parseSigningPrivate[deviceSigningKind](b)
}

// ParseServerPrivate parses an encoded server private key.
func ParseServerPrivate(b []byte) (ServerPrivate, error) {
	return parseSigningPrivate[serverKind](b)
}

// AccountFromSeed derives an account key from a 32-byte seed (the
// recovery key, docs/protocol.md §2.3).
func AccountFromSeed(seed []byte) (AccountPrivate, error) { return signingFromSeed[accountKind](seed) }

// Public returns the public half.
func (s SigningPrivate[K]) Public() SigningPublic[K] {
	var p SigningPublic[K]
	if s.priv != nil {
		copy(p.k[:], s.priv.Public().(ed25519.PublicKey))
	}
	return p
}

// Sign signs msg. The caller prefixes msg with a domain-separation label.
func (s SigningPrivate[K]) Sign(msg []byte) []byte {
	return primitive.Sign(*s.priv, msg)
}

// Bytes returns the private encoding (tag|0x80, seed). Handle with care.
func (s SigningPrivate[K]) Bytes() []byte {
	var k K
	out := make([]byte, 1+ed25519.SeedSize)
	out[0] = byte(k.tag() | PrivateBit)
	copy(out[1:], s.priv.Seed())
	return out
}

// Seed returns the 32-byte seed. Handle with care.
func (s SigningPrivate[K]) Seed() []byte { return s.priv.Seed() }

// IsZero reports whether s holds no key.
func (s SigningPrivate[K]) IsZero() bool { return s.priv == nil }

func (s SigningPrivate[K]) String() string {
	var k K
	return k.name()[:len(k.name())-len("Public")] + "Private(redacted)"
}

// GoString keeps %#v from printing the key.
func (s SigningPrivate[K]) GoString() string { return s.String() }
