package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/hush-chat/hush/internal/server"
	"github.com/hush-chat/hush/internal/server/pow"
	"github.com/hush-chat/hush/internal/turnrelay"
)

func (c *cmd) serve(ctx context.Context, args []string) error {
	fs := newFlags("serve")
	listen := fs.String("listen", "127.0.0.1:8090", "address to listen on (port 0 picks one)")
	data := fs.String("data", "./hush-data", "data directory (database and server key)")
	powBits := fs.Int("pow-bits", pow.DefaultBits, "registration proof-of-work difficulty in bits (0 turns it off)")
	cert := fs.String("tls-cert", "", "TLS certificate file (PEM)")
	key := fs.String("tls-key", "", "TLS private key file (PEM)")
	var bf backendFlags
	fs.StringVar(&bf.db, "db", "", "PostgreSQL URL (postgres://…) shared by every node; default: SQLite in --data")
	fs.StringVar(&bf.nats, "nats", "", "NATS URL(s), comma-separated, for wake-ups and events between nodes (needs --db)")
	fs.StringVar(&bf.natsPrefix, "nats-prefix", "hush", "first token of this deployment's NATS subjects")
	fs.StringVar(&bf.serverKey, "server-key", "", "server key file, the same on every node (created if missing); default: server.key in --data")
	blobDir := fs.String("blob-dir", "", "directory for encrypted file blobs, shared by every node (default: blobs in --data)")
	maxFile := fs.Int64("max-file-size", server.DefaultMaxFileSize, "largest encrypted file upload in bytes (ciphertext)")
	var tf turnFlags
	tf.register(fs)
	noLimits := fs.Bool("no-rate-limits", false, "turn off every abuse limit (rate limits and the per-address connection cap); for load tests such as hush bench only")
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
	if *maxFile <= 0 {
		return usagef("serve: --max-file-size must be positive")
	}
	if err := bf.check(); err != nil {
		return err
	}
	turnCfg, err := tf.config()
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(c.env.Stderr, nil))
	var limits server.Limits // zero: the production defaults
	if *noLimits {
		limits = server.Unlimited()
		logger.Warn("abuse limits are off (--no-rate-limits): for load tests only, never on a public address")
	}
	be, err := openBackends(ctx, bf, logger)
	if err != nil {
		return err
	}
	defer be.close()
	cfg := be.cfg
	cfg.Listen, cfg.DataDir, cfg.PowBits = *listen, *data, *powBits
	cfg.TLSCert, cfg.TLSKey = *cert, *key
	cfg.Logger, cfg.Limits = logger, limits
	cfg.BlobDir, cfg.MaxFileSize = *blobDir, *maxFile
	cfg.TURN = turnCfg
	srv, err := server.New(cfg)
	if err != nil {
		if errors.Is(err, turnrelay.ErrListen) && errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w (is another TURN server running? give --turn-listen another address, or --turn-listen off)", err)
		}
		return err
	}
	return srv.ListenAndServe(ctx)
}
