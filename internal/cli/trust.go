package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"

	"github.com/hush-chat/hush/client"
)

// Safety numbers and key changes (issue 5):
//
//	hush safety USERNAME           (first line: the number; then a QR code)
//	hush verify USERNAME [NUMBER]  (NUMBER: the 60 digits, spaces allowed)
//	hush trust USERNAME
//	hush identity reset

// trustTimeout bounds a safety-number command, a key reset included.
const trustTimeout = time.Minute

// describeKeyChange is what send (and anything else refused because of
// it) says when a peer's account key changed.
func describeKeyChange(kc *client.KeyChangedError) string {
	how := fmt.Sprintf("compare it with \"hush safety %s\", then run \"hush trust %s\"", kc.Username, kc.Username)
	if kc.Verified {
		return fmt.Sprintf("WARNING: %s's verified safety number changed; %s", kc.Username, how)
	}
	return fmt.Sprintf("safety number with %s changed; %s", kc.Username, how)
}

// safetyQR draws the scannable payload as a terminal QR code.
func safetyQR(w io.Writer, payload string) {
	qrterminal.GenerateWithConfig(payload, qrterminal.Config{
		Level:          qrterminal.L,
		Writer:         w,
		HalfBlocks:     true,
		BlackChar:      qrterminal.BLACK_BLACK,
		WhiteBlackChar: qrterminal.WHITE_BLACK,
		WhiteChar:      qrterminal.WHITE_WHITE,
		BlackWhiteChar: qrterminal.BLACK_WHITE,
		QuietZone:      2,
	})
}

func (c *cmd) safety(ctx context.Context, args []string) error {
	user, err := c.oneUser("safety", args)
	if err != nil {
		return err
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, trustTimeout)
	defer cancel()
	sn, err := cl.Safety(ctx, user)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, sn.Number)
	var qr strings.Builder
	safetyQR(&qr, sn.Scannable)
	fmt.Fprint(c.stdout, qr.String())
	switch {
	case sn.KeyChanged && sn.WasVerified:
		c.errorf("WARNING: %s's verified safety number changed; this is the NEW number; compare it with %s, then run \"hush trust %s\"", sn.Username, sn.Username, sn.Username)
	case sn.KeyChanged:
		c.errorf("the safety number with %s changed; this is the NEW number; compare it with %s, then run \"hush trust %s\"", sn.Username, sn.Username, sn.Username)
	case sn.Verified:
		fmt.Fprintf(c.stdout, "%s is verified\n", sn.Username)
	default:
		fmt.Fprintf(c.stdout, "compare this number with %s's (in person, or scan their code), then run \"hush verify %s\"\n", sn.Username, sn.Username)
	}
	return nil
}

func (c *cmd) verify(ctx context.Context, args []string) error {
	fs := newFlags("verify")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return usagef("verify takes USERNAME and, optionally, the NUMBER to compare")
	}
	user := fs.Arg(0)
	// The number may come as one argument or as its twelve groups.
	number := strings.Join(fs.Args()[1:], " ")
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, trustTimeout)
	defer cancel()
	if err := cl.Verify(ctx, user, number); err != nil {
		return err
	}
	if number != "" {
		fmt.Fprintf(c.stdout, "the safety numbers match; %s is verified\n", user)
	} else {
		fmt.Fprintf(c.stdout, "%s is verified\n", user)
	}
	return nil
}

func (c *cmd) trust(ctx context.Context, args []string) error {
	user, err := c.oneUser("trust", args)
	if err != nil {
		return err
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, trustTimeout)
	defer cancel()
	changed, err := cl.Trust(ctx, user)
	if err != nil {
		return err
	}
	if !changed {
		fmt.Fprintf(c.stdout, "the safety number with %s has not changed; nothing to accept\n", user)
		return nil
	}
	fmt.Fprintf(c.stdout, "accepted %s's new account key; messages to %s are sent again (not verified: compare \"hush safety %s\")\n", user, user, user)
	return nil
}

func (c *cmd) identity(ctx context.Context, args []string) error {
	fs := newFlags("identity")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) != "reset" {
		return usagef("identity takes one subcommand: reset")
	}
	cl, _, err := c.openAccount()
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, trustTimeout)
	defer cancel()
	if err := cl.ResetIdentity(ctx); err != nil {
		if errors.Is(err, client.ErrNotPrimary) {
			return errors.New("only the primary device can reset the account key")
		}
		return err
	}
	info, err := cl.Info()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "new account key for %s\naccount key fingerprint: %s\n", info.Username, info.Fingerprint)
	fmt.Fprintf(c.stdout, "your contacts will see your safety number change; your recovery key changed too (\"hush recovery-key\")\n")
	return nil
}
