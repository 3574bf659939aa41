package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/bubbles/textinput"
	"github.com/charmbracelet/bubbles/viewport"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/hush-chat/hush/client"
)

// historyLines is how much of the conversation chat shows at start.
const historyLines = 500

// Messages the chat model receives besides keys and resizes.
type (
	incomingMsg struct{ ev client.Event }
	statusMsg   string
	sentMsg     struct{ err error }
)

// chatModel is the full-screen chat: a header, the conversation in a
// scrolling viewport, a status line and the input line.
type chatModel struct {
	c        *cmd
	ctx      context.Context
	cl       *client.Client
	me, peer string

	vp     viewport.Model
	in     textinput.Model
	lines  []string
	status string
	width  int
}

var (
	headerStyle = lipgloss.NewStyle().Bold(true)
	statusStyle = lipgloss.NewStyle().Faint(true)
)

func (c *cmd) chatTUI(ctx context.Context, cl *client.Client, info client.Info, peer string) error {
	m := &chatModel{c: c, ctx: ctx, cl: cl, me: info.Username, peer: peer, vp: viewport.New(80, 20), in: textinput.New()}
	m.in.Prompt = "> "
	m.in.Placeholder = "message " + peer
	m.in.CharLimit = client.MaxTextSize
	m.in.Focus()
	hist, err := cl.History(ctx, peer, historyLines)
	if err != nil {
		return err
	}
	for _, e := range hist {
		from := peer
		if e.Outgoing {
			from = m.me
		}
		line := formatText(e.Sent, from, e.Text)
		if e.Status == client.Queued || e.Status == client.Failed {
			line += " (" + e.Status.String() + ")"
		}
		m.lines = append(m.lines, line)
	}

	lctx, stop := context.WithCancel(ctx)
	p := tea.NewProgram(m, tea.WithContext(lctx), tea.WithAltScreen(), tea.WithInput(c.env.Stdin), tea.WithOutput(c.env.Stdout))
	var wg sync.WaitGroup
	wg.Go(func() {
		c.listen(lctx, cl,
			func(e client.Event) { p.Send(incomingMsg{e}) },
			func(err error) { p.Send(statusMsg(c.describe(err) + "; reconnecting")) })
	})
	_, err = p.Run()
	stop()
	wg.Wait()
	if err == tea.ErrProgramKilled && ctx.Err() != nil {
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
		m.vp.Width = msg.Width
		m.vp.Height = max(1, msg.Height-3) // header, status, input
		m.in.Width = max(1, msg.Width-len(m.in.Prompt)-1)
		m.refresh()
	case tea.KeyMsg:
		switch msg.Type {
		case tea.KeyCtrlC, tea.KeyEsc:
			return m, tea.Quit
		case tea.KeyEnter:
			text := strings.TrimSpace(m.in.Value())
			if text == "" {
				return m, nil
			}
			m.in.Reset()
			m.lines = append(m.lines, formatText(time.Now(), m.me, text))
			m.refresh()
			return m, m.sendCmd(text)
		case tea.KeyPgUp, tea.KeyPgDown:
			var cmd tea.Cmd
			m.vp, cmd = m.vp.Update(msg)
			return m, cmd
		}
	case incomingMsg:
		switch e := msg.ev.(type) {
		case *client.MessageEvent:
			m.status = "" // whatever it said, the connection works
			m.lines = append(m.lines, formatMessage(e))
			m.refresh()
		case *client.DeviceEvent:
			m.lines = append(m.lines, "* "+deviceLine(e))
			m.refresh()
		case *client.RequestEvent:
			m.status = fmt.Sprintf("message request from %s; \"hush accept %s\" to read it", e.From, e.From)
		case *client.DroppedEvent:
			m.status = fmt.Sprintf("dropped a message from %s/%d that failed to decrypt", e.From, e.Device)
		case *client.CallEvent:
			if l := missedCall(e); l != "" {
				m.lines = append(m.lines, l)
				m.refresh()
			}
		}
		return m, nil
	case statusMsg:
		m.status = string(msg)
		return m, nil
	case sentMsg:
		if msg.err == nil {
			m.status = ""
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
	m.in, cmd = m.in.Update(msg)
	cmds = append(cmds, cmd)
	return m, tea.Batch(cmds...)
}

func (m *chatModel) sendCmd(text string) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(m.ctx, sendTimeout)
		defer cancel()
		_, err := m.cl.Send(ctx, m.peer, text)
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

func (m *chatModel) View() string {
	header := headerStyle.Render(fmt.Sprintf("hush: %s ↔ %s", m.me, m.peer)) + statusStyle.Render("   Enter sends · PgUp/PgDn scroll · Esc quits")
	return header + "\n" + m.vp.View() + "\n" + statusStyle.Render(m.status) + "\n" + m.in.View()
}
