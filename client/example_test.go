package client_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"

	"github.com/hush-chat/hush/client"
	"github.com/hush-chat/hush/internal/server"
)

// Two people register on a server and exchange a message. Each Client
// is one device with its own home directory.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "hush-example-")
	defer os.RemoveAll(dir)

	// A server on a loopback port (normally: hush serve).
	srv, err := server.New(server.Config{DataDir: dir + "/server"})
	if err != nil {
		log.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- srv.Serve(sctx, ln) }()
	defer func() { stop(); <-done }()
	url := "http://" + ln.Addr().String()

	alice, _ := client.Open(dir + "/alice")
	defer alice.Close()
	bob, _ := client.Open(dir + "/bob")
	defer bob.Close()
	if err := alice.Register(ctx, url, "alice"); err != nil {
		log.Fatal(err)
	}
	if err := bob.Register(ctx, url, "bob"); err != nil {
		log.Fatal(err)
	}

	if _, err := alice.Send(ctx, "bob", "hello bob"); err != nil {
		log.Fatal(err)
	}
	err = bob.Receive(ctx, 0, func(e client.Event) {
		if m, ok := e.(*client.MessageEvent); ok {
			fmt.Printf("%s/%d: %s\n", m.From, m.Device, m.Text)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output: alice/1: hello bob
}
