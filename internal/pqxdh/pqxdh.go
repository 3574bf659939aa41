// Package pqxdh implements the PQXDH key agreement (Signal's PQXDH
// specification, revision 3) with X25519 and ML-KEM-1024, as specified in
// docs/protocol.md §4. Names follow the specification: IK identity keys,
// SPK signed prekey, OPK one-time prekey, PQPK KEM prekey, EK ephemeral
// (base) key, CT the KEM ciphertext, SK the shared secret, AD the
// associated data.
package pqxdh

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/primitive"
)

// Protocol constants (docs/protocol.md §4.1).
const (
	// Info is the HKDF info string: our own protocol name.
	Info = "Hush_PQXDH_X25519_SHA-256_ML-KEM-1024_v1"
	// ADLabel starts the associated data.
	ADLabel = "Hush-AD-v1"
	// SharedSecretSize is the size of SK.
	SharedSecretSize = 32
)

// Errors a caller can tell apart.
var (
	ErrBadBundle     = errors.New("pqxdh: prekey bundle failed verification")
	ErrUnknownPrekey = errors.New("pqxdh: unknown or already used prekey")
	ErrMalformed     = errors.New("pqxdh: malformed initial message")
	ErrLowOrder      = primitive.ErrLowOrder
)

// Init is what the initiator sends with its first messages so the
// responder can derive the same SK (docs/protocol.md §4.3).
type Init struct {
	IdentityKey     keys.IdentityPublic // IK_A
	BaseKey         keys.RawX25519      // EK_A
	SignedPrekeyID  uint32
	HasOneTime      bool
	OneTimePrekeyID uint32
	KEMPrekeyID     uint32
	KEMCiphertext   []byte // CT, keys.KEMCiphertextSize bytes
}

// Marshal appends the encoding of the initial message to b.
func (m *Init) marshal(b *cryptobyte.Builder) {
	b.AddBytes(m.IdentityKey.Bytes())
	b.AddBytes(m.BaseKey[:])
	b.AddUint32(m.SignedPrekeyID)
	if m.HasOneTime {
		b.AddUint8(1)
		b.AddUint32(m.OneTimePrekeyID)
	} else {
		b.AddUint8(0)
	}
	b.AddUint32(m.KEMPrekeyID)
	b.AddBytes(m.KEMCiphertext)
}

// Marshal returns the encoding of the initial message.
func (m *Init) Marshal() []byte {
	var b cryptobyte.Builder
	m.marshal(&b)
	return b.BytesOrPanic()
}

// AppendTo appends the encoding to a builder the caller owns.
func (m *Init) AppendTo(b *cryptobyte.Builder) { m.marshal(b) }

// ReadInit parses an initial message from s, advancing it.
func ReadInit(s *cryptobyte.String) (*Init, error) {
	var m Init
	var ik, ek, ct []byte
	var flag uint8
	if !s.ReadBytes(&ik, keys.DHPublicSize) || !s.ReadBytes(&ek, 32) ||
		!s.ReadUint32(&m.SignedPrekeyID) || !s.ReadUint8(&flag) {
		return nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	var err error
	if m.IdentityKey, err = keys.ParseIdentityPublic(ik); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	copy(m.BaseKey[:], ek)
	switch flag {
	case 0:
	case 1:
		m.HasOneTime = true
		if !s.ReadUint32(&m.OneTimePrekeyID) {
			return nil, fmt.Errorf("%w: truncated", ErrMalformed)
		}
	default:
		return nil, fmt.Errorf("%w: one-time prekey flag %d", ErrMalformed, flag)
	}
	if !s.ReadUint32(&m.KEMPrekeyID) || !s.ReadBytes(&ct, keys.KEMCiphertextSize) {
		return nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	m.KEMCiphertext = bytes.Clone(ct)
	return &m, nil
}

// Result is the outcome of either side of the agreement.
type Result struct {
	SK [SharedSecretSize]byte
	// AD binds both identity keys and both usernames (docs/protocol.md §4.4).
	AD []byte
	// RemoteIdentity is the peer's identity key.
	RemoteIdentity keys.IdentityPublic
}

// String never shows SK.
func (r *Result) String() string { return "pqxdh.Result(redacted)" }

// GoString keeps %#v from printing SK.
func (r *Result) GoString() string { return r.String() }

// AssociatedData returns AD = label || IK_A || IK_B || len||user_A || len||user_B,
// with A the initiator.
func AssociatedData(ikA, ikB keys.IdentityPublic, userA, userB string) []byte {
	var b cryptobyte.Builder
	b.AddBytes([]byte(ADLabel))
	b.AddBytes(ikA.Bytes())
	b.AddBytes(ikB.Bytes())
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(userA)) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(userB)) })
	return b.BytesOrPanic()
}

// kdf is KDF(KM) of the specification: HKDF-SHA256 with a zero salt over
// F || KM, where F is 32 0xFF bytes (the X25519 case).
func kdf(km []byte) ([SharedSecretSize]byte, error) {
	var out [SharedSecretSize]byte
	ikm := make([]byte, 0, 32+len(km))
	ikm = append(ikm, bytes.Repeat([]byte{0xFF}, 32)...)
	ikm = append(ikm, km...)
	sk, err := primitive.HKDF(ikm, make([]byte, primitive.HashSize), Info, SharedSecretSize)
	primitive.Wipe(ikm)
	if err != nil {
		return out, err
	}
	copy(out[:], sk)
	primitive.Wipe(sk)
	return out, nil
}

func wipe(bs ...[]byte) {
	for _, b := range bs {
		primitive.Wipe(b)
	}
}

// Initiate runs Alice's side against Bob's bundle (docs/protocol.md §4.2).
// The bundle must already be checked against Bob's verified device list
// (identity.Bundle.VerifyAgainst); Initiate verifies its signatures again
// because using an unverified prekey would be fatal.
func Initiate(localUser string, ik keys.IdentityPrivate, peer *identity.Bundle) (*Result, *Init, error) {
	if err := peer.Verify(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadBundle, err)
	}
	ek, err := keys.GenerateEphemeral()
	if err != nil {
		return nil, nil, err
	}
	return initiateWith(localUser, ik, ek, peer)
}

func initiateWith(localUser string, ik keys.IdentityPrivate, ek keys.EphemeralPrivate, peer *identity.Bundle) (*Result, *Init, error) {
	// DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B), DH4 = DH(EK_A, OPK_B)
	dh1, err := ik.ECDH(peer.SignedPrekey.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pqxdh: DH1: %w", err)
	}
	dh2, err := ek.ECDH(peer.IdentityKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pqxdh: DH2: %w", err)
	}
	dh3, err := ek.ECDH(peer.SignedPrekey.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pqxdh: DH3: %w", err)
	}
	km := make([]byte, 0, 5*32)
	km = append(km, dh1...)
	km = append(km, dh2...)
	km = append(km, dh3...)
	wipe(dh1, dh2, dh3)
	init := &Init{
		IdentityKey:    ik.Public(),
		SignedPrekeyID: peer.SignedPrekey.ID,
		KEMPrekeyID:    peer.KEMPrekey.ID,
	}
	init.BaseKey = ek.Public().Raw()
	if peer.OneTimePrekey != nil {
		dh4, err := ek.ECDH(peer.OneTimePrekey.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("pqxdh: DH4: %w", err)
		}
		km = append(km, dh4...)
		wipe(dh4)
		init.HasOneTime = true
		init.OneTimePrekeyID = peer.OneTimePrekey.ID
	}
	// (CT, SS) = PQKEM-ENC(PQPK_B)
	ss, ct, err := peer.KEMPrekey.Key.Encapsulate()
	if err != nil {
		return nil, nil, err
	}
	km = append(km, ss...)
	init.KEMCiphertext = ct
	sk, err := kdf(km)
	primitive.Wipe(km)
	primitive.Wipe(ss)
	if err != nil {
		return nil, nil, err
	}
	return &Result{
		SK:             sk,
		AD:             AssociatedData(init.IdentityKey, peer.IdentityKey, localUser, peer.Username),
		RemoteIdentity: peer.IdentityKey,
	}, init, nil
}

// PrekeySource gives the responder the private halves of its prekeys.
// Implementations return an error wrapping ErrUnknownPrekey for an id they
// do not hold, including a one-time prekey that was already used.
type PrekeySource interface {
	SignedPrekey(id uint32) (keys.SignedPrekeyPrivate, error)
	OneTimePrekey(id uint32) (keys.OneTimePrekeyPrivate, error)
	KEMPrekey(id uint32) (keys.KEMPrivate, error)
}

// Responder is Bob's side: his username, identity key and prekeys.
type Responder struct {
	Username string
	Identity keys.IdentityPrivate
	Prekeys  PrekeySource
}

// Respond runs Bob's side for an initial message from peerUser
// (docs/protocol.md §4.3). It deletes nothing; the caller removes the used
// one-time prekeys once the first message has decrypted.
func (r *Responder) Respond(peerUser string, m *Init) (*Result, error) {
	spk, err := r.Prekeys.SignedPrekey(m.SignedPrekeyID)
	if err != nil {
		return nil, fmt.Errorf("%w: signed prekey %d: %w", ErrUnknownPrekey, m.SignedPrekeyID, err)
	}
	pq, err := r.Prekeys.KEMPrekey(m.KEMPrekeyID)
	if err != nil {
		return nil, fmt.Errorf("%w: KEM prekey %d: %w", ErrUnknownPrekey, m.KEMPrekeyID, err)
	}
	var opk keys.OneTimePrekeyPrivate
	if m.HasOneTime {
		if opk, err = r.Prekeys.OneTimePrekey(m.OneTimePrekeyID); err != nil {
			return nil, fmt.Errorf("%w: one-time prekey %d: %w", ErrUnknownPrekey, m.OneTimePrekeyID, err)
		}
	}
	dh1, err := spk.ECDH(m.IdentityKey)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: DH1: %w", err)
	}
	dh2, err := r.Identity.ECDH(m.BaseKey)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: DH2: %w", err)
	}
	dh3, err := spk.ECDH(m.BaseKey)
	if err != nil {
		return nil, fmt.Errorf("pqxdh: DH3: %w", err)
	}
	km := make([]byte, 0, 5*32)
	km = append(km, dh1...)
	km = append(km, dh2...)
	km = append(km, dh3...)
	wipe(dh1, dh2, dh3)
	if m.HasOneTime {
		dh4, err := opk.ECDH(m.BaseKey)
		if err != nil {
			return nil, fmt.Errorf("pqxdh: DH4: %w", err)
		}
		km = append(km, dh4...)
		wipe(dh4)
	}
	ss, err := pq.Decapsulate(m.KEMCiphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	km = append(km, ss...)
	sk, err := kdf(km)
	primitive.Wipe(km)
	primitive.Wipe(ss)
	if err != nil {
		return nil, err
	}
	return &Result{
		SK:             sk,
		AD:             AssociatedData(m.IdentityKey, r.Identity.Public(), peerUser, r.Username),
		RemoteIdentity: m.IdentityKey,
	}, nil
}
