package cli

// Everyday messaging (docs/protocol.md §12):
//
//	hush reply USERNAME|GROUP MSGID TEXT...     (TEXT "-" reads stdin; prints the reply's id)
//	hush react USERNAME|GROUP MSGID EMOJI       (--remove takes it back)
//	hush edit USERNAME|GROUP MSGID TEXT...
//	hush delete USERNAME|GROUP MSGID            (for everyone)
//	hush read USERNAME|GROUP                    (send read receipts)
//	hush timer USERNAME|GROUP DURATION|off      (disappearing messages)

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hush-chat/hush/client"
)

// resolveConv names a conversation: a group (its id, or a name only one
// group has; client.FindGroup) or else a username. A name that is both a
// group's and a contact's, or that several groups share, is refused as
// ambiguous.
func resolveConv(ctx context.Context, cl *client.Client, name string) (string, error) {
	g, err := cl.FindGroup(ctx, name)
	if errors.Is(err, client.ErrNoGroup) {
		return name, nil // not a group: a username (checked when sending)
	}
	if err != nil {
		return "", err
	}
	if _, err := client.ParseGroupID(name); err != nil {
		if ci, err := cl.ContactInfo(ctx, name); err == nil && ci.State == client.Accepted {
			return "", fmt.Errorf("%q is both a group and a contact; give the group's id (hush group list)", name)
		}
	}
	return client.GroupConversation(g.ID), nil
}

// openConv opens the account and resolves the conversation name.
func (c *cmd) openConv(ctx context.Context, name string) (*client.Client, string, error) {
	cl, _, err := c.openAccount()
	if err != nil {
		return nil, "", err
	}
	conv, err := resolveConv(ctx, cl, name)
	if err != nil {
		cl.Close()
		return nil, "", err
	}
	return cl, conv, nil
}

// textArgs joins TEXT..., reading stdin for a lone "-".
func (c *cmd) textArgs(args []string) (string, error) {
	text := strings.Join(args, " ")
	if len(args) == 1 && text == "-" {
		return readText(c.env.Stdin)
	}
	return text, nil
}

func (c *cmd) reply(ctx context.Context, args []string) error {
	if len(args) < 3 {
		return usagef("reply takes USERNAME|GROUP, MSGID and TEXT")
	}
	return c.withTarget(ctx, args[0], args[1], func(ctx context.Context, cl *client.Client, conv string, id client.MessageID) error {
		text, err := c.textArgs(args[2:])
		if err != nil {
			return err
		}
		return c.printID(cl.Reply(ctx, conv, id, text))
	})
}

func (c *cmd) react(ctx context.Context, args []string) error {
	var rest []string
	remove := false
	for _, a := range args {
		if a == "--remove" || a == "-remove" {
			remove = true
			continue
		}
		rest = append(rest, a)
	}
	if len(rest) != 3 && !(remove && len(rest) == 2) {
		return usagef("react takes USERNAME|GROUP, MSGID and EMOJI (or --remove)")
	}
	emoji := ""
	if len(rest) == 3 {
		emoji = rest[2]
	}
	return c.withTarget(ctx, rest[0], rest[1], func(ctx context.Context, cl *client.Client, conv string, id client.MessageID) error {
		_, err := cl.React(ctx, conv, id, emoji, remove)
		return err
	})
}

func (c *cmd) edit(ctx context.Context, args []string) error {
	if len(args) < 3 {
		return usagef("edit takes USERNAME|GROUP, MSGID and TEXT")
	}
	return c.withTarget(ctx, args[0], args[1], func(ctx context.Context, cl *client.Client, conv string, id client.MessageID) error {
		text, err := c.textArgs(args[2:])
		if err != nil {
			return err
		}
		_, err = cl.Edit(ctx, conv, id, text)
		return err
	})
}

func (c *cmd) deleteMessage(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return usagef("delete takes USERNAME|GROUP and MSGID")
	}
	return c.withTarget(ctx, args[0], args[1], func(ctx context.Context, cl *client.Client, conv string, id client.MessageID) error {
		_, err := cl.Delete(ctx, conv, id)
		return err
	})
}

// withTarget opens the conversation and parses the message id for f.
func (c *cmd) withTarget(ctx context.Context, name, msgID string, f func(context.Context, *client.Client, string, client.MessageID) error) error {
	id, err := client.ParseMessageID(msgID)
	if err != nil {
		return usagef("%v", err)
	}
	cl, conv, err := c.openConv(ctx, name)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return f(ctx, cl, conv, id)
}

func (c *cmd) read(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return usagef("read takes USERNAME|GROUP")
	}
	cl, conv, err := c.openConv(ctx, args[0])
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	_, err = cl.MarkRead(ctx, conv)
	return err
}

func (c *cmd) timer(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return usagef("timer takes USERNAME|GROUP and DURATION (e.g. 30s, 5m, 1h, 1d, 1w) or off")
	}
	d, err := parseTimer(args[1])
	if err != nil {
		return usagef("%v", err)
	}
	cl, conv, err := c.openConv(ctx, args[0])
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	_, err = cl.SetTimer(ctx, conv, d)
	return err
}

// parseTimer reads "off" or a duration; besides Go's units it knows d
// (days) and w (weeks) as a single whole number.
func parseTimer(s string) (time.Duration, error) {
	if s == "off" || s == "0" {
		return 0, nil
	}
	var d time.Duration
	if n, unit := strings.TrimRight(s, "dw"), strings.TrimLeft(s, "0123456789"); (unit == "d" || unit == "w") && n != "" {
		k, err := strconv.Atoi(n)
		if err != nil || k > 10000 {
			return 0, fmt.Errorf("timer %q is not a duration", s)
		}
		day := 24 * time.Hour
		if unit == "w" {
			day *= 7
		}
		d = time.Duration(k) * day
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("timer %q is not a duration like 30s, 5m, 1h, 1d or 1w, nor off", s)
		}
	}
	if d < client.MinTimer || d > client.MaxTimer || d%time.Second != 0 {
		return 0, errors.New("a disappearing-message timer is whole seconds between 5s and 4w (or off)")
	}
	return d, nil
}

// timerText renders a timer for people: "off", "30s", "5m", "1h30m",
// "2d", "1w".
func timerText(d time.Duration) string {
	switch {
	case d == 0:
		return "off"
	case d%(7*24*time.Hour) == 0:
		return fmt.Sprintf("%dw", d/(7*24*time.Hour))
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String() // "1h0m0s"
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
