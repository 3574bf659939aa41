package cli

import (
	"context"
	"log/slog"

	"github.com/hush-chat/hush/internal/server"
	"github.com/hush-chat/hush/internal/server/pow"
)

func (c *cmd) serve(ctx context.Context, args []string) error {
	fs := newFlags("serve")
	listen := fs.String("listen", "127.0.0.1:8090", "address to listen on (port 0 picks one)")
	data := fs.String("data", "./hush-data", "data directory (database and server key)")
	powBits := fs.Int("pow-bits", pow.DefaultBits, "registration proof-of-work difficulty in bits (0 turns it off)")
	cert := fs.String("tls-cert", "", "TLS certificate file (PEM)")
	key := fs.String("tls-key", "", "TLS private key file (PEM)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("serve takes only flags")
	}
	if (*cert == "") != (*key == "") {
		return usagef("serve: --tls-cert and --tls-key go together")
	}
	if *powBits < 0 || *powBits > pow.MaxBits {
		return usagef("serve: --pow-bits must be 0 to %d", pow.MaxBits)
	}
	srv, err := server.New(server.Config{
		Listen:  *listen,
		DataDir: *data,
		PowBits: *powBits,
		TLSCert: *cert,
		TLSKey:  *key,
		Logger:  slog.New(slog.NewTextHandler(c.env.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx)
}
