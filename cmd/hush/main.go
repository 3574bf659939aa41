// Command hush is the Hush messenger: the server (hush serve) and a
// command-line client. See "hush help".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hush-chat/hush/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.OSEnv())
	stop()
	os.Exit(code)
}
