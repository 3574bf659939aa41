package cli

import (
	"context"
	"fmt"
	"time"
)

// registerTimeout bounds registration, proof of work included.
const registerTimeout = 2 * time.Minute

func (c *cmd) register(ctx context.Context, args []string) error {
	fs := newFlags("register")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("register takes one USERNAME")
	}
	cl, err := c.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	server := c.server
	if server == "" {
		server = DefaultServer
	}
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	if err := cl.Register(ctx, server, fs.Arg(0)); err != nil {
		return err
	}
	info, err := cl.Info()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "registered %s (device %d) at %s\naccount key fingerprint: %s\n", info.Username, info.DeviceID, info.Server, info.Fingerprint)
	return nil
}

func (c *cmd) whoami(_ context.Context, args []string) error {
	fs := newFlags("whoami")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("whoami takes no arguments")
	}
	cl, info, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	fmt.Fprintf(c.stdout, "username:    %s\ndevice:      %d\nserver:      %s\nfingerprint: %s\n", info.Username, info.DeviceID, info.Server, info.Fingerprint)
	return nil
}
