package ratchet

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/pqxdh"
	"github.com/hush-chat/hush/internal/primitive"
)

// Message types (docs/protocol.md §5.5).
const (
	MessageVersion    = 1
	typeMessage       = 1 // a ratchet message
	typePrekeyMessage = 2 // a ratchet message preceded by the PQXDH initial message
)

// Header is the authenticated, unencrypted part of a message.
type Header struct {
	// Init is set on prekey messages: the initiator repeats it on every
	// message until it has received one from the responder.
	Init       *pqxdh.Init
	RatchetKey keys.RawX25519 // the sender's current ratchet public key
	PN         uint32         // length of the sender's previous sending chain
	N          uint32         // this message's number in the sending chain
}

// Message is a parsed ratchet message.
type Message struct {
	Header
	header     []byte // the exact header bytes, used as associated data
	ciphertext []byte // AEAD output, tag included
}

// IsPrekey reports whether the message carries a PQXDH initial message.
func (m *Message) IsPrekey() bool { return m.Init != nil }

func appendHeader(dst []byte, h *Header) []byte {
	b := cryptobyte.NewBuilder(dst)
	b.AddUint8(MessageVersion)
	if h.Init != nil {
		b.AddUint8(typePrekeyMessage)
		h.Init.AppendTo(b)
	} else {
		b.AddUint8(typeMessage)
	}
	b.AddBytes(h.RatchetKey[:])
	b.AddUint32(h.PN)
	b.AddUint32(h.N)
	return b.BytesOrPanic()
}

// ParseMessage parses a ratchet message strictly (docs/protocol.md §5.5).
func ParseMessage(data []byte) (*Message, error) {
	s := cryptobyte.String(data)
	var ver, typ uint8
	if !s.ReadUint8(&ver) || !s.ReadUint8(&typ) {
		return nil, fmt.Errorf("%w: truncated header", ErrMalformed)
	}
	if ver != MessageVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, ver, MessageVersion)
	}
	var m Message
	switch typ {
	case typeMessage:
	case typePrekeyMessage:
		init, err := pqxdh.ReadInit(&s)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		m.Init = init
	default:
		return nil, fmt.Errorf("%w: message type %d", ErrMalformed, typ)
	}
	var rk []byte
	if !s.ReadBytes(&rk, len(m.RatchetKey)) || !s.ReadUint32(&m.PN) || !s.ReadUint32(&m.N) {
		return nil, fmt.Errorf("%w: truncated header", ErrMalformed)
	}
	copy(m.RatchetKey[:], rk)
	if len(s) < primitive.AEADTagSize {
		return nil, fmt.Errorf("%w: ciphertext shorter than the tag", ErrMalformed)
	}
	hl := len(data) - len(s)
	m.header = data[:hl:hl]
	m.ciphertext = data[hl:]
	return &m, nil
}
