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
	// alice is not one of bob's contacts yet: her first message is a
	// message request, shown once bob accepts it.
	err = bob.Receive(ctx, 0, func(e client.Event) {
		if r, ok := e.(*client.RequestEvent); ok {
			fmt.Printf("message request from %s\n", r.From)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	pending, err := bob.Accept(ctx, "alice")
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range pending {
		fmt.Printf("%s/%d: %s\n", m.Peer, m.Device, m.Text)
	}
	// Output:
	// message request from alice
	// alice/1: hello bob
}
