package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/ratchet"
	"github.com/hush-chat/hush/wire"
)

// readLoop reads every frame of the connection: replies to this user's
// requests (id > 0) and pushes (id 0). It never writes; acks go through
// the writer.
func (u *vuser) readLoop(ctx context.Context) {
	defer close(u.done)
	r := u.r
	for {
		typ, b, err := u.conn.Read(ctx)
		if err != nil {
			if !u.isClosing() && ctx.Err() == nil {
				r.fail("connection", fmt.Sprintf("%s: read: %v", u.name, err))
			}
			return
		}
		var f wire.ServerFrame
		if typ != websocket.MessageBinary || proto.Unmarshal(b, &f) != nil {
			r.fail("bad_frame", u.name+": a frame that is not a ServerFrame")
			continue
		}
		if f.Id != 0 {
			req, ok := u.untrack(f.Id)
			if !ok {
				r.fail("bad_frame", fmt.Sprintf("%s: reply to unknown request %d", u.name, f.Id))
				continue
			}
			u.answer(req, &f)
			continue
		}
		switch body := f.Body.(type) {
		case *wire.ServerFrame_Envelope:
			u.deliver(body.Envelope)
		case *wire.ServerFrame_QueueEmpty:
			u.emptyOnce.Do(func() { close(u.queueEmpty) })
		case *wire.ServerFrame_PrekeyCounts:
			// A low count; the bench uploads enough for its handshakes.
		case *wire.ServerFrame_Error:
			r.fail("server_error", fmt.Sprintf("%s: %s", u.name, describeFrame(&f)))
		default:
			r.fail("bad_frame", fmt.Sprintf("%s: unexpected push %T", u.name, f.Body))
		}
	}
}

// answer handles the reply to one of this user's requests.
func (u *vuser) answer(req request, f *wire.ServerFrame) {
	r := u.r
	switch req.kind {
	case reqSend:
		ok := f.GetSent().GetStored()
		if req.seq > 0 {
			req.edge.answered(req.seq, ok)
			r.answered.Add(1)
			if ok {
				r.stored.Add(1)
			}
			<-u.window
		}
		if !ok {
			why := describeFrame(f)
			if s := f.GetSent(); s != nil {
				why = fmt.Sprintf("not stored (missing devices %v, extra %v)", s.MissingDevices, s.ExtraDevices)
			}
			r.fail("send_refused", fmt.Sprintf("send from %s: %s", u.name, why))
		}
	case reqAck:
		if f.GetAcked() == nil {
			r.fail("ack_refused", fmt.Sprintf("ack from %s: %s", u.name, describeFrame(f)))
		}
	case reqCall:
		req.reply <- f
	}
}

// deliver counts, decrypts, checks and acknowledges one envelope.
func (u *vuser) deliver(env *wire.Envelope) {
	r := u.r
	u.queueAck(env.ServerId)
	id, err := parseMsgID(env.MessageId)
	if err != nil || id.run != r.runTag || int(id.to) != u.idx {
		r.fail("foreign_envelope", fmt.Sprintf("%s: an envelope the bench did not send", u.name))
		return
	}
	p := u.peers[int(id.from)]
	if p == nil || env.Sender != p.u.name || env.SenderDevice != p.u.dev.ID {
		r.fail("foreign_envelope", fmt.Sprintf("%s: an envelope from an unexpected sender", u.name))
		return
	}
	first := false
	if id.seq > 0 {
		// Counted before decrypting: a second copy of a ciphertext is a
		// duplicate whatever the ratchet says about it.
		var known bool
		if first, known = p.in.received(id.seq); first {
			r.delivered.Add(1)
			r.noteDelivery(r.since())
		} else if !known {
			return // a phantom; the ledger counts it
		}
	}
	p.mu.Lock()
	d, err := p.rec.DecryptFrom(u.dev.Responder(), p.u.name, p.u.dev.Identity.Public(), env.Content)
	if err == nil && d.NewSession {
		u.dev.Consume(d.Prekeys)
	}
	p.mu.Unlock()
	at := r.since()
	if err != nil {
		if errors.Is(err, ratchet.ErrDuplicate) && id.seq > 0 && !first {
			return // the ledger already counts the duplicate
		}
		r.fail("decrypt", fmt.Sprintf("%s from %s: %v", u.name, p.u.name, err))
		return
	}
	pl, err := parsePayload(d.Plaintext)
	if err != nil || pl.from != id.from || pl.to != id.to || pl.seq != id.seq {
		r.fail("bad_payload", fmt.Sprintf("%s from %s: the plaintext does not match the message id", u.name, p.u.name))
		return
	}
	if id.seq == 0 {
		if p.in.helloSeen.CompareAndSwap(false, true) {
			r.hellos.Add(1)
		}
		return
	}
	if first {
		r.hist.record(at - pl.sent)
	}
}
