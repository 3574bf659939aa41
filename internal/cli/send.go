package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hush-chat/hush/client"
)

// sendTimeout bounds one send, outbox included; past it the message stays
// queued.
const sendTimeout = time.Minute

func (c *cmd) send(ctx context.Context, args []string) error {
	fs := newFlags("send")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return usagef("send takes USERNAME and TEXT")
	}
	to := fs.Arg(0)
	text := strings.Join(fs.Args()[1:], " ")
	if fs.NArg() == 2 && text == "-" {
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
	_, err = cl.Send(ctx, to, text)
	return err
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
