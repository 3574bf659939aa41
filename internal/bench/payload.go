package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// What a bench message carries, outside and inside the ratchet.
//
// Outside, the 16-byte message id names the message without decrypting
// it, so a copy the ratchet refuses (a second delivery of the same
// ciphertext) is still counted against the right message:
//
//	random (4) || sender index (2) || recipient index (2) || seq (4) || run tag (4)
//
// The random prefix spreads the ids over the server's index the way
// real clients' random ids do. Seq 0 is the handshake hello of a pair;
// measured messages count from 1 on each (sender, recipient) pair.
//
// Inside, the plaintext is a real Content (docs/protocol.md §9.7) whose
// text is "hush-bench <from> <to> <seq> <sent>" (sent: nanoseconds since
// the run began, on the monotonic clock) filled out to the text size,
// then padded like every client pads.

const (
	msgIDSize   = 16
	payloadWord = "hush-bench"
	// padBlock is the Content padding block of docs/protocol.md §9.7.
	padBlock = 160
)

// msgID is a parsed bench message id.
type msgID struct {
	from, to uint16
	seq      uint32
	run      uint32
}

func (m msgID) encode(random uint32) []byte {
	b := make([]byte, msgIDSize)
	binary.BigEndian.PutUint32(b[0:], random)
	binary.BigEndian.PutUint16(b[4:], m.from)
	binary.BigEndian.PutUint16(b[6:], m.to)
	binary.BigEndian.PutUint32(b[8:], m.seq)
	binary.BigEndian.PutUint32(b[12:], m.run)
	return b
}

var errNotBench = errors.New("not a bench message")

// parseMsgID reads an envelope's message id.
func parseMsgID(b []byte) (msgID, error) {
	if len(b) != msgIDSize {
		return msgID{}, fmt.Errorf("%w: message id is %d bytes, want %d", errNotBench, len(b), msgIDSize)
	}
	return msgID{
		from: binary.BigEndian.Uint16(b[4:]),
		to:   binary.BigEndian.Uint16(b[6:]),
		seq:  binary.BigEndian.Uint32(b[8:]),
		run:  binary.BigEndian.Uint32(b[12:]),
	}, nil
}

// payload is what the receiver reads from a decrypted bench message.
type payload struct {
	from, to uint16
	seq      uint32
	sent     time.Duration // since the run began
}

// encodePayload renders the padded Content plaintext of one message.
func encodePayload(p payload, wall time.Time, textSize int) ([]byte, error) {
	text := fmt.Sprintf("%s %d %d %d %d ", payloadWord, p.from, p.to, p.seq, int64(p.sent))
	if n := textSize - len(text); n > 0 {
		text += strings.Repeat("x", n)
	}
	return marshalPadded(&wire.Content{SentMs: wall.UnixMilli(), Body: &wire.Content_Text{Text: &wire.Text{Body: text}}})
}

// parsePayload reads a decrypted plaintext. It never trusts the bytes:
// whatever arrives gives a payload or an error.
func parsePayload(pt []byte) (payload, error) {
	var c wire.Content
	if err := proto.Unmarshal(pt, &c); err != nil {
		return payload{}, fmt.Errorf("%w: plaintext is not a Content", errNotBench)
	}
	body := c.GetText().GetBody()
	f := strings.SplitN(body, " ", 6)
	if len(f) < 5 || f[0] != payloadWord {
		return payload{}, fmt.Errorf("%w: text does not start with %q", errNotBench, payloadWord)
	}
	from, err1 := strconv.ParseUint(f[1], 10, 16)
	to, err2 := strconv.ParseUint(f[2], 10, 16)
	seq, err3 := strconv.ParseUint(f[3], 10, 32)
	sent, err4 := strconv.ParseInt(f[4], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return payload{}, fmt.Errorf("%w: bad number in the text", errNotBench)
	}
	return payload{from: uint16(from), to: uint16(to), seq: uint32(seq), sent: time.Duration(sent)}, nil
}

// marshalPadded encodes c padded to a multiple of padBlock bytes, as the
// client SDK does (docs/protocol.md §9.7): the padding field costs a tag
// byte, its varint length and the bytes, so try each reachable total.
func marshalPadded(c *wire.Content) ([]byte, error) {
	c.Padding = nil
	bare, err := proto.Marshal(c)
	if err != nil {
		return nil, err
	}
	for total := (len(bare)/padBlock + 1) * padBlock; total <= len(bare)+3*padBlock; total += padBlock {
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
	return nil, errors.New("bench: could not pad the message")
}

func varintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}
