package server

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/store"
)

// Encodings of control events (cluster.go). They travel between nodes of
// one deployment, but over a message bus others may reach, so every
// parser checks everything and never panics (FuzzControlEvents).
//
//	event      = u8 version (1) || origin node tag (4) || body
//	user body  = username
//	ref body   = u32 device id || username
//	pow body   = challenge
//	key body   = u8 kind (1 announce, 2 reply) || server public key
//	link chunk = transfer id (8) || address (16) || u32 total size ||
//	             u16 index || u16 count || data
//	link result = transfer id (8) || u8 result

const (
	controlVersion    = 1
	controlHeaderSize = 1 + len(nodeTag{})
)

func parseControl(data []byte) (origin nodeTag, body []byte, err error) {
	if len(data) < controlHeaderSize {
		return origin, nil, fmt.Errorf("event is %d bytes, shorter than its header", len(data))
	}
	if data[0] != controlVersion {
		return origin, nil, fmt.Errorf("event version %d, want %d", data[0], controlVersion)
	}
	copy(origin[:], data[1:controlHeaderSize])
	return origin, data[controlHeaderSize:], nil
}

// parseUser accepts only a username in normal form.
func parseUser(b []byte) (string, error) {
	if len(b) > identity.MaxUsernameLen {
		return "", fmt.Errorf("username of %d bytes", len(b))
	}
	u := string(b)
	if n, err := identity.NormalizeUsername(u); err != nil || n != u {
		return "", errors.New("not a normalized username")
	}
	return u, nil
}

func encodeRef(ref store.DeviceRef) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(ref.Username)), ref.ID)
	return append(b, ref.Username...)
}

func parseRef(b []byte) (store.DeviceRef, error) {
	if len(b) < 4 {
		return store.DeviceRef{}, errors.New("device reference too short")
	}
	u, err := parseUser(b[4:])
	if err != nil {
		return store.DeviceRef{}, err
	}
	return store.DeviceRef{Username: u, ID: binary.BigEndian.Uint32(b)}, nil
}

func parseNodeKey(b []byte) (kind byte, key keys.ServerPublic, err error) {
	if len(b) < 1 || (b[0] != nodeKeyAnnounce && b[0] != nodeKeyReply) {
		return 0, key, errors.New("unknown nodekey kind")
	}
	key, err = keys.ParseServerPublic(b[1:])
	return b[0], key, err
}

// xferID names one relayed link payload.
type xferID [8]byte

// Link relay framing (provrelay.go). linkChunkData keeps a chunk well
// under natsbus.MaxControlData (64 KiB) and NATS's default 1 MiB payload.
const (
	linkChunkData   = 48 << 10
	linkChunkHeader = 8 + provisionAddressSize + 4 + 2 + 2
	maxLinkChunks   = (MaxProvisionBody + linkChunkData - 1) / linkChunkData
)

// linkChunk is one piece of a link payload on its way to the node where
// the linking device waits.
type linkChunk struct {
	xfer         xferID
	addr         [provisionAddressSize]byte
	total        int // size of the whole payload
	index, count int
	data         []byte // aliases the event; copy before keeping
}

// linkChunkCount is how many chunks a payload of total bytes takes.
func linkChunkCount(total int) int { return (total + linkChunkData - 1) / linkChunkData }

func encodeLinkChunk(c linkChunk) []byte {
	b := make([]byte, 0, linkChunkHeader+len(c.data))
	b = append(b, c.xfer[:]...)
	b = append(b, c.addr[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(c.total))
	b = binary.BigEndian.AppendUint16(b, uint16(c.index))
	b = binary.BigEndian.AppendUint16(b, uint16(c.count))
	return append(b, c.data...)
}

func parseLinkChunk(b []byte) (linkChunk, error) {
	var c linkChunk
	if len(b) < linkChunkHeader {
		return c, fmt.Errorf("link chunk of %d bytes is shorter than its header", len(b))
	}
	copy(c.xfer[:], b)
	copy(c.addr[:], b[8:])
	p := b[8+provisionAddressSize:]
	total := binary.BigEndian.Uint32(p)
	c.index = int(binary.BigEndian.Uint16(p[4:]))
	c.count = int(binary.BigEndian.Uint16(p[6:]))
	c.data = b[linkChunkHeader:]
	if total == 0 || total > MaxProvisionBody {
		return c, fmt.Errorf("link payload of %d bytes (1 to %d allowed)", total, MaxProvisionBody)
	}
	c.total = int(total)
	if c.count != linkChunkCount(c.total) {
		return c, fmt.Errorf("link payload of %d bytes in %d chunks", c.total, c.count)
	}
	if c.index >= c.count {
		return c, fmt.Errorf("link chunk %d of %d", c.index, c.count)
	}
	want := linkChunkData
	if c.index == c.count-1 {
		want = c.total - c.index*linkChunkData
	}
	if len(c.data) != want {
		return c, fmt.Errorf("link chunk %d holds %d bytes, want %d", c.index, len(c.data), want)
	}
	return c, nil
}

// Link relay results, from the node holding the address to the node
// relaying.
const (
	linkAccepted   byte = iota + 1 // first chunk arrived, a device waits there: payload is being assembled
	linkDelivered                  // written to the device
	linkNoSuchAddr                 // no device waits at the address (or another payload is on its way to it)
	linkGone                       // the device went away before the payload was written
	linkIncomplete                 // chunks were lost on the way
	maxLinkResult  = linkIncomplete
)

func encodeLinkResult(x xferID, r byte) []byte { return append(x[:], r) }

func parseLinkResult(b []byte) (xferID, byte, error) {
	var x xferID
	if len(b) != len(x)+1 || b[len(x)] < linkAccepted || b[len(x)] > maxLinkResult {
		return x, 0, errors.New("malformed link result")
	}
	copy(x[:], b)
	return x, b[len(x)], nil
}
