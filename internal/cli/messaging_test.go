package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hush-chat/hush/client"
)

func TestParseTimer(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"off": 0, "5s": 5 * time.Second, "5m": 5 * time.Minute, "1h30m": 90 * time.Minute,
		"2d": 48 * time.Hour, "1w": 7 * 24 * time.Hour, "4w": client.MaxTimer,
	} {
		if got, err := parseTimer(in); err != nil || got != want {
			t.Errorf("parseTimer(%q) = %v, %v; want %v", in, got, err, want)
		}
		if want != 0 {
			if back, _ := parseTimer(timerText(want)); back != want {
				t.Errorf("timerText(%v) = %q does not parse back", want, timerText(want))
			}
		}
	}
	for _, in := range []string{"4s", "5w", "1y", "d", "1.5s", "-1h", "99999999999w", ""} {
		if d, err := parseTimer(in); err == nil {
			t.Errorf("parseTimer(%q) = %v, want an error", in, d)
		}
	}
}

func TestEventLinesAndJSON(t *testing.T) {
	target := client.MessageID{0xab}
	meta := client.Meta{From: "bob", Group: []byte{1, 2}, GroupName: "fam\x1b[2J", Sent: time.Unix(0, 0), Received: time.Unix(0, 0)}
	ev := &client.ReactionEvent{Meta: meta, Target: target, Emoji: "👍"}
	text := formatEvent(ev)
	if len(text) != 1 || !strings.Contains(text[0], "* bob in #fam\uFFFD[2J reacted 👍 to "+target.String()) {
		t.Fatalf("text %q", text)
	}
	js := formatEventJSON(&client.ReceiptEvent{Meta: meta, Kind: client.Read, Targets: []client.MessageID{target, {0xcd}}})
	if len(js) != 2 {
		t.Fatalf("receipt for two messages printed %d lines", len(js))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(js[1]), &m); err != nil {
		t.Fatal(err)
	}
	if m["type"] != "receipt" || m["kind"] != "read" || m["target"] != (client.MessageID{0xcd}).String() || m["group"] != "0102" || m["group_name"] != "fam\x1b[2J" {
		t.Fatalf("receipt JSON %v", m)
	}
}

func TestChatShowsTypingEditsAndReceipts(t *testing.T) {
	e := client.Entry{Author: "alice", Outgoing: true, Status: client.Stored, Delivered: true, Read: true, Text: "hi",
		Edited: time.Unix(5, 0), Reactions: map[string]string{"bob": "🎉"}}
	line := entryLine(e)
	for _, want := range []string{"alice: hi", "(edited)", "[🎉 bob]", "✓✓ read"} {
		if !strings.Contains(line, want) {
			t.Errorf("entry line %q lacks %q", line, want)
		}
	}
	e.Deleted, e.Text = true, ""
	if line := entryLine(e); !strings.Contains(line, "(deleted)") || strings.Contains(line, "edited") {
		t.Errorf("tombstone line %q", line)
	}
	m := &chatModel{c: &cmd{}, conv: "bob", title: "bob"}
	m.Update(incomingMsg{&client.TypingEvent{Meta: client.Meta{From: "bob"}, Started: true}})
	if !strings.Contains(m.View().Content, "bob is typing…") {
		t.Fatalf("view does not show typing:\n%s", m.View().Content)
	}
	m.Update(incomingMsg{&client.TypingEvent{Meta: client.Meta{From: "bob"}, Started: false}})
	if strings.Contains(m.View().Content, "typing") {
		t.Fatalf("view still shows typing:\n%s", m.View().Content)
	}
}

// TestChatShowsTimerAndDeviceNotes: a timer change is shown as a line
// and in the header, and event lines stay among the messages when the
// history is shown again.
func TestChatShowsTimerAndDeviceNotes(t *testing.T) {
	at := time.Unix(100, 0)
	m := &chatModel{c: &cmd{}, conv: "bob", title: "bob", hist: []client.Entry{
		{Author: "bob", Text: "before", Sent: at, Received: at},
		{Author: "bob", Text: "after", Sent: at.Add(time.Minute), Received: at.Add(time.Minute)},
	}}
	m.render()
	m.Update(incomingMsg{&client.TimerEvent{Meta: client.Meta{From: "bob", Sent: at, Received: at.Add(time.Second)}, Timer: time.Hour}})
	m.Update(incomingMsg{&client.DeviceEvent{From: "bob", Change: client.DeviceAdded, DeviceID: 2, Name: "Laptop", Received: at.Add(2 * time.Minute)}})
	m.Update(incomingMsg{&client.TimerEvent{Meta: client.Meta{From: "carol", Received: at}, Timer: time.Minute}})
	m.render() // as a reload of the history does
	view := m.View().Content
	if !strings.Contains(view, "⏱ 1h") {
		t.Errorf("header does not show the timer:\n%s", view)
	}
	var order []string
	for _, l := range m.lines {
		switch {
		case strings.Contains(l, "before"), strings.Contains(l, "after"):
			order = append(order, "message")
		case strings.Contains(l, "bob set disappearing messages to 1h"):
			order = append(order, "timer")
		case strings.Contains(l, "bob added a device"):
			order = append(order, "device")
		default:
			t.Errorf("unexpected line %q (carol's timer is another conversation's)", l)
		}
	}
	if want := []string{"message", "timer", "message", "device"}; strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("lines %q, in the order %v; want %v", m.lines, order, want)
	}
}

// TestRecvJSONFields pins the keys of every recv --json line this file
// prints, as README.md's table lists them.
func TestRecvJSONFields(t *testing.T) {
	at := time.Unix(0, 0)
	direct := client.Meta{ID: client.MessageID{1}, From: "bob", Device: 1, Sent: at, Received: at}
	inGroup := direct
	inGroup.Group, inGroup.GroupName = []byte{1, 2}, "fam"
	synced := direct
	synced.From, synced.To = "alice", "bob"
	target := client.MessageID{2}
	common := "device from id received sent type"
	for _, c := range []struct {
		line string
		want string
	}{
		{formatJSON(&client.MessageEvent{ID: target, From: "bob", Sent: at, Received: at, Text: "hi"}), common + " text"},
		{formatJSON(&client.MessageEvent{ID: target, From: "alice", To: "bob", Sent: at, Received: at, Text: "hi", Expires: at,
			ReplyTo: &client.MessageRef{ID: target, Author: "bob"}}), common + " expires reply_author reply_to text to"},
		{formatJSON(&client.MessageEvent{ID: target, From: "bob", Sent: at, Received: at, Group: []byte{1}, GroupName: "fam",
			Attachment: &client.AttachmentInfo{Name: "a.txt", Size: 1}}), common + " group group_name name size text"},
		{formatJSON(&client.MessageEvent{ID: target, From: "bob", Sent: at, Received: at,
			Attachment: &client.AttachmentInfo{Name: "a.txt", Size: 1, Path: "/d/a.txt", SavedSHA256: "00"}}), common + " file name sha256 size text"},
		{formatEventJSON(&client.ReactionEvent{Meta: direct, Target: target, Emoji: "👍"})[0], common + " emoji target"},
		{formatEventJSON(&client.ReactionEvent{Meta: synced, Target: target, Removed: true})[0], common + " removed target to"},
		{formatEventJSON(&client.EditEvent{Meta: inGroup, Target: target})[0], common + " group group_name target text"},
		{formatEventJSON(&client.DeleteEvent{Meta: direct, Target: target})[0], common + " target"},
		{formatEventJSON(&client.ReceiptEvent{Meta: direct, Kind: client.Delivered, Targets: []client.MessageID{target}})[0], common + " kind target"},
		{formatEventJSON(&client.TypingEvent{Meta: direct})[0], common + " started"},
		{formatEventJSON(&client.TimerEvent{Meta: direct})[0], common + " seconds"},
	} {
		var m map[string]any
		if err := json.Unmarshal([]byte(c.line), &m); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := strings.Fields(c.want)
		slices.Sort(want)
		if !slices.Equal(keys, want) {
			t.Errorf("%s\nhas keys %v, want %v", c.line, keys, want)
		}
	}
}
