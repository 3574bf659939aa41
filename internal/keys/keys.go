// Package keys defines one Go type per kind of key Hush uses, so that an
// account key can never be passed where a prekey is expected.
//
// Every public key encodes as a one-byte type tag followed by the raw key
// (docs/protocol.md §2). Parsing is strict: exact length, known tag.
// Private keys encode as the tag with the high bit set followed by the
// seed or scalar; they exist only on the device that made them.
// Equality is constant time, and no private key prints its value.
package keys

import (
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
)

// Tag is the first byte of every encoded key (docs/protocol.md §2.1).
type Tag byte

// Key type tags. Private encodings use Tag|PrivateBit.
const (
	TagAccount       Tag = 0x01 // Ed25519, signs the device list
	TagDeviceSigning Tag = 0x02 // Ed25519, signs prekeys and authenticates to the server
	TagIdentity      Tag = 0x03 // X25519, the device's long-term DH key
	TagSignedPrekey  Tag = 0x04 // X25519, medium-term, signed by the device signing key
	TagOneTimePrekey Tag = 0x05 // X25519, used at most once
	TagKEMOneTime    Tag = 0x06 // ML-KEM-1024, used at most once, signed
	TagKEMLastResort Tag = 0x07 // ML-KEM-1024, reused when no one-time KEM key is left, signed
	TagServer        Tag = 0x08 // Ed25519, the server's key for sender certificates
	TagEphemeral     Tag = 0x09 // X25519, PQXDH base keys and ratchet keys (untagged on the wire)

	PrivateBit Tag = 0x80
)

func (t Tag) String() string {
	switch t {
	case TagAccount:
		return "account"
	case TagDeviceSigning:
		return "device-signing"
	case TagIdentity:
		return "identity"
	case TagSignedPrekey:
		return "signed-prekey"
	case TagOneTimePrekey:
		return "one-time-prekey"
	case TagKEMOneTime:
		return "kem-one-time"
	case TagKEMLastResort:
		return "kem-last-resort"
	case TagServer:
		return "server"
	case TagEphemeral:
		return "ephemeral"
	}
	return fmt.Sprintf("tag(0x%02x)", byte(t))
}

// ErrMalformed is wrapped by every parse error in this package.
var ErrMalformed = errors.New("keys: malformed key")

func parseErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// checkEncoding verifies an encoded key's tag and exact length.
func checkEncoding(b []byte, want Tag, size int) error {
	if len(b) == 0 {
		return parseErr("empty %s key", want)
	}
	if Tag(b[0]) != want {
		return parseErr("type tag %s, want %s", Tag(b[0]), want)
	}
	if len(b) != 1+size {
		return parseErr("%s key is %d bytes, want %d", want, len(b), 1+size)
	}
	return nil
}

func ctEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// fingerprint is a short, non-secret rendering of a public key for logs.
func fingerprint(b []byte) string {
	if len(b) > 8 {
		b = b[:8]
	}
	return hex.EncodeToString(b)
}

// kind is a key kind marker: an empty type whose methods name its tag.
type kind interface {
	tag() Tag
	name() string
}

type (
	accountKind       struct{}
	deviceSigningKind struct{}
	serverKind        struct{}
	identityKind      struct{}
	signedPrekeyKind  struct{}
	oneTimePrekeyKind struct{}
	ephemeralKind     struct{}
)

func (accountKind) tag() Tag       { return TagAccount }
func (accountKind) name() string   { return "AccountPublic" }
func (deviceSigningKind) tag() Tag { return TagDeviceSigning }
func (deviceSigningKind) name() string {
	return "DeviceSigningPublic"
}
func (serverKind) tag() Tag           { return TagServer }
func (serverKind) name() string       { return "ServerPublic" }
func (identityKind) tag() Tag         { return TagIdentity }
func (identityKind) name() string     { return "IdentityPublic" }
func (signedPrekeyKind) tag() Tag     { return TagSignedPrekey }
func (signedPrekeyKind) name() string { return "SignedPrekeyPublic" }
func (oneTimePrekeyKind) tag() Tag    { return TagOneTimePrekey }
func (oneTimePrekeyKind) name() string {
	return "OneTimePrekeyPublic"
}

func (ephemeralKind) tag() Tag     { return TagEphemeral }
func (ephemeralKind) name() string { return "EphemeralPublic" }

// ed25519Size is the raw size of Ed25519 public keys and seeds.
const ed25519Size = ed25519.PublicKeySize
