package client

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// firstDeviceID is the id of an account's first device.
const firstDeviceID = 1

// maxHTTPBody bounds what we read from an HTTP answer.
const maxHTTPBody = 1 << 20

// Register creates the account username on the server at serverURL with
// this home as its first device (docs/protocol.md §9.2): it makes the
// account key, the device keys and PrekeyTarget one-time prekeys of each
// kind, solves the server's proof of work and stores everything locally.
//
// The keys are committed locally before the request is sent. If the answer
// is lost, calling Register again with the same name finds out whether the
// server took it (by authenticating with those keys) instead of losing the
// account.
func (c *Client) Register(ctx context.Context, serverURL, username string) error {
	c.mu.Lock()
	a := c.acct
	c.mu.Unlock()
	if a != nil && a.Registered {
		return fmt.Errorf("%w (%s)", ErrHasAccount, a.Username)
	}
	user, err := identity.NormalizeUsername(username)
	if err != nil {
		return err
	}
	if identity.IsReserved(user) {
		return fmt.Errorf("%w: %q is reserved", identity.ErrBadUsername, user)
	}
	u, err := parseServerURL(serverURL)
	if err != nil {
		return err
	}
	serverURL = strings.TrimSuffix(u.String(), "/")

	var info wire.ServerInfo
	if err := c.httpGet(ctx, serverURL, "/v1/info", &info); err != nil {
		return err
	}
	serverKey, err := verifyServerKey(info.GetServerKey())
	if err != nil {
		return err
	}
	if a != nil && (a.Username != user || a.ServerURL != serverURL) {
		// An unfinished registration of another name: start over.
		if err := c.forgetPending(ctx); err != nil {
			return err
		}
		a = nil
	}
	var upload *wire.PrekeyUpload
	if a == nil {
		if a, upload, err = c.createPending(ctx, serverURL, user, serverKey); err != nil {
			return err
		}
	} else if upload, err = c.pendingUpload(ctx, a); err != nil {
		return err
	}
	list, err := a.DeviceList.Marshal()
	if err != nil {
		return err
	}

	var pow wire.PowChallenge
	if err := c.httpGet(ctx, serverURL, "/v1/pow", &pow); err != nil {
		return err
	}
	nonce, err := solvePow(ctx, pow.GetChallenge(), user, pow.GetBits())
	if err != nil {
		return err
	}
	req := &wire.RegisterRequest{
		Username:     user,
		AccountKey:   a.AccountKey.Public().Bytes(),
		DeviceList:   list,
		Prekeys:      upload,
		PowChallenge: pow.GetChallenge(),
		PowNonce:     nonce,
	}
	var resp wire.RegisterResponse
	err = c.httpPost(ctx, serverURL, "/v1/register", req, &resp)
	var se *ServerError
	if errors.As(err, &se) && se.Code == "username_taken" {
		// Perhaps an earlier attempt of ours succeeded and its answer was
		// lost: if these keys authenticate, the account is ours.
		if cn, derr := dial(ctx, c.http, serverURL, a, false); derr == nil {
			cn.close()
			return c.markRegistered(ctx, a)
		}
		if ferr := c.forgetPending(ctx); ferr != nil {
			return ferr
		}
		return fmt.Errorf("username %q is taken; choose another", user)
	}
	if err != nil {
		if !isTransient(err) {
			// Refused for good (bad name, bad proof of work...): do not keep
			// keys for an account that does not exist.
			if ferr := c.forgetPending(ctx); ferr != nil {
				return ferr
			}
		}
		return err
	}
	if len(resp.GetServerKey()) > 0 && !bytes.Equal(resp.GetServerKey(), serverKey.Bytes()) {
		return fmt.Errorf("%w: the server key in the registration answer differs from /v1/info", ErrProtocol)
	}
	return c.markRegistered(ctx, a)
}

// createPending makes and stores all keys for a new registration.
func (c *Client) createPending(ctx context.Context, serverURL, user string, serverKey keys.ServerPublic) (*account, *wire.PrekeyUpload, error) {
	a := &account{Username: user, DeviceID: firstDeviceID, ServerURL: serverURL, ServerKey: serverKey}
	var err error
	if a.AccountKey, err = keys.GenerateAccount(); err != nil {
		return nil, nil, err
	}
	a.AccountPub = a.AccountKey.Public()
	if a.Signing, err = keys.GenerateDeviceSigning(); err != nil {
		return nil, nil, err
	}
	if a.Identity, err = keys.GenerateIdentity(); err != nil {
		return nil, nil, err
	}
	a.DeviceList, err = identity.SignDeviceList(identity.DeviceList{
		Username: user,
		Version:  1,
		Devices:  []identity.Device{{ID: firstDeviceID, SigningKey: a.Signing.Public(), IdentityKey: a.Identity.Public()}},
	}, a.AccountKey)
	if err != nil {
		return nil, nil, err
	}
	list, err := a.DeviceList.Marshal()
	if err != nil {
		return nil, nil, err
	}
	batch, err := newPrekeyBatch(1, PrekeyTarget, PrekeyTarget, true, true)
	if err != nil {
		return nil, nil, err
	}
	now := c.now()
	err = inTx(ctx, c.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO account (id, username, device_id, server_url, server_key,
			account_key, signing_key, identity_key, device_list, next_prekey_id, registered, created_ms)
			VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?)`,
			a.Username, a.DeviceID, a.ServerURL, a.ServerKey.Bytes(), a.AccountKey.Bytes(), a.Signing.Bytes(),
			a.Identity.Bytes(), list, now.UnixMilli()); err != nil {
			return &localError{err}
		}
		return batch.save(ctx, tx, now)
	})
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	c.acct = a
	c.mu.Unlock()
	return a, merged(batch.uploads(a.Signing, a.Identity.Public())), nil
}

// pendingUpload rebuilds the registration's prekey upload from the stored
// private keys of an unfinished registration.
func (c *Client) pendingUpload(ctx context.Context, a *account) (*wire.PrekeyUpload, error) {
	b := &prekeyBatch{}
	load := func(query string, f func(id uint32, priv []byte) error) error {
		rows, err := c.db.QueryContext(ctx, query)
		if err != nil {
			return &localError{err}
		}
		defer rows.Close()
		for rows.Next() {
			var id uint32
			var priv []byte
			if err := rows.Scan(&id, &priv); err != nil {
				return &localError{err}
			}
			if err := f(id, priv); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	err := load(`SELECT id, private FROM signed_prekeys ORDER BY id DESC LIMIT 1`, func(id uint32, p []byte) (err error) {
		b.signedID = id
		b.signed, err = keys.ParseSignedPrekeyPrivate(p)
		return err
	})
	if err == nil {
		err = load(`SELECT id, private FROM one_time_prekeys ORDER BY id`, func(id uint32, p []byte) error {
			k, err := keys.ParseOneTimePrekeyPrivate(p)
			b.oneTime = append(b.oneTime, otkPair{id, k})
			return err
		})
	}
	if err == nil {
		err = load(`SELECT id, private FROM kem_prekeys ORDER BY id`, func(id uint32, p []byte) error {
			k, err := keys.ParseKEMPrivate(p)
			if err != nil {
				return err
			}
			if k.LastResort() {
				b.lastID, b.lastResort = id, k
			} else {
				b.kem = append(b.kem, kemPair{id, k})
			}
			return nil
		})
	}
	if err != nil {
		return nil, err
	}
	if b.signed.IsZero() || b.lastResort.IsZero() {
		return nil, errors.New("client: the unfinished registration in this home lost its prekeys; use a new home")
	}
	return merged(b.uploads(a.Signing, a.Identity.Public())), nil
}

func (c *Client) markRegistered(ctx context.Context, a *account) error {
	if _, err := c.db.ExecContext(ctx, `UPDATE account SET registered = 1 WHERE id = 1`); err != nil {
		return &localError{err}
	}
	// The own device list is verified like a peer's (client/devices.go).
	if err := ensureSelfPeer(ctx, c.db, a, c.now()); err != nil {
		return err
	}
	c.mu.Lock()
	a.Registered = true
	c.acct = a
	c.mu.Unlock()
	return nil
}

// forgetPending deletes an unfinished registration's keys.
func (c *Client) forgetPending(ctx context.Context) error {
	err := inTx(ctx, c.db, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM account WHERE registered = 0`,
			`DELETE FROM signed_prekeys`, `DELETE FROM one_time_prekeys`, `DELETE FROM kem_prekeys`,
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return &localError{err}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.acct = nil
	c.mu.Unlock()
	return nil
}

func (c *Client) httpGet(ctx context.Context, server, path string, out proto.Message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+path, nil)
	if err != nil {
		return err
	}
	return c.httpDo(req, server, out)
}

func (c *Client) httpPost(ctx context.Context, server, path string, in, out proto.Message) error {
	body, err := proto.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	return c.httpDo(req, server, out)
}

// httpDo runs a request whose answer is a protobuf message, or a protobuf
// Error with a 4xx/5xx status.
func (c *Client) httpDo(req *http.Request, server string, out proto.Message) error {
	return doProto(c.http, req, server, out)
}

// doProto is httpDo with a given HTTP client (sealed sends use one that
// never reuses connections).
func doProto(hc *http.Client, req *http.Request, server string, out proto.Message) error {
	req.Header.Set("Accept", "application/x-protobuf")
	resp, err := hc.Do(req)
	if err != nil {
		return &UnreachableError{URL: server, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		return &UnreachableError{URL: server, Err: err}
	}
	if len(body) > maxHTTPBody {
		return fmt.Errorf("%w: answer to %s is over %d bytes", ErrProtocol, req.URL.Path, maxHTTPBody)
	}
	if resp.StatusCode != http.StatusOK {
		var e wire.Error
		if proto.Unmarshal(body, &e) == nil && e.GetCode() != "" {
			return &ServerError{Code: e.GetCode(), Message: e.GetMessage()}
		}
		if resp.StatusCode >= 500 {
			return &ServerError{Code: "internal", Message: fmt.Sprintf("%s answered HTTP %d", req.URL.Path, resp.StatusCode)}
		}
		return fmt.Errorf("%w: %s answered HTTP %d", ErrProtocol, req.URL.Path, resp.StatusCode)
	}
	if err := proto.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%w: malformed answer to %s: %v", ErrProtocol, req.URL.Path, err)
	}
	return nil
}
