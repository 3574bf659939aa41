package ratchet

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/pqxdh"
)

// Record holds every session with one peer device: the current one, used
// for sending, and up to MaxArchivedSessions older ones, still able to
// decrypt late messages (docs/protocol.md §6).
type Record struct {
	current  *Session
	archived []*Session       // newest first
	retired  []keys.RawX25519 // base keys of dropped responder sessions, oldest first
}

// HasSession reports whether there is a current session to send on.
func (r *Record) HasSession() bool { return r.current != nil }

// RemoteIdentity is the identity key of the current session's peer.
func (r *Record) RemoteIdentity() (keys.IdentityPublic, bool) {
	if r.current == nil {
		return keys.IdentityPublic{}, false
	}
	return r.current.remoteIdentity, true
}

// CurrentBaseKey is the PQXDH base key of the current session: both sides
// of one session report the same value.
func (r *Record) CurrentBaseKey() (keys.RawX25519, bool) {
	if r.current == nil {
		return keys.RawX25519{}, false
	}
	return r.current.baseKey, true
}

// Initiate runs PQXDH against a verified bundle and makes the resulting
// session current (docs/protocol.md §4.2, §5.3).
func (r *Record) Initiate(localUser string, ik keys.IdentityPrivate, bundle *identity.Bundle) error {
	res, init, err := pqxdh.Initiate(localUser, ik, bundle)
	if err != nil {
		return err
	}
	s, err := newInitiatorSession(res, init, bundle.SignedPrekey.Key)
	if err != nil {
		return err
	}
	r.promote(s)
	return nil
}

// Encrypt encrypts plaintext on the current session.
func (r *Record) Encrypt(plaintext []byte) ([]byte, error) {
	if r.current == nil {
		return nil, ErrNoSession
	}
	return r.current.encrypt(plaintext)
}

// PrekeyUse names the prekeys a new responder session consumed; the caller
// deletes the one-time ones together with saving the record.
type PrekeyUse struct {
	SignedPrekeyID  uint32
	HasOneTime      bool
	OneTimePrekeyID uint32
	KEMPrekeyID     uint32
}

// Decrypted is the result of a successful decrypt.
type Decrypted struct {
	Plaintext      []byte
	RemoteIdentity keys.IdentityPublic
	// NewSession is set when the message created a session; Prekeys then
	// says which prekeys it used.
	NewSession bool
	Prekeys    *PrekeyUse
}

// DecryptFrom decrypts a message from the device of peerUser this record
// is for. expect is that device's identity key from the peer's verified
// device list (or a sealed-sender certificate checked against it): a
// message on, or creating, a session with any other identity is
// ErrUntrustedIdentity and changes nothing. local supplies our identity and
// prekeys for prekey messages.
func (r *Record) DecryptFrom(local *pqxdh.Responder, peerUser string, expect keys.IdentityPublic, data []byte) (*Decrypted, error) {
	m, err := ParseMessage(data)
	if err != nil {
		return nil, err
	}
	if m.Init != nil {
		return r.decryptPrekeyMessage(local, peerUser, expect, m)
	}
	ok := func(s *Session) *Decrypted { return &Decrypted{RemoteIdentity: s.remoteIdentity} }
	all := r.sessions()

	// A known ratchet key names its session.
	for _, s := range all {
		for i := range s.recv {
			if s.recv[i].ratchetKey == m.RatchetKey {
				if !expect.Equal(s.remoteIdentity) {
					return nil, ErrUntrustedIdentity
				}
				pt, err := s.decryptExistingChain(i, m)
				if err != nil {
					return nil, err
				}
				d := ok(s)
				d.Plaintext = pt
				return d, nil
			}
		}
	}
	// A stored skipped key of a receiving chain no longer kept.
	for _, s := range all {
		if j := s.findSkipped(m.RatchetKey, m.N); j >= 0 {
			if !expect.Equal(s.remoteIdentity) {
				return nil, ErrUntrustedIdentity
			}
			pt, err := s.decryptSkipped(j, m)
			if err != nil {
				return nil, err
			}
			d := ok(s)
			d.Plaintext = pt
			return d, nil
		}
	}
	// A new ratchet key: try each session's DH ratchet step, current first.
	// Archived sessions get a smaller skip budget, so one forged message
	// cannot cost 41 full-size jumps (docs/protocol.md §5.6).
	var firstErr error
	tried := false
	for i, s := range all {
		if !expect.Equal(s.remoteIdentity) {
			continue
		}
		tried = true
		budget := uint32(MaxSkip)
		if s != r.current {
			budget = MaxSkippedKeys
		}
		pt, err := s.decryptNewChain(m, budget)
		if err == nil {
			if s != r.current {
				// The peer answered on this session with a new ratchet
				// key: it is their current one, so make it ours
				// (docs/protocol.md §6.1).
				r.promoteArchived(i - boolInt(r.current != nil))
			}
			d := ok(s)
			d.Plaintext = pt
			return d, nil
		}
		if firstErr == nil || errors.Is(firstErr, ErrTampered) && !errors.Is(err, ErrTampered) {
			firstErr = err
		}
	}
	switch {
	case r.current == nil && len(r.archived) == 0:
		return nil, ErrNoSession
	case !tried:
		return nil, ErrUntrustedIdentity
	}
	return nil, firstErr
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// decryptPrekeyMessage handles a message carrying a PQXDH initial message.
func (r *Record) decryptPrekeyMessage(local *pqxdh.Responder, peerUser string, expect keys.IdentityPublic, m *Message) (*Decrypted, error) {
	if !expect.Equal(m.Init.IdentityKey) {
		return nil, ErrUntrustedIdentity
	}
	// It belongs to the responder session with its base key, if we made one.
	for _, s := range r.sessions() {
		if !s.initiator && s.baseKey == m.Init.BaseKey {
			if !s.remoteIdentity.Equal(m.Init.IdentityKey) {
				return nil, ErrTampered
			}
			pt, err := s.decrypt(m)
			if err != nil {
				return nil, err
			}
			return &Decrypted{Plaintext: pt, RemoteIdentity: s.remoteIdentity}, nil
		}
	}
	// A base key whose session already left the archive is a replay.
	for _, k := range r.retired {
		if k == m.Init.BaseKey {
			return nil, fmt.Errorf("%w: prekey message of a retired session", ErrDuplicate)
		}
	}
	return r.decryptNewSession(local, peerUser, m)
}

func (r *Record) decryptNewSession(local *pqxdh.Responder, peerUser string, m *Message) (*Decrypted, error) {
	if local == nil {
		return nil, fmt.Errorf("ratchet: prekey message but no local prekeys given")
	}
	res, err := local.Respond(peerUser, m.Init)
	if err != nil {
		return nil, err
	}
	spk, err := local.Prekeys.SignedPrekey(m.Init.SignedPrekeyID)
	if err != nil {
		return nil, err
	}
	s := newResponderSession(res, m.Init, spk)
	pt, err := s.decryptNewChain(m, MaxSkip)
	if err != nil {
		return nil, err
	}
	r.adopt(s)
	return &Decrypted{
		Plaintext:      pt,
		RemoteIdentity: s.remoteIdentity,
		NewSession:     true,
		Prekeys: &PrekeyUse{
			SignedPrekeyID:  m.Init.SignedPrekeyID,
			HasOneTime:      m.Init.HasOneTime,
			OneTimePrekeyID: m.Init.OneTimePrekeyID,
			KEMPrekeyID:     m.Init.KEMPrekeyID,
		},
	}, nil
}

// adopt places a session created by a peer's prekey message. Normally it
// becomes current. The exception is simultaneous initiation
// (docs/protocol.md §6.2): if our current session is one we initiated and
// the peer has not yet answered on it, both sides hold two sessions; each
// keeps the one whose PQXDH base key is lower (bytewise), so both converge
// on the same session. The other is archived and still decrypts.
func (r *Record) adopt(s *Session) {
	c := r.current
	if c != nil && c.initiator && c.pending != nil && bytes.Compare(c.baseKey[:], s.baseKey[:]) < 0 {
		r.archive(s)
		return
	}
	r.promote(s)
}

// promote makes s current, archiving the previous current session.
func (r *Record) promote(s *Session) {
	if r.current != nil {
		r.archive(r.current)
	}
	r.current = s
}

// promoteArchived makes archived session i current.
func (r *Record) promoteArchived(i int) {
	s := r.archived[i]
	r.archived = append(r.archived[:i:i], r.archived[i+1:]...)
	r.promote(s)
}

func (r *Record) archive(s *Session) {
	r.archived = append([]*Session{s}, r.archived...)
	if len(r.archived) > MaxArchivedSessions {
		for _, old := range r.archived[MaxArchivedSessions:] {
			r.retire(old)
		}
		r.archived = r.archived[:MaxArchivedSessions]
	}
}

// retire remembers the base key of a dropped responder session, so its
// prekey messages cannot be replayed to start it again (§6.1).
func (r *Record) retire(s *Session) {
	if s.initiator {
		return
	}
	r.retired = append(r.retired, s.baseKey)
	if len(r.retired) > MaxRetiredBaseKeys {
		r.retired = append([]keys.RawX25519(nil), r.retired[len(r.retired)-MaxRetiredBaseKeys:]...)
	}
}

// ArchiveCurrent moves the current session to the archive, so the next
// message starts a fresh one (used when a peer's device is removed or its
// identity changes).
func (r *Record) ArchiveCurrent() {
	if r.current != nil {
		r.archive(r.current)
		r.current = nil
	}
}

// String never shows key material.
func (r *Record) String() string {
	return fmt.Sprintf("ratchet.Record(current=%t, archived=%d)", r.current != nil, len(r.archived))
}

// GoString keeps %#v from printing key material.
func (r *Record) GoString() string { return r.String() }

// String never shows key material.
func (s *Session) String() string { return "ratchet.Session(redacted)" }

// GoString keeps %#v from printing key material.
func (s *Session) GoString() string { return s.String() }

// sessions lists the current session first, then the archive, newest first.
func (r *Record) sessions() []*Session {
	all := make([]*Session, 0, 1+len(r.archived))
	if r.current != nil {
		all = append(all, r.current)
	}
	return append(all, r.archived...)
}
