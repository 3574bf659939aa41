package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/wire"
)

// TestChatKeepsMissedCalls: a missed call stays among the messages when
// the history is shown again; one from someone else goes to the status
// line, not into this conversation.
func TestChatKeepsMissedCalls(t *testing.T) {
	at := time.Unix(100, 0)
	offer := &wire.CallSignal{CallId: make([]byte, client.CallIDSize), Kind: &wire.CallSignal_Offer{Offer: &wire.CallOffer{Video: true}}}
	m := &chatModel{c: &cmd{}, conv: "bob", title: "bob", hist: []client.Entry{
		{Author: "bob", Text: "before", Sent: at, Received: at},
		{Author: "bob", Text: "after", Sent: at.Add(time.Minute), Received: at.Add(time.Minute)},
	}}
	m.render()
	m.Update(incomingMsg{&client.CallEvent{From: "bob", Sent: at, Received: at.Add(time.Second), Contact: true, Signal: offer}})
	m.Update(incomingMsg{&client.CallEvent{From: "carol", Sent: at, Received: at.Add(time.Second), Signal: offer}})
	m.Update(incomingMsg{&client.CallEvent{From: "bob", Sent: at, Received: at.Add(time.Second), Contact: true,
		Signal: &wire.CallSignal{CallId: offer.CallId, Kind: &wire.CallSignal_Hangup{Hangup: &wire.CallHangup{}}}}})
	m.render() // as a reload of the history does
	var calls []string
	for _, l := range m.lines {
		if strings.Contains(l, "missed call") {
			calls = append(calls, l)
		}
	}
	if len(calls) != 1 || !strings.HasSuffix(calls[0], "missed call from bob (video)") || !strings.Contains(m.lines[1], "missed call") {
		t.Errorf("lines %q: want bob's missed video call once, between the messages", m.lines)
	}
	if !strings.Contains(m.View().Content, "missed call from carol") {
		t.Errorf("status does not show carol's call:\n%s", m.View().Content)
	}
}
