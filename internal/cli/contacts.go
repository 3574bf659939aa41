package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/hush-chat/hush/client"
)

// Contacts and message requests (issue 5):
//
//	hush requests [--json]
//	hush accept USERNAME
//	hush block USERNAME
//	hush unblock USERNAME
//	hush contacts [--json]

// contactTimeout bounds a contact change, the token or list it sends
// included.
const contactTimeout = time.Minute

// jsonRequest is a recv --json line for a message request: who wrote,
// never what (that waits for "hush accept").
type jsonRequest struct {
	ID       string `json:"id"`
	From     string `json:"from"`
	Device   uint32 `json:"device"`
	Sent     string `json:"sent"`
	Received string `json:"received"`
	Type     string `json:"type"`
}

// request reports a message request: a notice on stderr, or with --json
// a {"type":"request"} line.
func (p printer) request(e *client.RequestEvent) {
	if p.json {
		b, _ := json.Marshal(jsonRequest{
			ID: e.ID.String(), From: e.From, Device: e.Device,
			Sent: e.Sent.UTC().Format(jsonTime), Received: e.Received.UTC().Format(jsonTime), Type: "request",
		})
		fmt.Fprintln(p.c.stdout, string(b))
		return
	}
	p.c.errorf("message request from %s; \"hush accept %s\" to read it", e.From, e.From)
}

// printEntries prints stored messages as recv does.
func (c *cmd) printEntries(es []client.Entry, asJSON bool, typ string) {
	for _, e := range es {
		if asJSON {
			m := jsonMessage{
				ID: e.ID.String(), From: e.Peer, Device: e.Device,
				Sent: e.Sent.UTC().Format(jsonTime), Received: e.Received.UTC().Format(jsonTime),
				Type: typ, Text: e.Text,
			}
			if a := e.Attachment; a != nil {
				m.Name, m.Size = a.Name, &a.Size
			}
			b, _ := json.Marshal(m)
			fmt.Fprintln(c.stdout, string(b))
			continue
		}
		fmt.Fprintln(c.stdout, formatMessage(&client.MessageEvent{ID: e.ID, From: e.Peer, Sent: e.Sent, Text: e.Text,
			Attachment: e.Attachment, ReplyTo: e.ReplyTo}))
	}
}

func (c *cmd) requests(ctx context.Context, args []string) error {
	fs := newFlags("requests")
	asJSON := fs.Bool("json", false, "one JSON object per message")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("requests takes no arguments besides --json")
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	es, err := cl.Requests(ctx)
	if err != nil {
		return err
	}
	c.printEntries(es, *asJSON, "request")
	return nil
}

// oneUser parses a subcommand that takes exactly one USERNAME.
func (c *cmd) oneUser(name string, args []string) (string, error) {
	fs := newFlags(name)
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", usagef("%s takes one USERNAME", name)
	}
	return fs.Arg(0), nil
}

func (c *cmd) accept(ctx context.Context, args []string) error {
	fs := newFlags("accept")
	asJSON := fs.Bool("json", false, "one JSON object per message, as recv --json")
	dir := fs.String("download-dir", "", "save the files among the accepted messages in this directory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usagef("accept takes one USERNAME")
	}
	// Flags may follow the name too.
	user := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("accept takes one USERNAME")
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	actx, cancel := context.WithTimeout(ctx, contactTimeout)
	defer cancel()
	es, err := cl.Accept(actx, user)
	if err != nil {
		return err
	}
	if *dir != "" {
		limitFileMemory()
	}
	// The accepted messages are shown (and their files saved) as recv
	// would have shown them: accepting hands them over.
	p := printer{c: c, json: *asJSON, ctx: ctx, cl: cl, dir: *dir}
	for _, e := range es {
		p.event(&client.MessageEvent{ID: e.ID, From: e.Peer, Device: e.Device, Sent: e.Sent, Received: e.Received,
			Text: e.Text, Attachment: e.Attachment, ReplyTo: e.ReplyTo})
	}
	if len(es) == 0 && !*asJSON {
		fmt.Fprintf(c.stdout, "%s is now a contact (no pending messages)\n", user)
	}
	return nil
}

func (c *cmd) block(ctx context.Context, args []string, block bool) error {
	name := "unblock"
	if block {
		name = "block"
	}
	user, err := c.oneUser(name, args)
	if err != nil {
		return err
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, contactTimeout)
	defer cancel()
	if block {
		err = cl.Block(ctx, user)
	} else {
		err = cl.Unblock(ctx, user)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%sed %s\n", name, user)
	return nil
}

// jsonContact is one line of contacts --json.
type jsonContact struct {
	Username   string `json:"username"`
	Verified   bool   `json:"verified"`
	Blocked    bool   `json:"blocked"`
	KeyChanged bool   `json:"key_changed"`
	Sealed     bool   `json:"sealed"`
}

func (c *cmd) contacts(ctx context.Context, args []string) error {
	fs := newFlags("contacts")
	asJSON := fs.Bool("json", false, "one JSON object per contact")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("contacts takes no arguments besides --json")
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	cs, err := cl.Contacts(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		for _, k := range cs {
			b, _ := json.Marshal(jsonContact{k.Username, k.Verified, k.Blocked, k.KeyChanged, k.Sealed})
			fmt.Fprintln(c.stdout, string(b))
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tVERIFIED\tBLOCKED\tNOTE")
	for _, k := range cs {
		note := ""
		if k.KeyChanged {
			note = "safety number changed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Username, yesNo(k.Verified), yesNo(k.Blocked), note)
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
