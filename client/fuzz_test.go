package client

import (
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

// FuzzDecodeContent feeds arbitrary decrypted plaintexts (what a peer
// controls) to the content decoder: an error or a text, never a panic.
func FuzzDecodeContent(f *testing.F) {
	for _, text := range []string{"", "hello", string(make([]byte, 500))} {
		b, _ := encodeContent(time.UnixMilli(1), text)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeContent(b)
		if err == nil && d == nil {
			t.Fatal("nil result without an error")
		}
	})
}

// FuzzEncodeContentPadding checks every text pads to a multiple of
// PadBlock and decodes back unchanged.
func FuzzEncodeContentPadding(f *testing.F) {
	f.Add("hi", int64(0))
	f.Add(string(make([]byte, 157)), int64(1<<40))
	f.Fuzz(func(t *testing.T, text string, ms int64) {
		b, err := encodeContent(time.UnixMilli(ms), text)
		if err != nil || text == "" {
			return // invalid UTF-8 is refused by protobuf; an empty text by decodeContent
		}
		if len(b)%PadBlock != 0 {
			t.Fatalf("content of %d bytes is not padded", len(b))
		}
		d, err := decodeContent(b)
		if err != nil || d.text != text || d.sent.UnixMilli() != ms {
			t.Fatalf("round trip: %+v %v", d, err)
		}
	})
}

// FuzzServerFrame feeds arbitrary bytes to the connection's frame handler,
// as a hostile server would send them: an error or a dispatched frame,
// never a panic or a stuck waiter.
func FuzzServerFrame(f *testing.F) {
	for _, fr := range []*wire.ServerFrame{
		{Id: 1, Body: &wire.ServerFrame_Sent{Sent: &wire.SendResponse{Stored: true}}},
		{Body: &wire.ServerFrame_Envelope{Envelope: &wire.Envelope{ServerId: 3, MessageId: make([]byte, 16), Sender: "alice", Content: []byte{1}}}},
		{Body: &wire.ServerFrame_QueueEmpty{QueueEmpty: &wire.QueueEmpty{}}},
		{Body: &wire.ServerFrame_PrekeyCounts{PrekeyCounts: &wire.PrekeyCounts{Low: true}}},
		{Body: &wire.ServerFrame_Error{Error: &wire.Error{Code: "internal"}}},
	} {
		b, _ := proto.Marshal(fr)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &conn{
			pending:   map[uint64]chan *wire.ServerFrame{1: make(chan *wire.ServerFrame, 1)},
			done:      make(chan struct{}),
			notify:    make(chan struct{}, 1),
			receiving: true,
		}
		if err := c.handle(websocket.MessageBinary, b); err != nil {
			c.fail(err)
			return
		}
		for _, p := range c.take() {
			if p.GetEnvelope() == nil && p.GetQueueEmpty() == nil && p.GetPrekeyCounts() == nil {
				t.Fatalf("queued an unexpected push %v", p)
			}
		}
	})
}

// encodeContent renders a text message as Send does, padded so its
// encoding is a multiple of PadBlock bytes (docs/protocol.md §9.7).
func encodeContent(sent time.Time, text string) ([]byte, error) {
	return marshalPadded(&wire.Content{SentMs: sent.UnixMilli(), Body: &wire.Content_Text{Text: &wire.Text{Body: text}}})
}
