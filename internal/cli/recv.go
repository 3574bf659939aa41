package cli

import (
	"context"
)

func (c *cmd) recv(ctx context.Context, args []string) error {
	fs := newFlags("recv")
	asJSON := fs.Bool("json", false, "one JSON object per message")
	wait := fs.Duration("wait", 0, "wait up to this long for at least one message")
	dir := fs.String("download-dir", "", "save received files in this directory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("recv takes no arguments besides --json, --wait and --download-dir")
	}
	if *wait < 0 {
		return usagef("recv: --wait must not be negative")
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	if *dir != "" {
		limitFileMemory()
	}
	// Receive retries the outbox first.
	p := printer{c: c, json: *asJSON, ctx: ctx, cl: cl, dir: *dir}
	return cl.Receive(ctx, *wait, p.event)
}
