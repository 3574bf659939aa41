package client

import (
	"context"

	"github.com/hush-chat/hush/internal/identity"
)

// CheckUser asks the server for username's account and verifies it as
// Send would: *NoUserError if it does not exist, *KeyChangedError if its
// account key is not the one seen before.
func (c *Client) CheckUser(ctx context.Context, username string) error {
	user, err := identity.NormalizeUsername(username)
	if err != nil {
		return err
	}
	cn, err := c.connection(ctx)
	if err != nil {
		return err
	}
	_, err = c.fetchPeer(ctx, cn, user)
	return err
}
