package keys

import (
	"crypto/mlkem"
	"fmt"
)

// KEM sizes for ML-KEM-1024 (FIPS 203).
const (
	KEMPublicSize     = 1 + mlkem.EncapsulationKeySize1024
	KEMCiphertextSize = mlkem.CiphertextSize1024
	kemSeedSize       = mlkem.SeedSize
)

// KEMPublic is an ML-KEM-1024 prekey, either one-time or last-resort; the
// tag says which, and the tag is covered by the prekey signature.
type KEMPublic struct {
	tag Tag
	ek  *mlkem.EncapsulationKey1024
}

// KEMPrivate is the decapsulation half of a KEM prekey.
type KEMPrivate struct {
	tag Tag
	dk  *mlkem.DecapsulationKey1024
}

// ParseKEMPublic parses an encoded ML-KEM-1024 prekey of either kind.
// crypto/mlkem checks the encapsulation key's modulus.
func ParseKEMPublic(b []byte) (KEMPublic, error) {
	if len(b) == 0 {
		return KEMPublic{}, parseErr("empty KEM key")
	}
	t := Tag(b[0])
	if t != TagKEMOneTime && t != TagKEMLastResort {
		return KEMPublic{}, parseErr("type tag %s, want %s or %s", t, TagKEMOneTime, TagKEMLastResort)
	}
	if err := checkEncoding(b, t, mlkem.EncapsulationKeySize1024); err != nil {
		return KEMPublic{}, err
	}
	ek, err := mlkem.NewEncapsulationKey1024(b[1:])
	if err != nil {
		return KEMPublic{}, parseErr("%v", err)
	}
	return KEMPublic{tag: t, ek: ek}, nil
}

// LastResort reports whether this is the reusable last-resort key.
func (p KEMPublic) LastResort() bool { return p.tag == TagKEMLastResort }

// IsZero reports whether p holds no key.
func (p KEMPublic) IsZero() bool { return p.ek == nil }

// Bytes returns the tagged encoding.
func (p KEMPublic) Bytes() []byte {
	if p.ek == nil {
		return nil
	}
	return append([]byte{byte(p.tag)}, p.ek.Bytes()...)
}

// Equal compares two keys in constant time.
func (p KEMPublic) Equal(o KEMPublic) bool {
	if p.ek == nil || o.ek == nil {
		return p.ek == nil && o.ek == nil
	}
	return ctEqual(p.Bytes(), o.Bytes())
}

// Encapsulate returns a fresh shared secret and its ciphertext.
func (p KEMPublic) Encapsulate() (shared, ciphertext []byte, err error) {
	if p.ek == nil {
		return nil, nil, fmt.Errorf("keys: encapsulate to an empty KEM key")
	}
	shared, ciphertext = p.ek.Encapsulate()
	return shared, ciphertext, nil
}

func (p KEMPublic) String() string {
	if p.ek == nil {
		return "KEMPublic(none)"
	}
	return "KEMPublic(" + p.tag.String() + "," + fingerprint(p.ek.Bytes()) + ")"
}

// GenerateKEM makes a new ML-KEM-1024 prekey; lastResort selects its kind.
func GenerateKEM(lastResort bool) (KEMPrivate, error) {
	dk, err := mlkem.GenerateKey1024()
	if err != nil {
		return KEMPrivate{}, err
	}
	t := TagKEMOneTime
	if lastResort {
		t = TagKEMLastResort
	}
	return KEMPrivate{tag: t, dk: dk}, nil
}

// ParseKEMPrivate parses an encoded KEM private key (tag|0x80, 64-byte seed).
func ParseKEMPrivate(b []byte) (KEMPrivate, error) {
	if len(b) == 0 {
		return KEMPrivate{}, parseErr("empty KEM private key")
	}
	t := Tag(b[0]) &^ PrivateBit
	if Tag(b[0])&PrivateBit == 0 || (t != TagKEMOneTime && t != TagKEMLastResort) {
		return KEMPrivate{}, parseErr("type tag 0x%02x is not a KEM private key", b[0])
	}
	if err := checkEncoding(b, t|PrivateBit, kemSeedSize); err != nil {
		return KEMPrivate{}, err
	}
	dk, err := mlkem.NewDecapsulationKey1024(b[1:])
	if err != nil {
		return KEMPrivate{}, parseErr("%v", err)
	}
	return KEMPrivate{tag: t, dk: dk}, nil
}

// Public returns the public half.
func (s KEMPrivate) Public() KEMPublic {
	if s.dk == nil {
		return KEMPublic{}
	}
	return KEMPublic{tag: s.tag, ek: s.dk.EncapsulationKey()}
}

// LastResort reports whether this is the reusable last-resort key.
func (s KEMPrivate) LastResort() bool { return s.tag == TagKEMLastResort }

// Decapsulate recovers the shared secret from a ciphertext.
func (s KEMPrivate) Decapsulate(ciphertext []byte) ([]byte, error) {
	if s.dk == nil {
		return nil, fmt.Errorf("keys: decapsulate with an empty KEM key")
	}
	if len(ciphertext) != KEMCiphertextSize {
		return nil, parseErr("KEM ciphertext is %d bytes, want %d", len(ciphertext), KEMCiphertextSize)
	}
	return s.dk.Decapsulate(ciphertext)
}

// Bytes returns the private encoding. Handle with care.
func (s KEMPrivate) Bytes() []byte {
	return append([]byte{byte(s.tag | PrivateBit)}, s.dk.Bytes()...)
}

// IsZero reports whether s holds no key.
func (s KEMPrivate) IsZero() bool { return s.dk == nil }

func (s KEMPrivate) String() string { return "KEMPrivate(redacted)" }

// GoString keeps %#v from printing the key.
func (s KEMPrivate) GoString() string { return s.String() }
