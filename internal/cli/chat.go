package cli

import (
	"bufio"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/internal/identity"
)

// errReported ends a command with exit code 1 after its problems were
// already printed.
var errReported = errors.New("reported")

// Reconnection backoff of the live receiving loop.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

func (c *cmd) chat(ctx context.Context, args []string) error {
	fs := newFlags("chat")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("chat takes one USERNAME or GROUP")
	}
	cl, info, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	conv, err := resolveConv(ctx, cl, fs.Arg(0))
	if err != nil {
		return err
	}
	title := conv
	if g, err := cl.FindGroup(ctx, fs.Arg(0)); err == nil && conv == client.GroupConversation(g.ID) {
		title = "#" + g.Name
	} else {
		peer, err := identity.NormalizeUsername(fs.Arg(0))
		if err != nil {
			return err
		}
		if peer == info.Username {
			return errors.New("cannot chat with yourself")
		}
		// An unknown name is an error at once; an unreachable server is
		// not, the history can still be read and messages queued.
		cctx, cancel := context.WithTimeout(ctx, sendTimeout)
		err = cl.CheckUser(cctx, peer)
		cancel()
		if errors.Is(err, client.ErrNoUser) || errors.Is(err, client.ErrAccountKeyChanged) {
			return err
		}
		conv, title = peer, peer
	}
	if c.env.Interactive {
		return c.chatTUI(ctx, cl, info, conv, title)
	}
	return c.chatLines(ctx, cl, conv)
}

// listen receives live messages until ctx ends, reconnecting with
// exponential backoff and jitter (so devices dropped by a failed node do
// not all come back at once); each Receive retries the outbox first.
func (c *cmd) listen(ctx context.Context, cl *client.Client, handle func(client.Event), status func(error)) {
	backoff := minBackoff
	for {
		start := time.Now()
		err := cl.Receive(ctx, client.Forever, handle)
		if ctx.Err() != nil {
			return
		}
		status(err)
		if time.Since(start) > maxBackoff {
			backoff = minBackoff // it was connected for a while
		}
		// Wait between half and the whole backoff.
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// chatLines is chat without a terminal: each line of stdin is sent, and
// incoming messages are printed as they arrive, as recv prints them. It
// ends at the end of stdin.
func (c *cmd) chatLines(ctx context.Context, cl *client.Client, peer string) error {
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	p := printer{c: c}
	wg.Go(func() {
		c.listen(lctx, cl, p.event, func(err error) { c.errorf("%s; reconnecting", c.describe(err)) })
	})
	defer func() {
		stop()
		wg.Wait()
	}()

	lines := make(chan string)
	scanErr := make(chan error, 1)
	go func() {
		// Reading stdin cannot be interrupted; this goroutine ends with
		// the process (or when the test closes its end).
		sc := bufio.NewScanner(c.env.Stdin)
		sc.Buffer(make([]byte, 0, 64<<10), client.MaxTextSize+2)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-lctx.Done():
				return
			}
		}
		scanErr <- sc.Err()
	}()
	failed := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-scanErr:
			if err != nil {
				c.errorf("reading stdin: %v (a line may hold at most %d bytes)", err, client.MaxTextSize)
				failed = true
			}
			if failed {
				return errReported
			}
			return nil
		case line := <-lines:
			line = trimCR(line)
			if isBlank(line) {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, sendTimeout)
			_, err := cl.Send(sctx, peer, line)
			cancel()
			if err != nil {
				c.errorf("%s", c.describe(err))
				failed = true
			}
		}
	}
}

func trimCR(s string) string {
	if n := len(s); n > 0 && s[n-1] == '\r' {
		return s[:n-1]
	}
	return s
}

func isBlank(s string) bool {
	for _, r := range s {
		if r != ' ' && r != '\t' {
			return false
		}
	}
	return true
}
