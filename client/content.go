package client

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// Message limits (docs/protocol.md §8).
const (
	// MaxCopySize is the server's cap on one encrypted copy.
	MaxCopySize = 96 << 10
	// MaxTextSize is the longest text that still fits one copy after
	// padding and the ratchet's largest header (a prekey message carries
	// the ~1.6 KB ML-KEM ciphertext).
	MaxTextSize = MaxCopySize - 2<<10
	// PadBlock is the size plaintexts are padded to a multiple of, so
	// ciphertext lengths say little about message lengths.
	PadBlock = 160
)

// MessageID is the 16-byte id the sender chooses for a message; retries
// reuse it so the server stores the message once.
type MessageID [16]byte

func (id MessageID) String() string { return hex.EncodeToString(id[:]) }

// ParseMessageID parses the hex form.
func ParseMessageID(s string) (MessageID, error) {
	var id MessageID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("message id %q is not 32 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

func newMessageID() MessageID {
	var id MessageID
	rand.Read(id[:])
	return id
}

// TooLargeError says how long a refused text was.
type TooLargeError struct{ Size int }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("message is %d bytes; the limit is %d bytes", e.Size, MaxTextSize)
}

func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

// checkText applies the rules every outgoing text follows.
func checkText(text string) error {
	switch {
	case text == "":
		return errors.New("message is empty")
	case len(text) > MaxTextSize:
		return &TooLargeError{Size: len(text)}
	case !utf8.ValidString(text):
		return errors.New("message is not valid UTF-8")
	}
	return nil
}

// marshalPadded encodes any Content padded to a multiple of PadBlock bytes
// (docs/protocol.md §9.7). It sets c.Padding.
func marshalPadded(c *wire.Content) ([]byte, error) {
	c.Padding = nil
	bare, err := proto.Marshal(c)
	if err != nil {
		return nil, err
	}
	// The padding field adds 1 tag byte, its varint length and the bytes
	// themselves; try each total size until one is reachable exactly.
	for total := (len(bare)/PadBlock + 1) * PadBlock; total <= len(bare)+3*PadBlock; total += PadBlock {
		for lenBytes := 1; lenBytes <= 3; lenBytes++ {
			n := total - len(bare) - 1 - lenBytes
			if n <= 0 || varintLen(n) != lenBytes {
				continue
			}
			c.Padding = make([]byte, n)
			out, err := proto.Marshal(c)
			if err != nil {
				return nil, err
			}
			if len(out) == total {
				return out, nil
			}
		}
	}
	return nil, errors.New("client: could not pad message") // unreachable for sizes below 2 MiB
}

func varintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// decodedText is what a received text or file carries that a message
// request keeps.
type decodedText struct {
	sent    time.Time
	text    string
	att     *AttachmentInfo // nil if none, or one this version cannot read
	attBlob []byte          // att's wire encoding, as history stores it
	reply   *MessageRef
	expire  time.Duration // 0: not a disappearing message
}

// decodeContent parses a decrypted text or file and checks it as
// applyText does (docs/protocol.md §12.4): valid UTF-8 within the size
// limit, a text or a file, a well-formed quote and timer. A file this
// version cannot read still shows its text.
func decodeContent(b []byte) (*decodedText, error) {
	var c wire.Content
	if err := proto.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("malformed content: %v", err)
	}
	t := c.GetText()
	if t == nil {
		return nil, errors.New("content of a kind this version cannot show")
	}
	d := &decodedText{sent: time.UnixMilli(c.GetSentMs()), text: t.GetBody()}
	switch {
	case !utf8.ValidString(d.text):
		return nil, errors.New("text is not valid UTF-8")
	case len(d.text) > MaxTextSize:
		return nil, &TooLargeError{Size: len(d.text)}
	}
	if w := c.GetAttachment(); w != nil {
		if att, err := attachmentInfo(w); err == nil {
			blob, err := proto.Marshal(w)
			if err != nil {
				return nil, err
			}
			d.att, d.attBlob = att, blob
		}
	}
	if d.text == "" && d.att == nil {
		return nil, errors.New("message is empty")
	}
	if r := c.GetReplyTo(); r != nil {
		ref, err := checkRef(r)
		if err != nil {
			return nil, err
		}
		d.reply = &ref
	}
	if err := checkTimer(c.GetExpireSeconds()); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	d.expire = time.Duration(c.GetExpireSeconds()) * time.Second
	return d, nil
}
