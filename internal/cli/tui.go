package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"charm.land/bubbles/v2/textinput"
	"charm.land/bubbles/v2/viewport"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"github.com/hush-chat/hush/client"
)

// historyLines is how much of the conversation chat shows at start.
const historyLines = 500

// Messages the chat model receives besides keys and resizes.
type (
	incomingMsg struct{ ev client.Event }
	statusMsg   string
	sentMsg     struct{ err error }
	reloadMsg   struct{} // the history changed: show it again
)

// typingEvery is how often chat repeats "typing" while the user types;
// typingShown how long a peer's "typing" is shown without news.
const (
	typingEvery = 3 * time.Second
	typingShown = 6 * time.Second
)

// chatModel is the full-screen chat: a header, the conversation in a
// scrolling viewport, a status line and the input line.
type chatModel struct {
	c        *cmd
	ctx      context.Context
	cl       *client.Client
	me, peer string
	conv     string // the conversation key: peer, or a group's
	title    string

	typingSent time.Time // when "typing" last went out
	typingFrom string    // who is typing, shown until typingUntil
	typingAt   time.Time

	vp     viewport.Model
	in     textinput.Model
	hist   []client.Entry // the conversation, as last loaded
	notes  []note         // events shown between the messages
	timer  time.Duration  // the disappearing-message timer (0: off)
	lines  []string
	status string
	width  int
}

// note is a line about something that is not in the history (a device
// added, the timer changed), kept among the messages by its time.
type note struct {
	at   time.Time
	line string
}

var (
	headerStyle = lipgloss.NewStyle().Bold(true)
	statusStyle = lipgloss.NewStyle().Faint(true)
)

func (c *cmd) chatTUI(ctx context.Context, cl *client.Client, info client.Info, conv, title string) error {
	m := &chatModel{c: c, ctx: ctx, cl: cl, me: info.Username, peer: title, conv: conv, title: title, vp: viewport.New(viewport.WithWidth(80), viewport.WithHeight(20)), in: textinput.New()}
	m.in.Prompt = "> "
	m.in.Placeholder = "message " + title
	m.in.CharLimit = client.MaxTextSize
	m.in.Focus()
	if err := m.load(); err != nil {
		return err
	}
	m.markRead()

	lctx, stop := context.WithCancel(ctx)
	p := tea.NewProgram(m, tea.WithContext(lctx), tea.WithInput(c.env.Stdin), tea.WithOutput(c.env.Stdout))
	var wg sync.WaitGroup
	wg.Go(func() {
		c.listen(lctx, cl,
			func(e client.Event) { p.Send(incomingMsg{e}) },
			func(err error) { p.Send(statusMsg(c.describe(err) + "; reconnecting")) })
	})
	_, err := p.Run()
	stop()
	wg.Wait()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil // interrupted by a signal: a normal way out
	}
	return err
}

func (m *chatModel) Init() tea.Cmd { return textinput.Blink }

func (m *chatModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmds []tea.Cmd
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width = msg.Width
		m.vp.SetWidth(msg.Width)
		m.vp.SetHeight(max(1, msg.Height-3)) // header, status, input
		m.in.SetWidth(max(1, msg.Width-len(m.in.Prompt)-1))
		m.refresh()
	case tea.KeyPressMsg:
		switch msg.String() {
		case "ctrl+c", "esc":
			return m, tea.Quit
		case "enter":
			text := strings.TrimSpace(m.in.Value())
			if text == "" {
				return m, nil
			}
			m.in.Reset()
			m.typingSent = time.Time{} // the message ends the typing
			m.lines = append(m.lines, formatText(time.Now(), m.me, text))
			m.refresh()
			return m, m.sendCmd(text)
		case "pgup", "pgdown":
			var cmd tea.Cmd
			m.vp, cmd = m.vp.Update(msg)
			return m, cmd
		}
	case incomingMsg:
		if time.Since(m.typingAt) > typingShown {
			m.typingFrom = ""
		}
		switch e := msg.ev.(type) {
		case *client.MessageEvent:
			m.status = "" // whatever it said, the connection works
			if eventConv(e.From, e.To, e.Group) == m.conv {
				if e.From == m.typingFrom {
					m.typingFrom = ""
				}
				return m, tea.Batch(m.reloadCmd(), m.readCmd())
			}
			m.status = "new message from " + who(e.From, e.To, e.Group, e.GroupName)
		case *client.TypingEvent:
			if eventConv(e.From, e.To, e.Group) == m.conv {
				m.typingFrom, m.typingAt = "", time.Time{}
				if e.Started {
					m.typingFrom, m.typingAt = e.From, time.Now()
				}
			}
		case *client.TimerEvent:
			if eventConv(e.From, e.To, e.Group) == m.conv {
				m.timer = e.Timer
				m.addNote(e.Received, formatEvent(e)...)
			}
			return m, m.reloadCmd()
		case *client.ReactionEvent, *client.EditEvent, *client.DeleteEvent, *client.ReceiptEvent:
			return m, m.reloadCmd()
		case *client.DeviceEvent:
			m.addNote(e.Received, "* "+deviceLine(e))
		case *client.RequestEvent:
			m.status = fmt.Sprintf("message request from %s; \"hush accept %s\" to read it", e.From, e.From)
		case *client.DroppedEvent:
			m.status = fmt.Sprintf("dropped a message from %s/%d that failed to decrypt", e.From, e.Device)
		case *client.CallEvent:
			// A note, so the next reload of the history keeps it; a call
			// from someone else is not part of this conversation.
			switch l := missedCall(e); {
			case l == "":
			case e.From == m.conv:
				m.addNote(e.Received, l)
			default:
				m.status = l
			}
		}
		return m, nil
	case reloadMsg:
		if err := m.load(); err != nil {
			m.status = m.c.describe(err)
		}
		m.refresh()
		return m, nil
	case statusMsg:
		m.status = string(msg)
		return m, nil
	case sentMsg:
		if msg.err == nil {
			m.status = ""
			return m, m.reloadCmd() // shows ✓
		} else {
			// Said under the message it concerns, so a later connection
			// status does not hide it.
			var q *client.QueuedError
			note := "not sent: "
			if errors.As(msg.err, &q) {
				note = "queued: "
			}
			m.lines = append(m.lines, statusStyle.Render("  ↳ "+note+m.c.describe(msg.err)))
			m.refresh()
		}
		return m, nil
	}
	var cmd tea.Cmd
	before := m.in.Value()
	m.in, cmd = m.in.Update(msg)
	cmds = append(cmds, cmd)
	if v := m.in.Value(); v != before {
		cmds = append(cmds, m.typingCmd(v != ""))
	}
	return m, tea.Batch(cmds...)
}

// typingCmd tells the conversation the user is typing (at most every
// typingEvery) or, once the input is empty again, stopped.
func (m *chatModel) typingCmd(typing bool) tea.Cmd {
	switch {
	case typing && time.Since(m.typingSent) < typingEvery:
		return nil
	case !typing && m.typingSent.IsZero():
		return nil
	}
	if typing {
		m.typingSent = time.Now()
	} else {
		m.typingSent = time.Time{}
	}
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(m.ctx, sendTimeout)
		defer cancel()
		m.cl.SendTyping(ctx, m.conv, typing) // best effort: a lost "typing" matters little
		return nil
	}
}

// reloadCmd shows the history again once something in it changed.
func (m *chatModel) reloadCmd() tea.Cmd { return func() tea.Msg { return reloadMsg{} } }

// readCmd sends read receipts for what is on screen.
func (m *chatModel) readCmd() tea.Cmd {
	return func() tea.Msg {
		m.markRead()
		return nil
	}
}

// markRead sends read receipts for the conversation; failures wait for
// the next try.
func (m *chatModel) markRead() {
	ctx, cancel := context.WithTimeout(m.ctx, sendTimeout)
	defer cancel()
	m.cl.MarkRead(ctx, m.conv)
}

// load reads the conversation's history (edits, deletions, reactions and
// receipts included) and its timer, and renders them.
func (m *chatModel) load() error {
	hist, err := m.cl.History(m.ctx, m.conv, historyLines)
	if err != nil {
		return err
	}
	if m.timer, err = m.cl.Timer(m.ctx, m.conv); err != nil {
		return err
	}
	m.hist = hist
	m.render()
	return nil
}

// addNote shows lines among the messages, at time at, and keeps them
// across reloads of the history.
func (m *chatModel) addNote(at time.Time, lines ...string) {
	for _, l := range lines {
		m.notes = append(m.notes, note{at, l})
	}
	m.render()
	m.refresh()
}

// render lays out the history with the notes between the messages, by
// the time this device got each.
func (m *chatModel) render() {
	m.lines = m.lines[:0]
	n := 0
	for _, e := range m.hist {
		for ; n < len(m.notes) && m.notes[n].at.Before(e.Received); n++ {
			m.lines = append(m.lines, m.notes[n].line)
		}
		m.lines = append(m.lines, entryLine(e))
	}
	for _, nt := range m.notes[n:] {
		m.lines = append(m.lines, nt.line)
	}
}

// entryLine renders a history entry: "[…] alice: text (edited) [👍 bob] ✓✓".
func entryLine(e client.Entry) string {
	text := e.Text
	if a := e.Attachment; a != nil {
		text = strings.TrimSuffix(fmt.Sprintf("[file %s, %d bytes] %s", a.Name, a.Size, text), " ")
	}
	if e.ReplyTo != nil {
		text = "↪ " + e.ReplyTo.ID.String()[:8] + " " + text
	}
	if e.Deleted {
		text = "(deleted)"
	}
	line := formatText(e.Sent, e.Author, text)
	if !e.Edited.IsZero() && !e.Deleted {
		line += statusStyle.Render(" (edited)")
	}
	if len(e.Reactions) > 0 {
		var rs []string
		for who, emoji := range e.Reactions {
			rs = append(rs, sanitize(emoji)+" "+who)
		}
		slices.Sort(rs)
		line += " [" + strings.Join(rs, ", ") + "]"
	}
	if !e.Expires.IsZero() {
		line += statusStyle.Render(" ⏱")
	}
	if e.Outgoing {
		switch {
		case e.Status == client.Queued || e.Status == client.Failed:
			line += " (" + e.Status.String() + ")"
		case e.Read:
			line += statusStyle.Render(" ✓✓ read")
		case e.Delivered:
			line += statusStyle.Render(" ✓✓")
		default:
			line += statusStyle.Render(" ✓")
		}
	}
	return line
}

// eventConv is the conversation key of an event.
func eventConv(from, to string, group []byte) string {
	switch {
	case group != nil:
		return "#" + hex.EncodeToString(group)
	case to != "":
		return to
	}
	return from
}

func (m *chatModel) sendCmd(text string) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(m.ctx, sendTimeout)
		defer cancel()
		_, err := m.cl.Send(ctx, m.conv, text)
		return sentMsg{err}
	}
}

// refresh re-renders the conversation, wrapped to the window, and keeps
// the newest message in view.
func (m *chatModel) refresh() {
	content := strings.Join(m.lines, "\n")
	if m.width > 0 {
		content = lipgloss.NewStyle().Width(m.width).Render(content)
	}
	m.vp.SetContent(content)
	m.vp.GotoBottom()
}

func (m *chatModel) View() tea.View {
	status := m.status
	if m.typingFrom != "" && time.Since(m.typingAt) < typingShown {
		status = m.typingFrom + " is typing…"
	}
	header := headerStyle.Render(fmt.Sprintf("hush: %s ↔ %s", m.me, sanitize(m.title)))
	if m.timer > 0 {
		header += " ⏱ " + timerText(m.timer)
	}
	header += statusStyle.Render("   Enter sends · PgUp/PgDn scroll · Esc quits")
	v := tea.NewView(header + "\n" + m.vp.View() + "\n" + statusStyle.Render(status) + "\n" + m.in.View())
	v.AltScreen = true
	return v
}
