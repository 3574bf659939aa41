package cli

import (
	"context"
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
	if m.To != "" {
		return formatText(m.Sent, m.From+" -> "+m.To, text)
	}
	return formatText(m.Sent, m.From, text)
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
	// A file: its saved path (only once downloaded), size and SHA-256.
	File   string `json:"file,omitempty"`
	Name   string `json:"name,omitempty"`
	Size   *int64 `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
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
		j.Type, j.File, j.Name, j.Size, j.SHA256 = "file", a.Path, a.Name, &a.Size, a.SHA256
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
