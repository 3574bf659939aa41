package sealed_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/internal/ratchet/ratchettest"
	"github.com/hush-chat/hush/internal/sealed"
)

func FuzzParseCertificate(f *testing.F) {
	srv, _ := keys.GenerateServer()
	d, err := ratchettest.NewDevice("alice", 1, 0)
	if err != nil {
		f.Fatal(err)
	}
	c, _ := sealed.IssueCertificate(srv, "alice", 1, d.Identity.Public(), d.Signing.Public(), time.Unix(2e9, 0))
	b, _ := c.Marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := sealed.ParseCertificate(data)
		if err != nil {
			return
		}
		out, err := c.Marshal()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("accepted certificate does not re-encode: %v", err)
		}
		_ = c.Verify(srv.Public(), time.Unix(1e9, 0))
	})
}

func FuzzOpenEnvelope(f *testing.F) {
	srv, _ := keys.GenerateServer()
	d, err := ratchettest.NewDevice("bob", 1, 0)
	if err != nil {
		f.Fatal(err)
	}
	c, _ := sealed.IssueCertificate(srv, "bob", 1, d.Identity.Public(), d.Signing.Public(), time.Unix(2e9, 0))
	env, err := sealed.Seal(d.Identity.Public(), c, []byte("\x01\x01not really a ratchet message, but opaque here"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add(env[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := sealed.Open(d.Identity, data, srv.Public(), time.Unix(1.9e9, 0))
		if err == nil && (o.Certificate == nil || len(o.Message) == 0) {
			t.Fatal("opened an envelope with nothing inside")
		}
	})
}
