package natsbus

import (
	"bytes"
	"fmt"
)

// Control events ("device list changed", "disconnect device") travel like
// wake-ups but carry data, under "<prefix>.ctl.<subject>", and have no
// spurious deliveries since a handler could not tell them from real ones.

// MaxControlData bounds a control event's data; events name things (a
// user, a device), they do not carry content. It is far below NATS's
// default 1 MiB payload limit.
const MaxControlData = 64 << 10

// PublishControl sends data to the SubscribeControl handlers of subject
// on every node (subject "<prefix>.ctl.<subject>"). Like Publish it never
// blocks, delivers locally while the connection is down, and may lose or
// (around a reconnect) duplicate a message, so handlers must be
// idempotent and the store must stay the truth. data is copied.
func (b *Bus) PublishControl(subject string, data []byte) error {
	if err := checkSubject(subject); err != nil {
		return fmt.Errorf("natsbus: control subject: %w", err)
	}
	if len(data) > MaxControlData {
		return fmt.Errorf("natsbus: control data is %d bytes, more than %d", len(data), MaxControlData)
	}
	b.publish(b.ctlBase+subject, bytes.Clone(data))
	return nil
}

// SubscribeControl calls fn with the data of each PublishControl for
// subject until cancel is called. fn must return quickly, must not call
// the Bus, and must not keep or modify data (handlers share it). Unlike
// wake-ups, control handlers are never called spuriously.
func (b *Bus) SubscribeControl(subject string, fn func(data []byte)) (cancel func(), err error) {
	if err := checkSubject(subject); err != nil {
		return nil, fmt.Errorf("natsbus: control subject: %w", err)
	}
	return b.subscribe(b.ctlBase+subject, false, fn), nil
}
