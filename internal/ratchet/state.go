package ratchet

import (
	"crypto/ecdh"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/pqxdh"
)

// StateVersion is the first byte of a serialized Record (docs/protocol.md §6.3).
const StateVersion = 1

const (
	flagInitiator = 1 << 0
	flagPending   = 1 << 1
	maxADLen      = 255
)

func badState(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadState, fmt.Sprintf(format, args...))
}

func (s *Session) marshal(b *cryptobyte.Builder) {
	var flags uint8
	if s.initiator {
		flags |= flagInitiator
	}
	if s.pending != nil {
		flags |= flagPending
	}
	b.AddUint8(flags)
	b.AddBytes(s.baseKey[:])
	b.AddBytes(s.remoteIdentity.Bytes())
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.ad) })
	b.AddBytes(s.rootKey[:])
	b.AddBytes(s.sendPriv.Bytes())
	b.AddBytes(s.sendKey[:])
	b.AddUint32(s.sendN)
	b.AddUint32(s.pn)
	b.AddUint8(uint8(len(s.recv)))
	for _, c := range s.recv {
		b.AddBytes(c.ratchetKey[:])
		b.AddBytes(c.key[:])
		b.AddUint32(c.n)
	}
	b.AddUint16(uint16(len(s.skipped)))
	for _, k := range s.skipped {
		b.AddBytes(k.ratchetKey[:])
		b.AddUint32(k.n)
		b.AddBytes(k.mk[:])
	}
	if s.pending != nil {
		s.pending.AppendTo(b)
	}
}

func readArray(s *cryptobyte.String, dst []byte) bool {
	var v []byte
	if !s.ReadBytes(&v, len(dst)) {
		return false
	}
	copy(dst, v)
	return true
}

func readSession(in *cryptobyte.String) (*Session, error) {
	var (
		s     Session
		flags uint8
		ik    = make([]byte, keys.DHPublicSize)
		ad    cryptobyte.String
		priv  = make([]byte, 32)
		nrecv uint8
		nskip uint16
	)
	if !in.ReadUint8(&flags) || !readArray(in, s.baseKey[:]) || !readArray(in, ik) ||
		!in.ReadUint8LengthPrefixed(&ad) || !readArray(in, s.rootKey[:]) || !readArray(in, priv) ||
		!readArray(in, s.sendKey[:]) || !in.ReadUint32(&s.sendN) || !in.ReadUint32(&s.pn) ||
		!in.ReadUint8(&nrecv) {
		return nil, badState("session truncated")
	}
	if flags&^(flagInitiator|flagPending) != 0 {
		return nil, badState("unknown session flags 0x%02x", flags)
	}
	s.initiator = flags&flagInitiator != 0
	if flags&flagPending != 0 && !s.initiator {
		return nil, badState("pending responder session")
	}
	var err error
	if s.remoteIdentity, err = keys.ParseIdentityPublic(ik); err != nil {
		return nil, badState("remote identity: %v", err)
	}
	if len(ad) == 0 {
		return nil, badState("empty associated data")
	}
	s.ad = append([]byte(nil), ad...)
	if s.sendPriv, err = ecdh.X25519().NewPrivateKey(priv); err != nil {
		return nil, badState("ratchet key: %v", err)
	}
	copy(s.sendPub[:], s.sendPriv.PublicKey().Bytes())
	if int(nrecv) > 1+MaxOldReceiveChains {
		return nil, badState("%d receiving chains, limit %d", nrecv, 1+MaxOldReceiveChains)
	}
	for range nrecv {
		var c recvChain
		if !readArray(in, c.ratchetKey[:]) || !readArray(in, c.key[:]) || !in.ReadUint32(&c.n) {
			return nil, badState("receiving chain truncated")
		}
		for _, o := range s.recv {
			if o.ratchetKey == c.ratchetKey {
				return nil, badState("receiving chain listed twice")
			}
		}
		s.recv = append(s.recv, c)
	}
	if !in.ReadUint16(&nskip) {
		return nil, badState("session truncated")
	}
	if int(nskip) > MaxSkippedKeys {
		return nil, badState("%d skipped keys, limit %d", nskip, MaxSkippedKeys)
	}
	for range nskip {
		var k skippedKey
		if !readArray(in, k.ratchetKey[:]) || !in.ReadUint32(&k.n) || !readArray(in, k.mk[:]) {
			return nil, badState("skipped key truncated")
		}
		s.skipped = append(s.skipped, k)
	}
	if flags&flagPending != 0 {
		if s.pending, err = pqxdh.ReadInit(in); err != nil {
			return nil, badState("pending initial message: %v", err)
		}
		if s.pending.BaseKey != s.baseKey {
			return nil, badState("pending initial message has another base key")
		}
	}
	return &s, nil
}

// Marshal serializes the record for storage: version, then the current
// session (if any) and the archived ones, each length-prefixed.
func (r *Record) Marshal() []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddUint8(StateVersion)
	if r.current != nil {
		b.AddUint8(1)
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { r.current.marshal(b) })
	} else {
		b.AddUint8(0)
	}
	b.AddUint8(uint8(len(r.archived)))
	for _, s := range r.archived {
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { s.marshal(b) })
	}
	b.AddUint16(uint16(len(r.retired)))
	for _, k := range r.retired {
		b.AddBytes(k[:])
	}
	return b.BytesOrPanic()
}

// UnmarshalRecord loads a record strictly: known version, bounded counts,
// exact lengths, no trailing bytes.
func UnmarshalRecord(data []byte) (*Record, error) {
	in := cryptobyte.String(data)
	var ver, hasCurrent, narch uint8
	if !in.ReadUint8(&ver) {
		return nil, badState("empty")
	}
	if ver != StateVersion {
		return nil, badState("version %d, want %d", ver, StateVersion)
	}
	if !in.ReadUint8(&hasCurrent) || hasCurrent > 1 {
		return nil, badState("bad current-session flag")
	}
	read := func() (*Session, error) {
		var body cryptobyte.String
		if !in.ReadUint24LengthPrefixed(&body) {
			return nil, badState("session truncated")
		}
		s, err := readSession(&body)
		if err != nil {
			return nil, err
		}
		if !body.Empty() {
			return nil, badState("%d trailing bytes in session", len(body))
		}
		return s, nil
	}
	var r Record
	if hasCurrent == 1 {
		s, err := read()
		if err != nil {
			return nil, err
		}
		r.current = s
	}
	if !in.ReadUint8(&narch) {
		return nil, badState("truncated")
	}
	if narch > MaxArchivedSessions {
		return nil, badState("%d archived sessions, limit %d", narch, MaxArchivedSessions)
	}
	for range narch {
		s, err := read()
		if err != nil {
			return nil, err
		}
		r.archived = append(r.archived, s)
	}
	var nret uint16
	if !in.ReadUint16(&nret) || int(nret) > MaxRetiredBaseKeys {
		return nil, badState("bad retired base key count")
	}
	for range nret {
		var k keys.RawX25519
		if !readArray(&in, k[:]) {
			return nil, badState("retired base keys truncated")
		}
		r.retired = append(r.retired, k)
	}
	if !in.Empty() {
		return nil, badState("%d trailing bytes", len(in))
	}
	return &r, nil
}
