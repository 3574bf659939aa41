package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/wire"
)

func TestPayloadRoundTripAndPadding(t *testing.T) {
	for _, size := range []int{0, 1, 64, 159, 160, 1000, MaxTextSize} {
		want := payload{from: 9999, to: 3, seq: 1<<32 - 1, sent: 1234567890123}
		pt, err := encodePayload(want, time.Now(), size)
		if err != nil {
			t.Fatal(err)
		}
		if len(pt)%padBlock != 0 {
			t.Fatalf("text size %d: plaintext is %d bytes, not a multiple of %d", size, len(pt), padBlock)
		}
		got, err := parsePayload(pt)
		if err != nil || got != want {
			t.Fatalf("text size %d: got %+v, %v", size, got, err)
		}
	}
}

func TestParsePayloadRejectsOtherPlaintexts(t *testing.T) {
	text := func(s string) []byte {
		b, _ := proto.Marshal(&wire.Content{Body: &wire.Content_Text{Text: &wire.Text{Body: s}}})
		return b
	}
	for name, pt := range map[string][]byte{
		"garbage":      {0xff, 0xff, 0xff},
		"no text":      {},
		"other text":   text("hello bob"),
		"short":        text("hush-bench 1 2"),
		"big from":     text("hush-bench 70000 2 3 4 "),
		"negative seq": text("hush-bench 1 2 -3 4 "),
		"bad time":     text("hush-bench 1 2 3 x "),
	} {
		if _, err := parsePayload(pt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMessageIDRoundTrip(t *testing.T) {
	want := msgID{from: 10000, to: 65535, seq: 123456789, run: 0xdeadbeef}
	b := want.encode(42)
	got, err := parseMsgID(b)
	if err != nil || got != want {
		t.Fatalf("got %+v, %v", got, err)
	}
	if !bytes.Equal(b[:4], []byte{0, 0, 0, 42}) {
		t.Fatalf("random prefix %x", b[:4])
	}
	for _, n := range []int{0, 15, 17} {
		if _, err := parseMsgID(make([]byte, n)); err == nil || !strings.Contains(err.Error(), "bytes") {
			t.Errorf("%d-byte id: %v", n, err)
		}
	}
}
