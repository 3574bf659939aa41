package server_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/hush-chat/hush/internal/server"
	"github.com/hush-chat/hush/internal/server/pow"
)

// What `hush serve` does: serve until SIGINT or SIGTERM, then drain.
func ExampleServer_ListenAndServe() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(server.Config{
		Listen:  "127.0.0.1:8090",
		DataDir: "./hush-data",
		PowBits: pow.DefaultBits,
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		slog.Error("start", "err", err)
		os.Exit(1)
	}
	if err := srv.ListenAndServe(ctx); err != nil {
		slog.Error("serve", "err", err)
		os.Exit(1)
	}
}
