package identity

import (
	"bytes"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/hush-chat/hush/internal/keys"
)

// Prekey bundle constants (docs/protocol.md §3.3).
const (
	BundleVersion = 1
	PrekeyLabel   = "Hush-Prekey-v1"
)

// SignedPrekey is the device's medium-term X25519 prekey and its signature.
type SignedPrekey struct {
	ID        uint32
	Key       keys.SignedPrekeyPublic
	Signature []byte
}

// OneTimePrekey is an X25519 prekey the server hands out at most once.
type OneTimePrekey struct {
	ID  uint32
	Key keys.OneTimePrekeyPublic
}

// KEMPrekey is a signed ML-KEM-1024 prekey, one-time or last-resort.
type KEMPrekey struct {
	ID        uint32
	Key       keys.KEMPublic
	Signature []byte
}

// Bundle is what an initiator fetches to start a session with one device.
type Bundle struct {
	Username      string
	DeviceID      uint32
	IdentityKey   keys.IdentityPublic
	SigningKey    keys.DeviceSigningPublic
	SignedPrekey  SignedPrekey
	OneTimePrekey *OneTimePrekey // optional: the server may have run out
	KEMPrekey     KEMPrekey
}

// PrekeySignatureMessage is what the device signing key signs for a prekey:
// label || identity key || prekey id || tagged prekey. Binding the identity
// key ties the prekey to this device; the tag tells one-time from
// last-resort KEM keys.
func PrekeySignatureMessage(identity keys.IdentityPublic, id uint32, taggedKey []byte) []byte {
	var b cryptobyte.Builder
	b.AddBytes([]byte(PrekeyLabel))
	b.AddBytes(identity.Bytes())
	b.AddUint32(id)
	b.AddBytes(taggedKey)
	return b.BytesOrPanic()
}

// SignPrekey signs a tagged prekey encoding for the device with this
// identity key.
func SignPrekey(signer keys.DeviceSigningPrivate, identity keys.IdentityPublic, id uint32, taggedKey []byte) []byte {
	return signer.Sign(PrekeySignatureMessage(identity, id, taggedKey))
}

// Verify checks both prekey signatures against the bundle's signing key.
// The caller must also check that the signing and identity keys are the
// ones the account's verified device list names; VerifyAgainst does both.
func (b *Bundle) Verify() error {
	if !b.SigningKey.Verify(PrekeySignatureMessage(b.IdentityKey, b.SignedPrekey.ID, b.SignedPrekey.Key.Bytes()), b.SignedPrekey.Signature) {
		return fmt.Errorf("%w on signed prekey %d of %s/%d", ErrBadSignature, b.SignedPrekey.ID, b.Username, b.DeviceID)
	}
	if b.KEMPrekey.Key.IsZero() {
		return malformed("bundle has no KEM prekey")
	}
	if !b.SigningKey.Verify(PrekeySignatureMessage(b.IdentityKey, b.KEMPrekey.ID, b.KEMPrekey.Key.Bytes()), b.KEMPrekey.Signature) {
		return fmt.Errorf("%w on KEM prekey %d of %s/%d", ErrBadSignature, b.KEMPrekey.ID, b.Username, b.DeviceID)
	}
	return nil
}

// VerifyAgainst checks the bundle against a verified device list: the
// device must be listed with exactly these keys, and the prekey signatures
// must hold.
func (b *Bundle) VerifyAgainst(list *DeviceList) error {
	if list.Username != b.Username {
		return fmt.Errorf("%w: bundle for %q checked against list of %q", ErrNoDevice, b.Username, list.Username)
	}
	d, ok := list.Find(b.DeviceID)
	if !ok {
		return fmt.Errorf("%w: %s/%d", ErrNoDevice, b.Username, b.DeviceID)
	}
	if !d.SigningKey.Equal(b.SigningKey) || !d.IdentityKey.Equal(b.IdentityKey) {
		return fmt.Errorf("%w: keys of %s/%d differ from the device list", ErrNoDevice, b.Username, b.DeviceID)
	}
	return b.Verify()
}

// Marshal encodes the bundle (docs/protocol.md §3.3).
func (b *Bundle) Marshal() ([]byte, error) {
	if err := checkCanonical(b.Username); err != nil {
		return nil, err
	}
	if len(b.SignedPrekey.Signature) != keys.SignatureSize || len(b.KEMPrekey.Signature) != keys.SignatureSize {
		return nil, malformed("bundle signature has the wrong length")
	}
	if b.KEMPrekey.Key.IsZero() {
		return nil, malformed("bundle has no KEM prekey")
	}
	var c cryptobyte.Builder
	c.AddUint8(BundleVersion)
	c.AddUint8LengthPrefixed(func(c *cryptobyte.Builder) { c.AddBytes([]byte(b.Username)) })
	c.AddUint32(b.DeviceID)
	c.AddBytes(b.IdentityKey.Bytes())
	c.AddBytes(b.SigningKey.Bytes())
	c.AddUint32(b.SignedPrekey.ID)
	c.AddBytes(b.SignedPrekey.Key.Bytes())
	c.AddBytes(b.SignedPrekey.Signature)
	if b.OneTimePrekey != nil {
		c.AddUint8(1)
		c.AddUint32(b.OneTimePrekey.ID)
		c.AddBytes(b.OneTimePrekey.Key.Bytes())
	} else {
		c.AddUint8(0)
	}
	c.AddUint32(b.KEMPrekey.ID)
	c.AddBytes(b.KEMPrekey.Key.Bytes())
	c.AddBytes(b.KEMPrekey.Signature)
	return c.Bytes()
}

// ParseBundle parses an encoded bundle strictly. It does not verify it.
func ParseBundle(data []byte) (*Bundle, error) {
	s := cryptobyte.String(data)
	var ver uint8
	var user cryptobyte.String
	var b Bundle
	if !s.ReadUint8(&ver) {
		return nil, malformed("bundle is empty")
	}
	if ver != BundleVersion {
		return nil, malformed("bundle format version %d, want %d", ver, BundleVersion)
	}
	var ik, sk, spk, spkSig []byte
	if !s.ReadUint8LengthPrefixed(&user) || !s.ReadUint32(&b.DeviceID) ||
		!s.ReadBytes(&ik, keys.DHPublicSize) || !s.ReadBytes(&sk, keys.SigningPublicSize) ||
		!s.ReadUint32(&b.SignedPrekey.ID) || !s.ReadBytes(&spk, keys.DHPublicSize) ||
		!s.ReadBytes(&spkSig, keys.SignatureSize) {
		return nil, malformed("bundle truncated")
	}
	b.Username = string(user)
	if err := checkCanonical(b.Username); err != nil {
		return nil, err
	}
	var err error
	if b.IdentityKey, err = keys.ParseIdentityPublic(ik); err != nil {
		return nil, err
	}
	if b.SigningKey, err = keys.ParseDeviceSigningPublic(sk); err != nil {
		return nil, err
	}
	if b.SignedPrekey.Key, err = keys.ParseSignedPrekeyPublic(spk); err != nil {
		return nil, err
	}
	b.SignedPrekey.Signature = bytes.Clone(spkSig)
	var hasOTK uint8
	if !s.ReadUint8(&hasOTK) {
		return nil, malformed("bundle truncated")
	}
	switch hasOTK {
	case 0:
	case 1:
		var otk OneTimePrekey
		var raw []byte
		if !s.ReadUint32(&otk.ID) || !s.ReadBytes(&raw, keys.DHPublicSize) {
			return nil, malformed("bundle truncated")
		}
		if otk.Key, err = keys.ParseOneTimePrekeyPublic(raw); err != nil {
			return nil, err
		}
		b.OneTimePrekey = &otk
	default:
		return nil, malformed("one-time prekey flag %d", hasOTK)
	}
	var kem, kemSig []byte
	if !s.ReadUint32(&b.KEMPrekey.ID) || !s.ReadBytes(&kem, keys.KEMPublicSize) || !s.ReadBytes(&kemSig, keys.SignatureSize) {
		return nil, malformed("bundle truncated")
	}
	if b.KEMPrekey.Key, err = keys.ParseKEMPublic(kem); err != nil {
		return nil, err
	}
	b.KEMPrekey.Signature = bytes.Clone(kemSig)
	if !s.Empty() {
		return nil, malformed("%d trailing bytes after bundle", len(s))
	}
	return &b, nil
}
