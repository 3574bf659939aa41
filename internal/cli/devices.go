package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/mdp/qrterminal/v3"

	"github.com/hush-chat/hush/client"
)

// Linked devices and recovery (issue 5):
//
//	hush link [--name NAME] [--json]
//	hush devices [--json]
//	hush devices approve CODE [--no-history]
//	hush devices remove ID
//	hush recovery-key
//	hush restore USERNAME --recovery-key K [--name NAME]

// deviceTimeout bounds approving or removing a device, notices included.
const deviceTimeout = 2 * time.Minute

// parseInterspersed parses flags that may come before, between or after
// the positional arguments ("restore alice --recovery-key K"), which the
// flag package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// serverOrDefault is the server a new device talks to.
func (c *cmd) serverOrDefault() string {
	if c.server != "" {
		return c.server
	}
	return DefaultServer
}

func (c *cmd) link(ctx context.Context, args []string) error {
	fs := newFlags("link")
	name := fs.String("name", "", "a name for this device, shown to your contacts (default: the host name)")
	asJSON := fs.Bool("json", false, "print JSON lines; the first is {\"code\":\"…\"}")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("link takes no arguments besides --name and --json")
	}
	if *name == "" {
		if h, err := os.Hostname(); err == nil && len(h) <= client.MaxDeviceName {
			*name = h
		}
	}
	cl, err := c.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	show := func(code string) error {
		if *asJSON {
			b, _ := json.Marshal(map[string]string{"code": code})
			_, err := fmt.Fprintf(c.stdout, "%s\n", b)
			return err
		}
		fmt.Fprintf(c.stdout, "link code: %s\n\n", code)
		qrterminal.GenerateWithConfig(code, qrterminal.Config{
			Level: qrterminal.L, Writer: c.stdout, HalfBlocks: true,
			BlackChar: qrterminal.BLACK_BLACK, WhiteBlackChar: qrterminal.WHITE_BLACK,
			WhiteChar: qrterminal.WHITE_WHITE, BlackWhiteChar: qrterminal.BLACK_WHITE, QuietZone: 2,
		})
		_, err := fmt.Fprintf(c.stdout, "\non your primary device run:\n  hush devices approve %s\nwaiting up to %v...\n", code, client.LinkTimeout)
		return err
	}
	info, err := cl.Link(ctx, c.serverOrDefault(), *name, show)
	if err != nil {
		return err
	}
	if *asJSON {
		b, _ := json.Marshal(map[string]any{"linked": true, "username": info.Username, "device": info.DeviceID})
		fmt.Fprintf(c.stdout, "%s\n", b)
		return nil
	}
	fmt.Fprintf(c.stdout, "linked as %s (device %d)\n", info.Username, info.DeviceID)
	return nil
}

func (c *cmd) devices(ctx context.Context, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "approve":
			return c.devicesApprove(ctx, args[1:])
		case "remove":
			return c.devicesRemove(ctx, args[1:])
		}
	}
	fs := newFlags("devices")
	asJSON := fs.Bool("json", false, "one JSON object per device")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("devices takes \"approve CODE\", \"remove ID\" or nothing (unknown %q)", fs.Arg(0))
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	devs, err := cl.Devices(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		for _, d := range devs {
			b, _ := json.Marshal(jsonDevice{
				ID: d.ID, Name: d.Name, Added: jsonTimeOrEmpty(d.Added), LastSeen: jsonTimeOrEmpty(d.LastSeen),
				Current: d.Current, Primary: d.Primary,
			})
			fmt.Fprintf(c.stdout, "%s\n", b)
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tADDED\tLAST SEEN")
	for _, d := range devs {
		name := sanitize(d.Name)
		if name == "" {
			name = "-"
		}
		seen := textTimeOrDash(d.LastSeen)
		if d.Current {
			seen = "this device"
			if d.Primary {
				seen += " (primary)"
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", d.ID, name, textTimeOrDash(d.Added), seen)
	}
	return tw.Flush()
}

// jsonDevice is one line of devices --json.
type jsonDevice struct {
	ID       uint32 `json:"id"`
	Name     string `json:"name"`
	Added    string `json:"added"`
	LastSeen string `json:"last_seen"`
	Current  bool   `json:"current"`
	Primary  bool   `json:"primary"`
}

func jsonTimeOrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(jsonTime)
}

func textTimeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(textTime)
}

func (c *cmd) devicesApprove(ctx context.Context, args []string) error {
	fs := newFlags("devices approve")
	noHistory := fs.Bool("no-history", false, "do not give the new device the conversations")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("devices approve takes one CODE (from \"hush link\" on the new device)")
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, deviceTimeout)
	defer cancel()
	d, err := cl.ApproveLink(ctx, pos[0], !*noHistory)
	if err != nil {
		return err
	}
	name := ""
	if d.Name != "" {
		name = " (" + sanitize(d.Name) + ")"
	}
	fmt.Fprintf(c.stdout, "approved device %d%s\n", d.ID, name)
	return nil
}

func (c *cmd) devicesRemove(ctx context.Context, args []string) error {
	fs := newFlags("devices remove")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("devices remove takes one device ID (see \"hush devices\")")
	}
	id, err := strconv.ParseUint(pos[0], 10, 32)
	if err != nil || id == 0 {
		return usagef("devices remove: %q is not a device id", pos[0])
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, deviceTimeout)
	defer cancel()
	if err := cl.RemoveDevice(ctx, uint32(id)); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "removed device %d\n", id)
	return nil
}

func (c *cmd) recoveryKey(_ context.Context, args []string) error {
	fs := newFlags("recovery-key")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("recovery-key takes no arguments")
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	k, err := cl.RecoveryKey()
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, k)
	fmt.Fprintln(c.env.Stderr, "hush: keep this key offline and secret: it controls your account (\"hush restore\" makes a new primary with it)")
	return nil
}

func (c *cmd) restore(ctx context.Context, args []string) error {
	fs := newFlags("restore")
	key := fs.String("recovery-key", "", "the account's recovery key (64 hex digits)")
	name := fs.String("name", "", "a name for this device (default: the host name)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *key == "" {
		return usagef("restore takes USERNAME and --recovery-key K")
	}
	if *name == "" {
		if h, err := os.Hostname(); err == nil && len(h) <= client.MaxDeviceName {
			*name = h
		}
	}
	cl, err := c.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	info, err := cl.Restore(ctx, c.serverOrDefault(), pos[0], *key, *name)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "restored %s (device %d, now the primary) at %s\naccount key fingerprint: %s\n", info.Username, info.DeviceID, info.Server, info.Fingerprint)
	return nil
}

// deviceLine is how recv and chat show a device notice.
func deviceLine(e *client.DeviceEvent) string {
	switch e.Change {
	case client.DeviceAdded:
		if e.Name != "" {
			return fmt.Sprintf("%s added a device (%s)", e.From, sanitize(e.Name))
		}
		return fmt.Sprintf("%s added a device", e.From)
	case client.DeviceRemoved:
		return fmt.Sprintf("%s removed a device", e.From)
	case client.AccountKeyChanged:
		return fmt.Sprintf("%s has a new account key", e.From)
	}
	return fmt.Sprintf("%s changed their devices", e.From)
}

// jsonDeviceEvent is recv --json's line for a device notice.
type jsonDeviceEvent struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	From     string `json:"from"`
	Device   uint32 `json:"device"`
	Sent     string `json:"sent"`
	Received string `json:"received"`
	Change   string `json:"change"`
	DeviceID uint32 `json:"device_id"`
	Name     string `json:"name,omitempty"`
	Text     string `json:"text"`
}

func formatDeviceJSON(e *client.DeviceEvent) string {
	b, _ := json.Marshal(jsonDeviceEvent{
		Type: "device", ID: e.ID.String(), From: e.From, Device: e.Device,
		Sent: e.Sent.UTC().Format(jsonTime), Received: e.Received.UTC().Format(jsonTime),
		Change: e.Change.String(), DeviceID: e.DeviceID, Name: e.Name, Text: deviceLine(e),
	})
	return string(b)
}
