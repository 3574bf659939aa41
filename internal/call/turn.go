package call

import (
	"context"
	"errors"

	"github.com/pion/webrtc/v4"

	"github.com/hush-chat/hush/client"
)

// TURNServers returns a Config.ICEServers that asks cl's server for fresh
// TURN credentials (docs/protocol.md §13.3) for each call. A server
// without a relay gives no ICE servers: direct candidates only.
func TURNServers(cl *client.Client) func(context.Context) ([]webrtc.ICEServer, error) {
	return func(ctx context.Context) ([]webrtc.ICEServer, error) {
		t, err := cl.TURNCredentials(ctx)
		if errors.Is(err, client.ErrNoTURN) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []webrtc.ICEServer{{URLs: t.URLs, Username: t.Username, Credential: t.Credential}}, nil
	}
}
