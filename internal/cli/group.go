package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hush-chat/hush/client"
)

// Groups (issue 6, docs/protocol.md §11):
//
//	hush group create NAME --members bob,carol     (prints the group id alone)
//	hush group add GROUP USERNAME...
//	hush group remove GROUP USERNAME...
//	hush group leave GROUP
//	hush group list [--json]
//	hush group info GROUP [--json]
//	hush group send GROUP [--file PATH] TEXT...
//
// GROUP is the id (32 hex digits) or a name only one group has.

// groupTimeout bounds a group change, the states it sends included.
const groupTimeout = 2 * time.Minute

func (c *cmd) group(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("group takes a subcommand: create, add, remove, leave, list, info or send")
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "create":
		return c.groupCreate(ctx, rest)
	case "add", "remove":
		return c.groupMembers(ctx, sub, rest)
	case "leave":
		return c.groupLeave(ctx, rest)
	case "list":
		return c.groupList(ctx, rest)
	case "info":
		return c.groupInfo(ctx, rest)
	case "send":
		return c.groupSend(ctx, rest)
	}
	return usagef("unknown group subcommand %q", sub)
}

// parseAfterFirst parses fs's flags before and right after the first
// argument ("group create NAME --members x" as well as "--members x
// NAME") and returns the arguments left.
func parseAfterFirst(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	rest := fs.Args()
	if len(rest) > 1 && strings.HasPrefix(rest[1], "-") && rest[1] != "-" {
		first := rest[0]
		if err := parseFlags(fs, rest[1:]); err != nil {
			return nil, err
		}
		return append([]string{first}, fs.Args()...), nil
	}
	return rest, nil
}

func (c *cmd) groupCreate(ctx context.Context, args []string) error {
	fs := newFlags("group create")
	members := fs.String("members", "", "comma-separated usernames of the other members")
	rest, err := parseAfterFirst(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("group create takes one NAME (quote a name with spaces) and --members USER,USER")
	}
	var users []string
	for _, u := range strings.Split(*members, ",") {
		if u = strings.TrimSpace(u); u != "" {
			users = append(users, u)
		}
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, groupTimeout)
	defer cancel()
	id, err := cl.CreateGroup(ctx, rest[0], users)
	var qe *client.QueuedError
	if err == nil || errors.As(err, &qe) {
		// The group exists here either way; its first state may still be
		// queued (err says so).
		fmt.Fprintln(c.stdout, id)
	}
	return err
}

// findGroup opens the account and resolves GROUP.
func (c *cmd) findGroup(ctx context.Context, ref string) (*client.Client, client.Group, error) {
	cl, _, err := c.openAccount()
	if err != nil {
		return nil, client.Group{}, err
	}
	g, err := cl.FindGroup(ctx, ref)
	if err != nil {
		cl.Close()
		return nil, client.Group{}, err
	}
	return cl, g, nil
}

func (c *cmd) groupMembers(ctx context.Context, sub string, args []string) error {
	fs := newFlags("group " + sub)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usagef("group %s takes GROUP and at least one USERNAME", sub)
	}
	cl, g, err := c.findGroup(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, groupTimeout)
	defer cancel()
	users := fs.Args()[1:]
	verb := "added to"
	if sub == "add" {
		err = cl.AddGroupMembers(ctx, g.ID, users)
	} else {
		err = cl.RemoveGroupMembers(ctx, g.ID, users)
		verb = "removed from"
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s %s %s\n", strings.Join(users, ", "), verb, sanitize(g.Name))
	return nil
}

func (c *cmd) groupLeave(ctx context.Context, args []string) error {
	fs := newFlags("group leave")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("group leave takes one GROUP")
	}
	cl, g, err := c.findGroup(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, groupTimeout)
	defer cancel()
	if err := cl.LeaveGroup(ctx, g.ID); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "left %s\n", sanitize(g.Name))
	return nil
}

// jsonGroup is one line of group list --json and group info --json.
type jsonGroup struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Epoch   uint64   `json:"epoch"`
	Members []string `json:"members"`
	Admins  []string `json:"admins"`
	Active  bool     `json:"active"`
}

func toJSONGroup(g client.Group) jsonGroup {
	return jsonGroup{ID: g.ID.String(), Name: g.Name, Epoch: g.Epoch, Members: g.Members, Admins: g.Admins, Active: g.Active}
}

func (c *cmd) groupList(ctx context.Context, args []string) error {
	fs := newFlags("group list")
	asJSON := fs.Bool("json", false, "one JSON object per group")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("group list takes no arguments besides --json")
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	gs, err := cl.Groups(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		for _, g := range gs {
			b, _ := json.Marshal(toJSONGroup(g))
			fmt.Fprintln(c.stdout, string(b))
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tMEMBERS\tACTIVE")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", g.ID, sanitize(g.Name), len(g.Members), yesNo(g.Active))
	}
	return tw.Flush()
}

func (c *cmd) groupInfo(ctx context.Context, args []string) error {
	fs := newFlags("group info")
	asJSON := fs.Bool("json", false, "one JSON object")
	rest, err := parseAfterFirst(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usagef("group info takes one GROUP")
	}
	cl, g, err := c.findGroup(ctx, rest[0])
	if err != nil {
		return err
	}
	defer cl.Close()
	if *asJSON {
		b, _ := json.Marshal(toJSONGroup(g))
		fmt.Fprintln(c.stdout, string(b))
		return nil
	}
	state := "active"
	if !g.Active {
		state = "inactive (you are not a member)"
	}
	fmt.Fprintf(c.stdout, "name:    %s\nid:      %s\nepoch:   %d\nmembers: %s\nadmins:  %s\nstate:   %s\n",
		sanitize(g.Name), g.ID, g.Epoch, strings.Join(g.Members, ", "), strings.Join(g.Admins, ", "), state)
	return nil
}

func (c *cmd) groupSend(ctx context.Context, args []string) error {
	fs := newFlags("group send")
	file := fs.String("file", "", "send this file, with TEXT as an optional caption")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// "group send GROUP --file PATH TEXT" too; other text starting with
	// "-" stays text.
	rest := fs.Args()
	if len(rest) > 1 && (rest[1] == "--file" || rest[1] == "-file" || strings.HasPrefix(rest[1], "--file=") || strings.HasPrefix(rest[1], "-file=")) {
		first := rest[0]
		if err := parseFlags(fs, rest[1:]); err != nil {
			return err
		}
		rest = append([]string{first}, fs.Args()...)
	}
	if len(rest) < 1 || *file == "" && len(rest) < 2 {
		return usagef("group send takes GROUP and TEXT (or --file PATH)")
	}
	text := strings.Join(rest[1:], " ")
	if *file == "" && len(rest) == 2 && text == "-" {
		var err error
		if text, err = readText(c.env.Stdin); err != nil {
			return err
		}
	}
	cl, g, err := c.findGroup(ctx, rest[0])
	if err != nil {
		return err
	}
	defer cl.Close()
	conv := client.GroupConversation(g.ID)
	if *file != "" {
		ctx, cancel := context.WithTimeout(ctx, fileTimeout)
		defer cancel()
		limitFileMemory()
		bar, done := c.progressBar("uploading")
		id, err := cl.SendFile(ctx, conv, *file, text, bar)
		done()
		return c.printID(id, err)
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return c.printID(cl.Send(ctx, conv, text))
}

// jsonGroupEvent is a recv --json line for a group state this device
// took: type "group".
type jsonGroupEvent struct {
	ID        string   `json:"id"`
	From      string   `json:"from"`
	Received  string   `json:"received"`
	Type      string   `json:"type"`
	Group     string   `json:"group"`
	GroupName string   `json:"group_name"`
	Epoch     uint64   `json:"epoch"`
	Change    string   `json:"change"` // joined, updated or left
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
}

// group reports a new group state: "[…] alice: Book club: added erin;
// removed dave", or with --json a {"type":"group"} line.
func (p printer) group(e *client.GroupEvent) {
	if p.json {
		b, _ := json.Marshal(jsonGroupEvent{
			ID: e.ID.String(), From: e.By, Received: e.Received.UTC().Format(jsonTime), Type: "group",
			Group: e.Group.String(), GroupName: e.Name, Epoch: e.Epoch, Change: e.Change.String(),
			Added: nonNil(e.Added), Removed: nonNil(e.Removed),
		})
		fmt.Fprintln(p.c.stdout, string(b))
		return
	}
	var what []string
	switch e.Change {
	case client.GroupJoined:
		what = append(what, "you are in the group, with "+strings.Join(e.Added, ", "))
	case client.GroupLeft:
		what = append(what, "you are no longer in the group")
	default:
		if len(e.Added) > 0 {
			what = append(what, "added "+strings.Join(e.Added, ", "))
		}
		if len(e.Removed) > 0 {
			what = append(what, "removed "+strings.Join(e.Removed, ", "))
		}
		if len(what) == 0 {
			what = append(what, "changed the group")
		}
	}
	fmt.Fprintln(p.c.stdout, formatText(e.Received, e.By, e.Name+": "+strings.Join(what, "; ")))
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
