package keys

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"

	"github.com/hush-chat/hush/internal/primitive"
)

// DHPublic is an X25519 public key of kind K.
type DHPublic[K kind] struct {
	k [primitive.X25519Size]byte
}

// DHPrivate is an X25519 private key of kind K.
type DHPrivate[K kind] struct {
	priv *ecdh.PrivateKey
}

// The X25519 key kinds (docs/protocol.md §2.1).
type (
	IdentityPublic       = DHPublic[identityKind]
	IdentityPrivate      = DHPrivate[identityKind]
	SignedPrekeyPublic   = DHPublic[signedPrekeyKind]
	SignedPrekeyPrivate  = DHPrivate[signedPrekeyKind]
	OneTimePrekeyPublic  = DHPublic[oneTimePrekeyKind]
	OneTimePrekeyPrivate = DHPrivate[oneTimePrekeyKind]
	EphemeralPublic      = DHPublic[ephemeralKind]
	EphemeralPrivate     = DHPrivate[ephemeralKind]
)

// DHPublicSize is the encoded size of every X25519 public key.
const DHPublicSize = 1 + primitive.X25519Size

// X25519Public is any X25519 public key, of any kind.
type X25519Public interface {
	x25519() []byte
}

func (p DHPublic[K]) x25519() []byte { return p.k[:] }

// RawX25519 is an untagged X25519 public value, as carried in message
// headers (ratchet and base keys, whose position gives their kind).
type RawX25519 [primitive.X25519Size]byte

func (r RawX25519) x25519() []byte { return r[:] }

func parseDHPublic[K kind](b []byte) (DHPublic[K], error) {
	var k K
	var p DHPublic[K]
	if err := checkEncoding(b, k.tag(), primitive.X25519Size); err != nil {
		return p, err
	}
	copy(p.k[:], b[1:])
	return p, nil
}

// ParseIdentityPublic parses an encoded device identity key.
func ParseIdentityPublic(b []byte) (IdentityPublic, error) { return parseDHPublic[identityKind](b) }

// ParseSignedPrekeyPublic parses an encoded signed prekey.
func ParseSignedPrekeyPublic(b []byte) (SignedPrekeyPublic, error) {
	return parseDHPublic[signedPrekeyKind](b)
}

// ParseOneTimePrekeyPublic parses an encoded one-time prekey.
func ParseOneTimePrekeyPublic(b []byte) (OneTimePrekeyPublic, error) {
	return parseDHPublic[oneTimePrekeyKind](b)
}

// Bytes returns the tagged encoding.
func (p DHPublic[K]) Bytes() []byte {
	var k K
	out := make([]byte, 1+primitive.X25519Size)
	out[0] = byte(k.tag())
	copy(out[1:], p.k[:])
	return out
}

// Raw returns the untagged 32-byte value.
func (p DHPublic[K]) Raw() RawX25519 { return RawX25519(p.k) }

// IsZero reports whether p is the zero value (no key).
func (p DHPublic[K]) IsZero() bool { return p.k == [primitive.X25519Size]byte{} }

// Equal compares two keys in constant time.
func (p DHPublic[K]) Equal(o DHPublic[K]) bool { return ctEqual(p.k[:], o.k[:]) }

func (p DHPublic[K]) String() string {
	var k K
	return k.name() + "(" + fingerprint(p.k[:]) + ")"
}

// MarshalText renders the key as hex of its tagged encoding.
func (p DHPublic[K]) MarshalText() ([]byte, error) {
	return []byte(fmt.Sprintf("%x", p.Bytes())), nil
}

func generateDH[K kind]() (DHPrivate[K], error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return DHPrivate[K]{}, err
	}
	return DHPrivate[K]{priv: priv}, nil
}

// GenerateIdentity makes a new device identity key.
func GenerateIdentity() (IdentityPrivate, error) { return generateDH[identityKind]() }

// GenerateSignedPrekey makes a new signed prekey.
func GenerateSignedPrekey() (SignedPrekeyPrivate, error) { return generateDH[signedPrekeyKind]() }

// GenerateOneTimePrekey makes a new one-time prekey.
func GenerateOneTimePrekey() (OneTimePrekeyPrivate, error) {
	return generateDH[oneTimePrekeyKind]()
}

// GenerateEphemeral makes a new PQXDH base key or ratchet key.
func GenerateEphemeral() (EphemeralPrivate, error) { return generateDH[ephemeralKind]() }

// ParseEphemeralPrivate parses an encoded ephemeral private key (as kept
// in session state).
func ParseEphemeralPrivate(b []byte) (EphemeralPrivate, error) {
	return parseDHPrivate[ephemeralKind](b)
}

func parseDHPrivate[K kind](b []byte) (DHPrivate[K], error) {
	var k K
	if err := checkEncoding(b, k.tag()|PrivateBit, primitive.X25519Size); err != nil {
		return DHPrivate[K]{}, err
	}
	priv, err := ecdh.X25519().NewPrivateKey(b[1:])
	if err != nil {
		return DHPrivate[K]{}, parseErr("%v", err)
	}
	return DHPrivate[K]{priv: priv}, nil
}

// ParseIdentityPrivate parses an encoded identity private key.
func ParseIdentityPrivate(b []byte) (IdentityPrivate, error) { return parseDHPrivate[identityKind](b) }

// ParseSignedPrekeyPrivate parses an encoded signed prekey private key.
func ParseSignedPrekeyPrivate(b []byte) (SignedPrekeyPrivate, error) {
	return parseDHPrivate[signedPrekeyKind](b)
}

// ParseOneTimePrekeyPrivate parses an encoded one-time prekey private key.
func ParseOneTimePrekeyPrivate(b []byte) (OneTimePrekeyPrivate, error) {
	return parseDHPrivate[oneTimePrekeyKind](b)
}

// Public returns the public half.
func (s DHPrivate[K]) Public() DHPublic[K] {
	var p DHPublic[K]
	if s.priv != nil {
		copy(p.k[:], s.priv.PublicKey().Bytes())
	}
	return p
}

// ECDH computes X25519 with any kind of public key, rejecting the all-zero
// result (docs/protocol.md §3.3).
func (s DHPrivate[K]) ECDH(pub X25519Public) ([]byte, error) {
	if s.priv == nil {
		return nil, fmt.Errorf("keys: ECDH with an empty private key")
	}
	return primitive.X25519(s.priv, pub.x25519())
}

// ECDHKey returns the underlying crypto/ecdh key, for HPKE.
func (s DHPrivate[K]) ECDHKey() *ecdh.PrivateKey { return s.priv }

// Bytes returns the private encoding (tag|0x80, scalar). Handle with care.
func (s DHPrivate[K]) Bytes() []byte {
	var k K
	return append([]byte{byte(k.tag() | PrivateBit)}, s.priv.Bytes()...)
}

// IsZero reports whether s holds no key.
func (s DHPrivate[K]) IsZero() bool { return s.priv == nil }

func (s DHPrivate[K]) String() string {
	var k K
	return k.name()[:len(k.name())-len("Public")] + "Private(redacted)"
}

// GoString keeps %#v from printing the key.
func (s DHPrivate[K]) GoString() string { return s.String() }
