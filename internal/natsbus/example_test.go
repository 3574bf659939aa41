package natsbus_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/hush-chat/hush/internal/natsbus"
	"github.com/hush-chat/hush/internal/store"
)

// Two server nodes share wake-ups through NATS: a message stored by one
// node wakes the recipient's connection on the other.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	node1, err := natsbus.New(ctx, "nats://127.0.0.1:4222", logger)
	if err != nil {
		logger.Error("nats", "err", err)
		return
	}
	defer node1.Close()
	node2, err := natsbus.New(ctx, "nats://127.0.0.1:4222", logger)
	if err != nil {
		logger.Error("nats", "err", err)
		return
	}
	defer node2.Close()

	bob := store.DeviceRef{Username: "bob", ID: 1}
	cancelWake := node2.Subscribe(bob, func() {
		// Must return quickly: start (or nudge) the worker that reads
		// bob's queue from the store and pushes it.
	})
	defer cancelWake()

	// After storing a message for bob:
	node1.Publish(bob)
}
