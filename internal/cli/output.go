package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/hush-chat/hush/client"
)

// lockedWriter serializes whole lines from concurrent goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// textTime is the timestamp format of text output, in local time.
const textTime = "2006-01-02 15:04"

// jsonTime is RFC 3339 with milliseconds, in UTC.
const jsonTime = "2006-01-02T15:04:05.000Z07:00"

// formatText renders a message as "[2026-11-23 15:04] alice: hello".
func formatText(when time.Time, from, text string) string {
	return fmt.Sprintf("[%s] %s: %s", when.Local().Format(textTime), from, sanitize(text))
}

// formatMessage renders a received message; a sync copy (sent by this
// account from another device) as "[…] alice -> bob: hello".
func formatMessage(m *client.MessageEvent) string {
	text := m.Text
	if a := m.Attachment; a != nil {
		f := fmt.Sprintf("[file %s, %d bytes", a.Name, a.Size)
		if a.Path != "" {
			f += ", saved as " + a.Path
		}
		text = strings.TrimSuffix(f+"] "+text, " ")
	}
	if m.ReplyTo != nil {
		text = "(reply to " + m.ReplyTo.ID.String() + ") " + text
	}
	return formatText(m.Sent, who(m.From, m.To, m.Group, m.GroupName), text)
}

// who names the sender of an event, with its conversation when that is
// not the sender: "alice", "alice -> bob" (a sync copy), "alice in
// #family".
func who(from, to string, group []byte, groupName string) string {
	switch {
	case group != nil:
		g := groupName
		if g == "" {
			g = hex.EncodeToString(group)
		}
		return from + " in #" + sanitize(g)
	case to != "":
		return from + " -> " + to
	}
	return from
}

// eventLine renders a conversation event that is not a message: "[…] *
// bob reacted 👍 to <id>". The "*" sets it apart from message lines.
func eventLine(when time.Time, who, what string) string {
	return fmt.Sprintf("[%s] * %s %s", when.Local().Format(textTime), who, what)
}

// formatEvent renders the events of client/messaging.go as text lines.
func formatEvent(e client.Event) []string {
	switch e := e.(type) {
	case *client.ReactionEvent:
		if e.Removed {
			return []string{eventLine(e.Sent, who(e.From, e.To, e.Group, e.GroupName), "took back the reaction to "+e.Target.String())}
		}
		return []string{eventLine(e.Sent, who(e.From, e.To, e.Group, e.GroupName), "reacted "+sanitize(e.Emoji)+" to "+e.Target.String())}
	case *client.EditEvent:
		return []string{eventLine(e.Sent, who(e.From, e.To, e.Group, e.GroupName), "edited "+e.Target.String()+": "+sanitize(e.Text))}
	case *client.DeleteEvent:
		return []string{eventLine(e.Sent, who(e.From, e.To, e.Group, e.GroupName), "deleted "+e.Target.String())}
	case *client.ReceiptEvent:
		var out []string
		for _, t := range e.Targets {
			out = append(out, eventLine(e.Received, who(e.From, e.To, e.Group, e.GroupName), "got "+t.String()+" ("+e.Kind.String()+")"))
		}
		return out
	case *client.TypingEvent:
		s := "is typing…"
		if !e.Started {
			s = "stopped typing"
		}
		return []string{eventLine(e.Received, who(e.From, e.To, e.Group, e.GroupName), s)}
	case *client.TimerEvent:
		return []string{eventLine(e.Sent, who(e.From, e.To, e.Group, e.GroupName), "set disappearing messages to "+timerText(e.Timer))}
	}
	return nil
}

// jsonEvent is a recv --json line for the events of client/messaging.go.
type jsonEvent struct {
	Type      string `json:"type"` // reaction, edit, delete, receipt, typing, timer
	ID        string `json:"id"`
	From      string `json:"from"`
	To        string `json:"to,omitempty"`
	Device    uint32 `json:"device"`
	Sent      string `json:"sent"`
	Received  string `json:"received"`
	Group     string `json:"group,omitempty"`
	GroupName string `json:"group_name,omitempty"`
	// The message the event is about: reacted to, edited, deleted,
	// delivered or read.
	Target  string  `json:"target,omitempty"`
	Emoji   string  `json:"emoji,omitempty"`
	Removed bool    `json:"removed,omitempty"`
	Text    *string `json:"text,omitempty"` // an edit's new text
	Kind    string  `json:"kind,omitempty"` // a receipt's: delivered or read
	Started *bool   `json:"started,omitempty"`
	Seconds *int64  `json:"seconds,omitempty"` // a timer's; 0 is off
}

// formatEventJSON renders the events of client/messaging.go as JSON
// lines: one per target for a receipt naming several messages.
func formatEventJSON(e client.Event) []string {
	var m client.Meta
	j := jsonEvent{}
	var targets []client.MessageID
	switch e := e.(type) {
	case *client.ReactionEvent:
		m, j.Type, j.Emoji, j.Removed, targets = e.Meta, "reaction", e.Emoji, e.Removed, []client.MessageID{e.Target}
	case *client.EditEvent:
		m, j.Type, j.Text, targets = e.Meta, "edit", &e.Text, []client.MessageID{e.Target}
	case *client.DeleteEvent:
		m, j.Type, targets = e.Meta, "delete", []client.MessageID{e.Target}
	case *client.ReceiptEvent:
		m, j.Type, j.Kind, targets = e.Meta, "receipt", e.Kind.String(), e.Targets
	case *client.TypingEvent:
		m, j.Type, j.Started = e.Meta, "typing", &e.Started
	case *client.TimerEvent:
		secs := int64(e.Timer / time.Second)
		m, j.Type, j.Seconds = e.Meta, "timer", &secs
	default:
		return nil
	}
	j.ID, j.From, j.To, j.Device = m.ID.String(), m.From, m.To, m.Device
	j.Sent, j.Received = m.Sent.UTC().Format(jsonTime), m.Received.UTC().Format(jsonTime)
	if m.Group != nil {
		j.Group, j.GroupName = hex.EncodeToString(m.Group), m.GroupName
	}
	if len(targets) == 0 {
		targets = []client.MessageID{{}}
	}
	var out []string
	for _, t := range targets {
		if t != (client.MessageID{}) {
			j.Target = t.String()
		}
		b, _ := json.Marshal(j)
		out = append(out, string(b))
	}
	return out
}

// sanitize makes a peer's text safe to print on a terminal: control
// characters (escape sequences could rewrite the screen) are shown as
// U+FFFD, and each further line is indented so it cannot pass for a
// message line of its own.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString("\n    ")
		case r == '\t':
			b.WriteRune(r)
		case unicode.IsControl(r), r == '\u2028', r == '\u2029', unicode.Is(unicode.Bidi_Control, r):
			b.WriteRune('\uFFFD')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// jsonMessage is one line of recv --json output.
type jsonMessage struct {
	ID       string `json:"id"`
	From     string `json:"from"`
	Device   uint32 `json:"device"`
	Sent     string `json:"sent"`
	Received string `json:"received"`
	Type     string `json:"type"`
	Text     string `json:"text"`
	// To is only on sync copies: a message this account sent from another
	// device (From is then the own username).
	To string `json:"to,omitempty"`
	// A file: its name, size and, once saved (recv --download-dir), the
	// saved path and the SHA-256 of the saved file.
	File   string `json:"file,omitempty"`
	Name   string `json:"name,omitempty"`
	Size   *int64 `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// A group message: the group's id (hex) and name.
	Group     string `json:"group,omitempty"`
	GroupName string `json:"group_name,omitempty"`
	// A reply: the id of the message it quotes, and its author.
	ReplyTo     string `json:"reply_to,omitempty"`
	ReplyAuthor string `json:"reply_author,omitempty"`
	// A disappearing message: when this device erases it.
	Expires string `json:"expires,omitempty"`
}

func formatJSON(m *client.MessageEvent) string {
	j := jsonMessage{
		ID:       m.ID.String(),
		From:     m.From,
		Device:   m.Device,
		Sent:     m.Sent.UTC().Format(jsonTime),
		Received: m.Received.UTC().Format(jsonTime),
		Type:     "text",
		Text:     m.Text,
		To:       m.To,
	}
	if a := m.Attachment; a != nil {
		j.Type, j.File, j.Name, j.Size, j.SHA256 = "file", a.Path, a.Name, &a.Size, a.SavedSHA256
	}
	if m.Group != nil {
		j.Group, j.GroupName = hex.EncodeToString(m.Group), m.GroupName
	}
	if m.ReplyTo != nil {
		j.ReplyTo, j.ReplyAuthor = m.ReplyTo.ID.String(), m.ReplyTo.Author
	}
	if !m.Expires.IsZero() {
		j.Expires = m.Expires.UTC().Format(jsonTime)
	}
	b, _ := json.Marshal(j)
	return string(b)
}

// printer prints received events in text or JSON form; drops go to stderr.
type printer struct {
	c    *cmd
	json bool
	// With dir set, files are downloaded there before printing.
	ctx context.Context
	cl  *client.Client
	dir string
}

func (p printer) event(e client.Event) {
	switch e := e.(type) {
	case *client.MessageEvent:
		if e.Attachment != nil && p.dir != "" && p.cl != nil {
			bar, done := client.Progress(nil), func() {}
			if !p.json {
				bar, done = p.c.progressBar("downloading")
			}
			_, err := p.cl.Download(p.ctx, e.Attachment, p.dir, bar)
			done()
			if err != nil {
				p.c.warn(fmt.Errorf("could not save the file %q from %s: %v", e.Attachment.Name, e.From, err))
			}
		}
		line := formatMessage(e)
		if p.json {
			line = formatJSON(e)
		}
		fmt.Fprintln(p.c.stdout, line)
	case *client.DeviceEvent:
		line := deviceLine(e)
		if p.json {
			line = formatDeviceJSON(e)
		}
		fmt.Fprintln(p.c.stdout, line)
	case *client.RequestEvent:
		p.request(e) // contacts.go
	case *client.ReactionEvent, *client.EditEvent, *client.DeleteEvent, *client.ReceiptEvent, *client.TypingEvent, *client.TimerEvent:
		lines := formatEvent(e)
		if p.json {
			lines = formatEventJSON(e)
		}
		for _, l := range lines {
			fmt.Fprintln(p.c.stdout, l)
		}
	case *client.GroupEvent:
		p.group(e) // group.go
	case *client.CallEvent:
		p.call(e) // call.go
	case *client.DroppedEvent:
		if e.From == "" { // a sealed envelope that did not open names nobody
			p.c.warn(fmt.Errorf("dropped a message: %v", e.Err))
			return
		}
		p.c.warn(fmt.Errorf("dropped a message from %s/%d that failed to decrypt: %v", e.From, e.Device, e.Err))
	}
}
