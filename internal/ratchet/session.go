// Package ratchet implements the Double Ratchet (Signal's specification)
// over a PQXDH shared secret, and the per-peer-device session record that
// keeps archived sessions and resolves simultaneous initiation
// (docs/protocol.md §5 and §6).
//
// A Session is explicit state with unexported fields. Every decrypt first
// computes what would change, checks the AEAD tag, and only then commits:
// a message that fails to decrypt leaves the state byte-identical.
package ratchet

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"math"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/pqxdh"
	"github.com/hush-chat/hush/internal/primitive"
)

// Limits (docs/protocol.md §5.6).
const (
	MaxSkip             = 25000 // message keys skipped in one jump, at most
	MaxSkippedKeys      = 2000  // stored skipped message keys per session
	MaxOldReceiveChains = 5     // receiving chains kept besides the current one
	MaxArchivedSessions = 40    // old sessions kept per peer device
	MaxRetiredBaseKeys  = 256   // base keys of dropped responder sessions remembered
)

// KDF labels (docs/protocol.md §5.2).
const (
	RootInfo       = "Hush_Ratchet_Root_v1"
	MessageKeyInfo = "Hush_Ratchet_MessageKeys_v1"
	chainMsgByte   = 0x01 // HMAC input giving the message key
	chainNextByte  = 0x02 // HMAC input giving the next chain key
)

// Errors a caller can tell apart.
var (
	ErrTampered          = errors.New("ratchet: message failed authentication (tampered or not for this session)")
	ErrDuplicate         = errors.New("ratchet: duplicate message, or its key was already discarded")
	ErrTooFarAhead       = errors.New("ratchet: message too far ahead in its chain")
	ErrUntrustedIdentity = errors.New("ratchet: sender identity does not match the session")
	ErrMalformed         = errors.New("ratchet: malformed message")
	ErrNoSession         = errors.New("ratchet: no session with this device")
	ErrBadState          = errors.New("ratchet: malformed session state")
)

type chainKey [32]byte

type recvChain struct {
	ratchetKey keys.RawX25519
	key        chainKey
	n          uint32 // number of the next message expected
}

type skippedKey struct {
	ratchetKey keys.RawX25519
	n          uint32
	mk         [32]byte
}

// Session is one Double Ratchet session with one peer device.
type Session struct {
	initiator      bool
	pending        *pqxdh.Init // set while an initiator has received nothing
	baseKey        keys.RawX25519
	remoteIdentity keys.IdentityPublic
	ad             []byte

	rootKey  [32]byte
	sendPriv *ecdh.PrivateKey // DHs
	sendPub  keys.RawX25519
	sendKey  chainKey
	sendN    uint32
	pn       uint32

	recv    []recvChain  // newest first, at most 1+MaxOldReceiveChains
	skipped []skippedKey // oldest first, at most MaxSkippedKeys
}

// kdfRK is KDF_RK: HKDF-SHA256 with the root key as salt and the DH output
// as input, giving a new root key and a chain key (docs/protocol.md §5.2).
func kdfRK(rk [32]byte, dh []byte) (newRK [32]byte, ck chainKey, err error) {
	out, err := primitive.HKDF(dh, rk[:], RootInfo, 64)
	if err != nil {
		return newRK, ck, err
	}
	copy(newRK[:], out[:32])
	copy(ck[:], out[32:])
	primitive.Wipe(out)
	return newRK, ck, nil
}

// kdfCK is KDF_CK: HMAC-SHA256 of the chain key with constant inputs.
func kdfCK(ck chainKey) (mk [32]byte, next chainKey) {
	copy(mk[:], primitive.HMAC(ck[:], []byte{chainMsgByte}))
	copy(next[:], primitive.HMAC(ck[:], []byte{chainNextByte}))
	return mk, next
}

// nextCK advances a chain without deriving the message key.
func nextCK(ck chainKey) (next chainKey) {
	copy(next[:], primitive.HMAC(ck[:], []byte{chainNextByte}))
	return next
}

// messageKeys expands a message key into the AEAD key and nonce.
func messageKeys(mk [32]byte) (key, nonce []byte, err error) {
	out, err := primitive.HKDF(mk[:], nil, MessageKeyInfo, primitive.AEADKeySize+primitive.AEADNonceLen)
	if err != nil {
		return nil, nil, err
	}
	return out[:primitive.AEADKeySize], out[primitive.AEADKeySize:], nil
}

func (s *Session) seal(mk [32]byte, header, plaintext []byte) ([]byte, error) {
	key, nonce, err := messageKeys(mk)
	if err != nil {
		return nil, err
	}
	defer primitive.Wipe(key)
	ad := make([]byte, 0, len(s.ad)+len(header))
	ad = append(append(ad, s.ad...), header...)
	return primitive.Seal(header, key, nonce, plaintext, ad)
}

func (s *Session) open(mk [32]byte, m *Message) ([]byte, error) {
	key, nonce, err := messageKeys(mk)
	if err != nil {
		return nil, err
	}
	defer primitive.Wipe(key)
	ad := make([]byte, 0, len(s.ad)+len(m.header))
	ad = append(append(ad, s.ad...), m.header...)
	pt, err := primitive.Open(nil, key, nonce, m.ciphertext, ad)
	if err != nil {
		return nil, ErrTampered
	}
	return pt, nil
}

// newInitiatorSession is RatchetInitAlice: the peer's signed prekey is the
// first remote ratchet key (docs/protocol.md §5.3).
func newInitiatorSession(r *pqxdh.Result, init *pqxdh.Init, peerSPK keys.SignedPrekeyPublic) (*Session, error) {
	dhs, err := keys.GenerateEphemeral()
	if err != nil {
		return nil, err
	}
	spk := peerSPK.Raw()
	dh, err := primitive.X25519(dhs.ECDHKey(), spk[:])
	if err != nil {
		return nil, err
	}
	rk, ck, err := kdfRK(r.SK, dh)
	primitive.Wipe(dh)
	if err != nil {
		return nil, err
	}
	return &Session{
		initiator:      true,
		pending:        init,
		baseKey:        init.BaseKey,
		remoteIdentity: r.RemoteIdentity,
		ad:             r.AD,
		rootKey:        rk,
		sendPriv:       dhs.ECDHKey(),
		sendPub:        dhs.Public().Raw(),
		sendKey:        ck,
	}, nil
}

// newResponderSession is RatchetInitBob: the signed prekey is the first
// sending ratchet key and SK the root key. The first received message
// performs the DH ratchet step that creates both chains.
func newResponderSession(r *pqxdh.Result, init *pqxdh.Init, spk keys.SignedPrekeyPrivate) *Session {
	return &Session{
		baseKey:        init.BaseKey,
		remoteIdentity: r.RemoteIdentity,
		ad:             r.AD,
		rootKey:        r.SK,
		sendPriv:       spk.ECDHKey(),
		sendPub:        spk.Public().Raw(),
	}
}

// RemoteIdentity is the peer device's identity key.
func (s *Session) RemoteIdentity() keys.IdentityPublic { return s.remoteIdentity }

// encrypt is RatchetEncrypt.
func (s *Session) encrypt(plaintext []byte) ([]byte, error) {
	if s.sendN == math.MaxUint32 {
		return nil, fmt.Errorf("ratchet: sending chain exhausted")
	}
	h := Header{Init: s.pending, RatchetKey: s.sendPub, PN: s.pn, N: s.sendN}
	header := appendHeader(make([]byte, 0, 64+len(plaintext)+primitive.AEADTagSize), &h)
	mk, next := kdfCK(s.sendKey)
	out, err := s.seal(mk, header, plaintext)
	primitive.Wipe(mk[:])
	if err != nil {
		return nil, err
	}
	s.sendKey = next
	s.sendN++
	return out, nil
}

// skipKeys advances a chain from position from to position to, returning
// the chain key at to and the message keys of the skipped positions; only
// the last MaxSkippedKeys are derived, since older ones would be dropped.
func skipKeys(rk keys.RawX25519, ck chainKey, from, to uint32) (chainKey, []skippedKey) {
	var out []skippedKey
	for i := from; i < to; i++ {
		if to-i <= MaxSkippedKeys {
			mk, next := kdfCK(ck)
			out = append(out, skippedKey{ratchetKey: rk, n: i, mk: mk})
			ck = next
		} else {
			ck = nextCK(ck)
		}
	}
	return ck, out
}

// decrypt is RatchetDecrypt with a deferred commit.
func (s *Session) decrypt(m *Message) ([]byte, error) {
	for i := range s.recv {
		if s.recv[i].ratchetKey == m.RatchetKey {
			return s.decryptExistingChain(i, m)
		}
	}
	return s.decryptNewChain(m, MaxSkip)
}

func (s *Session) findSkipped(rk keys.RawX25519, n uint32) int {
	for i := range s.skipped {
		if s.skipped[i].n == n && s.skipped[i].ratchetKey == rk {
			return i
		}
	}
	return -1
}

func (s *Session) decryptExistingChain(i int, m *Message) ([]byte, error) {
	c := s.recv[i]
	if m.N < c.n {
		j := s.findSkipped(m.RatchetKey, m.N)
		if j < 0 {
			return nil, ErrDuplicate
		}
		return s.decryptSkipped(j, m)
	}
	if m.N-c.n > MaxSkip {
		return nil, fmt.Errorf("%w: %d keys to skip, limit %d", ErrTooFarAhead, m.N-c.n, MaxSkip)
	}
	ck, skipped := skipKeys(m.RatchetKey, c.key, c.n, m.N)
	mk, next := kdfCK(ck)
	pt, err := s.open(mk, m)
	if err != nil {
		return nil, err
	}
	s.recv[i].key = next
	s.recv[i].n = m.N + 1
	s.addSkipped(skipped)
	s.received()
	return pt, nil
}

// decryptSkipped opens m with stored skipped key j.
func (s *Session) decryptSkipped(j int, m *Message) ([]byte, error) {
	pt, err := s.open(s.skipped[j].mk, m)
	if err != nil {
		return nil, err
	}
	// Commit: the key is used once.
	primitive.Wipe(s.skipped[j].mk[:])
	s.skipped = append(s.skipped[:j], s.skipped[j+1:]...)
	s.received()
	return pt, nil
}

// decryptNewChain performs the DH ratchet step for a new ratchet key,
// skipping at most budget keys in each chain.
func (s *Session) decryptNewChain(m *Message, budget uint32) ([]byte, error) {
	// Skip what remains of the current receiving chain, up to PN.
	var (
		cur      *recvChain
		curKey   chainKey
		skipped0 []skippedKey
	)
	if len(s.recv) > 0 && m.PN > s.recv[0].n {
		cur = &s.recv[0]
		if m.PN-cur.n > budget {
			return nil, fmt.Errorf("%w: %d keys to skip, limit %d", ErrTooFarAhead, m.PN-cur.n, budget)
		}
		curKey, skipped0 = skipKeys(cur.ratchetKey, cur.key, cur.n, m.PN)
	}
	if m.N > budget {
		return nil, fmt.Errorf("%w: %d keys to skip, limit %d", ErrTooFarAhead, m.N, budget)
	}
	// DH ratchet step, receiving half.
	dh, err := primitive.X25519(s.sendPriv, m.RatchetKey[:])
	if err != nil {
		return nil, fmt.Errorf("%w: ratchet key: %w", ErrMalformed, err)
	}
	rk1, ckr, err := kdfRK(s.rootKey, dh)
	primitive.Wipe(dh)
	if err != nil {
		return nil, err
	}
	ck, skipped1 := skipKeys(m.RatchetKey, ckr, 0, m.N)
	mk, next := kdfCK(ck)
	pt, err := s.open(mk, m)
	if err != nil {
		return nil, err
	}
	// Authenticated: the sending half of the DH ratchet step.
	dhs, err := keys.GenerateEphemeral()
	if err != nil {
		return nil, err
	}
	dh2, err := primitive.X25519(dhs.ECDHKey(), m.RatchetKey[:])
	if err != nil {
		return nil, fmt.Errorf("%w: ratchet key: %w", ErrMalformed, err)
	}
	rk2, cks, err := kdfRK(rk1, dh2)
	primitive.Wipe(dh2)
	if err != nil {
		return nil, err
	}
	// Commit.
	if cur != nil {
		cur.key = curKey
		cur.n = m.PN
	}
	s.addSkipped(skipped0)
	s.addSkipped(skipped1)
	s.recv = append([]recvChain{{ratchetKey: m.RatchetKey, key: next, n: m.N + 1}}, s.recv...)
	if len(s.recv) > 1+MaxOldReceiveChains {
		s.recv = s.recv[:1+MaxOldReceiveChains]
	}
	s.rootKey = rk2
	s.pn = s.sendN
	s.sendPriv = dhs.ECDHKey()
	s.sendPub = dhs.Public().Raw()
	s.sendKey = cks
	s.sendN = 0
	s.received()
	return pt, nil
}

// addSkipped stores skipped message keys, dropping the oldest past the limit.
func (s *Session) addSkipped(k []skippedKey) {
	if len(k) == 0 {
		return
	}
	s.skipped = append(s.skipped, k...)
	if over := len(s.skipped) - MaxSkippedKeys; over > 0 {
		for i := range over {
			primitive.Wipe(s.skipped[i].mk[:])
		}
		s.skipped = append([]skippedKey(nil), s.skipped[over:]...)
	}
}

// received marks that the peer has spoken on this session: an initiator
// stops attaching the PQXDH initial message.
func (s *Session) received() { s.pending = nil }
