package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/hush-chat/hush/client"
)

// describe turns an error into the one line a person sees after "hush: ",
// saying what happened and, where there is one, what to do.
func (c *cmd) describe(err error) string {
	var (
		queued  *client.QueuedError
		unreach *client.UnreachableError
		// keyChanged: a peer's safety number changed (trust.go).
		keyChanged *client.KeyChangedError
	)
	switch {
	case errors.As(err, &queued):
		if errors.Is(queued.Err, context.Canceled) {
			return "interrupted; message kept in outbox"
		}
		if errors.As(queued.Err, &unreach) {
			return fmt.Sprintf("server unreachable at %s; message kept in outbox", unreach.URL)
		}
		return c.describe(queued.Err) + "; message kept in outbox"
	case errors.As(err, &unreach):
		if errors.Is(unreach.Err, context.DeadlineExceeded) {
			return fmt.Sprintf("server at %s did not answer in time; try again later", unreach.URL)
		}
		return fmt.Sprintf("server unreachable at %s; check the address (--server) and that hush serve runs there", unreach.URL)
	case errors.Is(err, client.ErrNoAccount):
		return fmt.Sprintf("no account in %s; run \"hush register USERNAME\" first (or pass --home)", c.home)
	case errors.Is(err, client.ErrHasAccount):
		return fmt.Sprintf("%v in %s; use --home DIR for another account or device", err, c.home)
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.As(err, &keyChanged):
		return describeKeyChange(keyChanged) // client/trust.go
	}
	return err.Error()
}
