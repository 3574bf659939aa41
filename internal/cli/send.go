package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/hush-chat/hush/client"
)

// sendTimeout bounds one send, outbox included; past it the message stays
// queued.
const sendTimeout = time.Minute

func (c *cmd) send(ctx context.Context, args []string) error {
	fs := newFlags("send")
	file := fs.String("file", "", "send this file, with TEXT as an optional caption")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// "send USERNAME --file PATH TEXT" too; other text starting with "-"
	// stays text.
	if rest := fs.Args(); len(rest) > 1 && (rest[1] == "--file" || rest[1] == "-file" || strings.HasPrefix(rest[1], "--file=") || strings.HasPrefix(rest[1], "-file=")) {
		to := rest[0]
		if err := parseFlags(fs, rest[1:]); err != nil {
			return err
		}
		args = append([]string{to}, fs.Args()...)
	} else {
		args = rest
	}
	if *file != "" {
		if len(args) < 1 {
			return usagef("send --file takes USERNAME")
		}
		return c.sendFile(ctx, args[0], *file, strings.Join(args[1:], " "))
	}
	if len(args) < 2 {
		return usagef("send takes USERNAME and TEXT")
	}
	to := args[0]
	text := strings.Join(args[1:], " ")
	if len(args) == 2 && text == "-" {
		var err error
		if text, err = readText(c.env.Stdin); err != nil {
			return err
		}
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	return c.printID(cl.Send(ctx, to, text))
}

// printID prints the id of a message just sent, alone on stdout: what
// reply, react, edit and delete take as MSGID.
func (c *cmd) printID(id client.MessageID, err error) error {
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, id)
	return nil
}

// readText reads a message from r, up to one byte past the limit so an
// oversized message is reported with its size class rather than cut.
func readText(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, client.MaxTextSize+1))
	if err != nil {
		return "", fmt.Errorf("read message from stdin: %w", err)
	}
	if len(b) > client.MaxTextSize {
		return "", fmt.Errorf("message on stdin is over %d bytes, the limit", client.MaxTextSize)
	}
	s := string(b)
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	return s, nil
}

// fileTimeout bounds one file send; files are slow.
const fileTimeout = time.Hour

// sendFile uploads a file, showing progress on a terminal for files over
// 1 MiB.
func (c *cmd) sendFile(ctx context.Context, to, path, caption string) error {
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, fileTimeout)
	defer cancel()
	limitFileMemory()
	bar, done := c.progressBar("uploading")
	id, err := cl.SendFile(ctx, to, path, caption, bar)
	done()
	return c.printID(id, err)
}

// fileMemoryLimit is the Go heap's soft limit while a file is encrypted,
// uploaded, downloaded or decrypted. Those work chunk by chunk, so the
// live heap stays small whatever the file's size, but every chunk leaves
// garbage; on a busy machine the collector can fall behind and let the
// heap grow far past what is live. The limit makes it collect sooner, so
// the process stays well under 64 MiB for any file (docs/protocol.md §9.14).
const fileMemoryLimit = 32 << 20

func limitFileMemory() {
	if debug.SetMemoryLimit(-1) > fileMemoryLimit {
		debug.SetMemoryLimit(fileMemoryLimit)
	}
}

// progressBar returns a progress callback drawing one \r-updated line on
// stderr for files over 1 MiB, or nil if stderr is not a terminal; done
// ends the line if one was drawn.
func (c *cmd) progressBar(what string) (bar client.Progress, done func()) {
	f, ok := c.env.Stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, func() {}
	}
	last := -1
	return func(n, total int64) {
			if total <= 1<<20 {
				return
			}
			pct := int(n * 100 / total)
			if pct == last {
				return
			}
			last = pct
			fmt.Fprintf(f, "\r%s %3d%% (%d / %d KiB)", what, pct, n>>10, total>>10)
		}, func() {
			if last >= 0 {
				fmt.Fprintln(f)
			}
		}
}
