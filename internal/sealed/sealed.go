// Package sealed implements sealed-sender envelopes (docs/protocol.md §7):
// the server learns which device a message is for, never who sent it.
//
// The outer layer is HPKE (RFC 9180, DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, AES-256-GCM, base mode) to the recipient device's identity
// key. Inside are a sender certificate, signed by the server, and the
// ratchet message. Opening checks the HPKE layer, the certificate's
// signature against the pinned server key and its expiry; decrypting then
// requires the ratchet session's peer to be the certified device.
package sealed

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/pqxdh"
	"github.com/hush-chat/hush/internal/ratchet"
)

// Constants (docs/protocol.md §7).
const (
	EnvelopeVersion    = 1
	CertificateVersion = 1
	CertificateLabel   = "Hush-SenderCertificate-v1"
	HPKEInfoLabel      = "Hush-SealedSender-v1"
	// MaxCertificateLifetime bounds how far ahead a certificate may expire;
	// a longer one is refused, so a leaked certificate cannot live long.
	MaxCertificateLifetime = 7 * 24 * time.Hour
	encSize                = 32 // DHKEM(X25519) encapsulated key
)

// Errors a caller can tell apart.
var (
	ErrMalformed          = errors.New("sealed: malformed envelope or certificate")
	ErrNotForUs           = errors.New("sealed: envelope does not open with this device's key")
	ErrBadCertificate     = errors.New("sealed: sender certificate signature is invalid")
	ErrExpiredCertificate = errors.New("sealed: sender certificate expired")
	ErrSenderMismatch     = ratchet.ErrUntrustedIdentity
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Certificate says: this account's device has these keys, until Expires.
type Certificate struct {
	Username    string
	DeviceID    uint32
	IdentityKey keys.IdentityPublic
	SigningKey  keys.DeviceSigningPublic
	Expires     time.Time // whole seconds
	Signature   []byte
}

func (c *Certificate) body() ([]byte, error) {
	if _, err := identity.NormalizeUsername(c.Username); err != nil {
		return nil, err
	}
	if c.Expires.Unix() <= 0 {
		return nil, malformed("certificate expiry %v", c.Expires)
	}
	if c.DeviceID == 0 || c.DeviceID > identity.MaxDeviceID {
		return nil, malformed("certificate device id %d", c.DeviceID)
	}
	var b cryptobyte.Builder
	b.AddUint8(CertificateVersion)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.Username)) })
	b.AddUint32(c.DeviceID)
	b.AddBytes(c.IdentityKey.Bytes())
	b.AddBytes(c.SigningKey.Bytes())
	b.AddUint64(uint64(c.Expires.Unix()))
	return b.Bytes()
}

// IssueCertificate is the server's side: sign a certificate for a device.
func IssueCertificate(server keys.ServerPrivate, username string, deviceID uint32, ik keys.IdentityPublic, sk keys.DeviceSigningPublic, expires time.Time) (*Certificate, error) {
	c := &Certificate{Username: username, DeviceID: deviceID, IdentityKey: ik, SigningKey: sk, Expires: time.Unix(expires.Unix(), 0)}
	body, err := c.body()
	if err != nil {
		return nil, err
	}
	c.Signature = server.Sign(append([]byte(CertificateLabel), body...))
	return c, nil
}

// Marshal encodes the certificate: body || signature.
func (c *Certificate) Marshal() ([]byte, error) {
	body, err := c.body()
	if err != nil {
		return nil, err
	}
	if len(c.Signature) != keys.SignatureSize {
		return nil, malformed("certificate signature is %d bytes", len(c.Signature))
	}
	return append(body, c.Signature...), nil
}

// ParseCertificate parses a certificate strictly; it does not verify it.
func ParseCertificate(data []byte) (*Certificate, error) {
	s := cryptobyte.String(data)
	var ver uint8
	var user cryptobyte.String
	var ik, sk, sig []byte
	var exp uint64
	c := &Certificate{}
	if !s.ReadUint8(&ver) {
		return nil, malformed("empty certificate")
	}
	if ver != CertificateVersion {
		return nil, malformed("certificate version %d, want %d", ver, CertificateVersion)
	}
	if !s.ReadUint8LengthPrefixed(&user) || !s.ReadUint32(&c.DeviceID) ||
		!s.ReadBytes(&ik, keys.DHPublicSize) || !s.ReadBytes(&sk, keys.SigningPublicSize) ||
		!s.ReadUint64(&exp) || !s.ReadBytes(&sig, keys.SignatureSize) {
		return nil, malformed("certificate truncated")
	}
	if !s.Empty() {
		return nil, malformed("%d trailing bytes after certificate", len(s))
	}
	c.Username = string(user)
	if n, err := identity.NormalizeUsername(c.Username); err != nil || n != c.Username {
		return nil, malformed("certificate username %q", c.Username)
	}
	if c.DeviceID == 0 || c.DeviceID > identity.MaxDeviceID {
		return nil, malformed("certificate device id %d", c.DeviceID)
	}
	var err error
	if c.IdentityKey, err = keys.ParseIdentityPublic(ik); err != nil {
		return nil, malformed("%v", err)
	}
	if c.SigningKey, err = keys.ParseDeviceSigningPublic(sk); err != nil {
		return nil, malformed("%v", err)
	}
	if exp == 0 || exp > 1<<62 {
		return nil, malformed("certificate expiry %d", exp)
	}
	c.Expires = time.Unix(int64(exp), 0)
	c.Signature = bytes.Clone(sig)
	return c, nil
}

// Verify checks the server's signature and that now is before Expires.
func (c *Certificate) Verify(server keys.ServerPublic, now time.Time) error {
	body, err := c.body()
	if err != nil {
		return err
	}
	if !server.Verify(append([]byte(CertificateLabel), body...), c.Signature) {
		return ErrBadCertificate
	}
	if !now.Before(c.Expires) {
		return fmt.Errorf("%w at %s", ErrExpiredCertificate, c.Expires.UTC().Format(time.RFC3339))
	}
	if c.Expires.After(now.Add(MaxCertificateLifetime)) {
		return fmt.Errorf("%w: expires more than %v ahead", ErrBadCertificate, MaxCertificateLifetime)
	}
	return nil
}

func suite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.AES256GCM() }

func info(recipient keys.IdentityPublic) []byte {
	return append([]byte(HPKEInfoLabel), recipient.Bytes()...)
}

// Seal wraps a ratchet message and the sender's certificate for one
// recipient device.
func Seal(recipient keys.IdentityPublic, cert *Certificate, message []byte) ([]byte, error) {
	certBytes, err := cert.Marshal()
	if err != nil {
		return nil, err
	}
	raw := recipient.Raw()
	pub, err := ecdh.X25519().NewPublicKey(raw[:])
	if err != nil {
		return nil, err
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var inner cryptobyte.Builder
	inner.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(certBytes) })
	inner.AddBytes(message)
	pt, err := inner.Bytes()
	if err != nil {
		return nil, err
	}
	kdf, aead := suite()
	ct, err := hpke.Seal(pk, kdf, aead, info(recipient), pt)
	if err != nil {
		return nil, err
	}
	return append([]byte{EnvelopeVersion}, ct...), nil
}

// Opened is a verified envelope: who the server says sent it, and the
// ratchet message still to be decrypted.
type Opened struct {
	Certificate *Certificate
	Message     []byte
}

// Open removes the HPKE layer and checks the certificate against the
// pinned server key at time now.
func Open(recipient keys.IdentityPrivate, envelope []byte, server keys.ServerPublic, now time.Time) (*Opened, error) {
	if len(envelope) < 1+encSize+16 {
		return nil, malformed("envelope is %d bytes", len(envelope))
	}
	if envelope[0] != EnvelopeVersion {
		return nil, malformed("envelope version %d, want %d", envelope[0], EnvelopeVersion)
	}
	sk, err := hpke.NewDHKEMPrivateKey(recipient.ECDHKey())
	if err != nil {
		return nil, err
	}
	kdf, aead := suite()
	pt, err := hpke.Open(sk, kdf, aead, info(recipient.Public()), envelope[1:])
	if err != nil {
		return nil, ErrNotForUs
	}
	s := cryptobyte.String(pt)
	var certBytes cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&certBytes) {
		return nil, malformed("inner certificate truncated")
	}
	cert, err := ParseCertificate(certBytes)
	if err != nil {
		return nil, err
	}
	if err := cert.Verify(server, now); err != nil {
		return nil, err
	}
	if len(s) == 0 {
		return nil, malformed("no message inside the envelope")
	}
	return &Opened{Certificate: cert, Message: bytes.Clone(s)}, nil
}

// Decrypt decrypts the opened message with the sender's record. The
// certificate is signed by the server, which the threat model does not
// trust with identities: the certified device must appear, with the same
// keys, in the sender's verified device list, and the ratchet session's
// peer identity must be that listed key. So neither a forged certificate
// nor a valid one for another device can carry a message
// (docs/protocol.md §7.2). Any mismatch is ErrSenderMismatch and changes
// nothing.
func (o *Opened) Decrypt(rec *ratchet.Record, local *pqxdh.Responder, senderList *identity.DeviceList) (*ratchet.Decrypted, error) {
	c := o.Certificate
	if senderList.Username != c.Username {
		return nil, fmt.Errorf("%w: certificate for %q checked against the device list of %q", ErrSenderMismatch, c.Username, senderList.Username)
	}
	d, ok := senderList.Find(c.DeviceID)
	if !ok || !d.IdentityKey.Equal(c.IdentityKey) || !d.SigningKey.Equal(c.SigningKey) {
		return nil, fmt.Errorf("%w: certificate names %s/%d with keys not in its device list", ErrSenderMismatch, c.Username, c.DeviceID)
	}
	return rec.DecryptFrom(local, c.Username, d.IdentityKey, o.Message)
}
