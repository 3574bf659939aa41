// Package cli implements the hush command: its subcommands, flags, output
// formats and error messages. Their names are a contract that scripts and
// tests rely on (issue 4):
//
//	hush serve  [--listen 127.0.0.1:8090] [--data ./hush-data] [--pow-bits N]
//	            [--tls-cert F --tls-key F] [--db postgres://…] [--nats nats://…]
//	            [--nats-prefix P] [--server-key F] [--blob-dir DIR] [--max-file-size N]
//	            [--no-rate-limits] [--turn-listen IP:PORT|off] [--turn-public-ip IP]
//	            [--turn-allow-private] [--turn-ttl D] [--turn-secret-file F] [--turn-ports MIN-MAX]
//	            [--turn-device-quota N] [--turn-ip-quota N]
//	hush bench  [--server URL] [--users N] [--rate R] [--duration D] [--peers K] [--json]
//	hush [--server URL] [--home DIR] register USERNAME
//	hush [--server URL] [--home DIR] send USERNAME [--file PATH] TEXT...   (TEXT "-" reads stdin)
//	hush [--server URL] [--home DIR] recv [--json] [--wait DURATION] [--download-dir DIR]
//	hush [--server URL] [--home DIR] chat USERNAME|GROUP
//	hush [--server URL] [--home DIR] whoami
//	hush [--server URL] [--home DIR] link [--name NAME] [--json]
//	hush [--server URL] [--home DIR] devices [--json]
//	hush [--server URL] [--home DIR] devices approve CODE [--no-history]
//	hush [--server URL] [--home DIR] devices remove ID
//	hush [--server URL] [--home DIR] recovery-key
//	hush [--server URL] [--home DIR] restore USERNAME --recovery-key K [--name NAME]
//	hush [--server URL] [--home DIR] requests [--json]
//	hush [--server URL] [--home DIR] accept|block|unblock USERNAME
//	hush [--server URL] [--home DIR] contacts [--json]
//	hush [--server URL] [--home DIR] safety USERNAME
//	hush [--server URL] [--home DIR] verify USERNAME [NUMBER]
//	hush [--server URL] [--home DIR] trust USERNAME
//	hush [--server URL] [--home DIR] identity reset
//	hush [--server URL] [--home DIR] group create NAME --members USER,USER   (prints the group id)
//	hush [--server URL] [--home DIR] group add|remove GROUP USERNAME...
//	hush [--server URL] [--home DIR] group leave|info GROUP
//	hush [--server URL] [--home DIR] group list [--json]
//	hush [--server URL] [--home DIR] group send GROUP [--file PATH] TEXT...
//	hush [--server URL] [--home DIR] reply|edit USERNAME|GROUP MSGID TEXT...
//	hush [--server URL] [--home DIR] react USERNAME|GROUP MSGID EMOJI [--remove]
//	hush [--server URL] [--home DIR] delete USERNAME|GROUP MSGID
//	hush [--server URL] [--home DIR] read USERNAME|GROUP
//	hush [--server URL] [--home DIR] timer USERNAME|GROUP DURATION|off
//	hush [--server URL] [--home DIR] call USERNAME [--video] [--relay-only] [--audio-in F.ogg] [--video-in F.ivf]
//	                                   [--record-dir DIR] [--duration D] [--ring-timeout D] [--json]
//	hush [--server URL] [--home DIR] answer [--auto] [--wait D] [--relay-only] [--audio-in F.ogg] [--video-in F.ivf]
//	                                   [--record-dir DIR] [--ring-timeout D] [--json]
//
// Errors are one line on stderr starting "hush: ". Exit codes: 0 success,
// 1 error, 2 usage.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/hush-chat/hush/client"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// DefaultServer is used when neither --server nor $HUSH_SERVER is given
// (and, after registration, the home does not name one).
const DefaultServer = "http://127.0.0.1:8090"

// Env is the process environment the command runs in, injected so tests
// can run it in-process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Interactive reports whether stdin and stdout are a terminal (chat
	// then runs its full-screen interface).
	Interactive bool
}

// OSEnv is the real process environment.
func OSEnv() Env {
	return Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Getenv:      os.Getenv,
		Interactive: term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd())),
	}
}

const usageText = `usage:
  hush serve [--listen 127.0.0.1:8090] [--data ./hush-data] [--pow-bits N] [--tls-cert F --tls-key F]
             [--db postgres://…] [--nats nats://…] [--nats-prefix P] [--server-key F]
             [--blob-dir DIR] [--max-file-size N] [--no-rate-limits]
             [--turn-listen 127.0.0.1:3478|off] [--turn-public-ip IP] [--turn-allow-private]
             [--turn-ttl 10m] [--turn-secret-file F] [--turn-ports MIN-MAX]
             [--turn-device-quota 10] [--turn-ip-quota 64]
  hush bench [--server URL] [--users N] [--rate R] [--duration D] [--peers K] [--json]   (load test, loopback only)
  hush [--server URL] [--home DIR] register USERNAME
  hush [--server URL] [--home DIR] send USERNAME [--file PATH] TEXT...     (TEXT "-" reads stdin; prints the message id)
  hush [--server URL] [--home DIR] recv [--json] [--wait DURATION] [--download-dir DIR]
  hush [--server URL] [--home DIR] chat USERNAME|GROUP
  hush [--server URL] [--home DIR] whoami
  hush [--server URL] [--home DIR] link [--name NAME] [--json]     (on a new device)
  hush [--server URL] [--home DIR] devices [--json]
  hush [--server URL] [--home DIR] devices approve CODE [--no-history]
  hush [--server URL] [--home DIR] devices remove ID
  hush [--server URL] [--home DIR] recovery-key
  hush [--server URL] [--home DIR] restore USERNAME --recovery-key K [--name NAME]
  hush [--server URL] [--home DIR] requests [--json]         (messages from people not in your contacts)
  hush [--server URL] [--home DIR] accept USERNAME [--json] [--download-dir DIR]   (shows the request's messages as recv would)
  hush [--server URL] [--home DIR] block USERNAME
  hush [--server URL] [--home DIR] unblock USERNAME
  hush [--server URL] [--home DIR] contacts [--json]
  hush [--server URL] [--home DIR] safety USERNAME           (the safety number and its QR code)
  hush [--server URL] [--home DIR] verify USERNAME [NUMBER]
  hush [--server URL] [--home DIR] trust USERNAME            (accept a changed safety number)
  hush [--server URL] [--home DIR] identity reset            (new account key; primary device only)
  hush [--server URL] [--home DIR] group create NAME --members USER,USER   (prints the group id alone)
  hush [--server URL] [--home DIR] group add GROUP USERNAME...        (admins only)
  hush [--server URL] [--home DIR] group remove GROUP USERNAME...     (admins only)
  hush [--server URL] [--home DIR] group leave GROUP
  hush [--server URL] [--home DIR] group list [--json]
  hush [--server URL] [--home DIR] group info GROUP [--json]
  hush [--server URL] [--home DIR] group send GROUP [--file PATH] TEXT...
      (GROUP: the id from group create/list, or a name only one group has)
  hush [--server URL] [--home DIR] reply USERNAME|GROUP MSGID TEXT...
  hush [--server URL] [--home DIR] react USERNAME|GROUP MSGID EMOJI [--remove]
  hush [--server URL] [--home DIR] edit USERNAME|GROUP MSGID TEXT...      (your own messages)
  hush [--server URL] [--home DIR] delete USERNAME|GROUP MSGID            (your own, for everyone)
  hush [--server URL] [--home DIR] read USERNAME|GROUP                    (send read receipts)
  hush [--server URL] [--home DIR] timer USERNAME|GROUP DURATION|off      (disappearing messages, 5s..4w)
      (MSGID: the id send and reply print, or the "id" recv --json shows)
  hush [--server URL] [--home DIR] call USERNAME [--video] [--relay-only] [--audio-in F.ogg] [--video-in F.ivf]
                                   [--record-dir DIR] [--duration D] [--ring-timeout D] [--json]
  hush [--server URL] [--home DIR] answer [--auto] [--wait D] [--relay-only] [--audio-in F.ogg] [--video-in F.ivf]
                                   [--record-dir DIR] [--ring-timeout D] [--json]

--server defaults to $HUSH_SERVER, else the server the home registered with,
else ` + DefaultServer + `.
--home defaults to $HUSH_HOME, else $XDG_DATA_HOME/hush (~/.local/share/hush).
One home is one device.
`

// usageError is a command-line mistake: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// cmd is one invocation's parsed global options.
type cmd struct {
	env      Env
	server   string // explicit --server or $HUSH_SERVER; "" if neither
	home     string
	stdout   *lockedWriter
	warnings int
}

// Run runs hush with args (without the program name) and returns the
// exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	c := &cmd{env: env, stdout: &lockedWriter{w: env.Stdout}}
	err := c.run(ctx, args)
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errReported):
		return exitError
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(env.Stdout, usageText)
		return exitOK
	case errors.As(err, &ue):
		c.errorf("%s (see \"hush help\")", ue.msg)
		return exitUsage
	default:
		c.errorf("%s", c.describe(err))
		return exitError
	}
}

// errorf writes one "hush: " line to stderr.
func (c *cmd) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
	fmt.Fprintf(c.env.Stderr, "hush: %s\n", msg)
}

// warn reports a problem that does not stop the command.
func (c *cmd) warn(err error) {
	c.warnings++
	c.errorf("%s", c.describe(err))
}

func (c *cmd) run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hush", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	server := fs.String("server", "", "server URL")
	home := fs.String("home", "", "home directory (one home = one device)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	c.server = *server
	if c.server == "" {
		c.server = c.env.Getenv("HUSH_SERVER")
	}
	c.home = *home
	if c.home == "" {
		c.home = defaultHome(c.env.Getenv)
	}
	if c.home == "" {
		return errors.New("no home directory: set --home or $HUSH_HOME")
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usagef("no command given")
	}
	name, rest := rest[0], rest[1:]
	switch name {
	case "serve":
		return c.serve(ctx, rest)
	case "register":
		return c.register(ctx, rest)
	case "whoami":
		return c.whoami(ctx, rest)
	case "send":
		return c.send(ctx, rest)
	case "recv":
		return c.recv(ctx, rest)
	case "chat":
		return c.chat(ctx, rest)
	case "requests":
		return c.requests(ctx, rest)
	case "accept":
		return c.accept(ctx, rest)
	case "block":
		return c.block(ctx, rest, true)
	case "unblock":
		return c.block(ctx, rest, false)
	case "contacts":
		return c.contacts(ctx, rest)
	case "safety":
		return c.safety(ctx, rest)
	case "verify":
		return c.verify(ctx, rest)
	case "trust":
		return c.trust(ctx, rest)
	case "identity":
		return c.identity(ctx, rest)
	case "link":
		return c.link(ctx, rest)
	case "devices":
		return c.devices(ctx, rest)
	case "recovery-key":
		return c.recoveryKey(ctx, rest)
	case "restore":
		return c.restore(ctx, rest)
	case "bench":
		return c.bench(ctx, rest)
	case "group":
		return c.group(ctx, rest)
	case "reply":
		return c.reply(ctx, rest)
	case "react":
		return c.react(ctx, rest)
	case "edit":
		return c.edit(ctx, rest)
	case "delete":
		return c.deleteMessage(ctx, rest)
	case "read":
		return c.read(ctx, rest)
	case "timer":
		return c.timer(ctx, rest)
	case "call":
		return c.callCmd(ctx, rest)
	case "answer":
		return c.answer(ctx, rest)
	case "help", "-h", "--help":
		return flag.ErrHelp
	}
	return usagef("unknown command %q", name)
}

// defaultHome is $HUSH_HOME, else $XDG_DATA_HOME/hush, else
// ~/.local/share/hush.
func defaultHome(getenv func(string) string) string {
	if h := getenv("HUSH_HOME"); h != "" {
		return h
	}
	if x := getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "hush")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "share", "hush")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "hush")
	}
	return ""
}

// newFlags makes a subcommand's flag set.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	return nil
}

// open opens the home's client. Problems of older queued messages are
// reported as warnings.
func (c *cmd) open() (*client.Client, error) {
	return client.New(client.Config{Home: c.home, Server: c.server, Warn: c.warn})
}

// openAccount opens the home and requires a registered account.
func (c *cmd) openAccount() (*client.Client, client.Info, error) {
	cl, err := c.open()
	if err != nil {
		return nil, client.Info{}, err
	}
	info, err := cl.Info()
	if err != nil {
		cl.Close()
		return nil, client.Info{}, err
	}
	return cl, info, nil
}
