package natsbroker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/wsdproject/wsd/broadcast"
	"github.com/wsdproject/wsd/codec"
)

// Direct sends: each node subscribes to <prefix>.n.<its escaped id>, and
// SendTo makes a NATS request there, answered once the target node's
// Local.SendTo has taken the message.

// FormatConnID returns the cluster-wide id of connection conn of node:
// "node.conn", conn in decimal (ParseConnID reads it back).
func FormatConnID(node string, conn uint64) string {
	return node + "." + strconv.FormatUint(conn, 10)
}

// ParseConnID splits a cluster-wide connection id made by FormatConnID.
// The node id is everything before the last dot, so it may contain dots.
func ParseConnID(s string) (node string, conn uint64, err error) {
	i := strings.LastIndexByte(s, '.')
	if i <= 0 {
		return "", 0, fmt.Errorf("natsbroker: connection id %q: want node.number", s)
	}
	conn, err = strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil || conn == 0 || s[i+1] == '+' || (len(s) > i+2 && s[i+1] == '0') {
		return "", 0, fmt.Errorf("natsbroker: connection id %q: want node.number", s)
	}
	return s[:i], conn, nil
}

// ConnID returns FormatConnID(b.Node(), conn).
func (b *Broker) ConnID(conn uint64) string { return FormatConnID(b.node, conn) }

func directSubject(prefix, node string) string {
	return prefix + ".n." + EscapeToken(node)
}

// SendTo sends one message to connection conn of node (this one
// included), through that node's Local.SendTo, and waits for it to be
// taken. It returns broadcast.ErrNoConn if the node does not know the
// connection, ErrNoNode if no node has that id, ErrNoDirect if the node
// takes no direct sends, an error wrapping broadcast.ErrBrokerUnavailable
// while the connection is down, and ctx's error if the node does not
// answer within ctx (or Options.RequestTimeout when ctx has no deadline).
// op is codec.OpText or codec.OpBinary.
func (b *Broker) SendTo(ctx context.Context, node string, conn uint64, op codec.OpCode, payload []byte) error {
	if op != codec.OpText && op != codec.OpBinary {
		return fmt.Errorf("natsbroker: SendTo: opcode %v is not text or binary", op)
	}
	if node == b.node {
		f := b.loc().SendTo
		if f == nil {
			return ErrNoDirect
		}
		return f(conn, op, payload)
	}
	if !b.nc.IsConnected() {
		if b.isClosed() {
			return ErrClosed
		}
		return errNotConnected
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.opts.RequestTimeout)
		defer cancel()
	}
	req := make([]byte, 0, 2+binary.MaxVarintLen64+len(payload))
	req = append(req, wireVersion, byte(op))
	req = binary.AppendUvarint(req, conn)
	req = append(req, payload...)
	reply, err := b.nc.RequestWithContext(ctx, directSubject(b.opts.Prefix, node), req)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: %q", ErrNoNode, node)
	case ctx.Err() != nil:
		return fmt.Errorf("natsbroker: SendTo %s: %w", FormatConnID(node, conn), ctx.Err())
	case err != nil:
		return publishError(err)
	case len(reply.Data) == 0:
		return fmt.Errorf("natsbroker: SendTo %s: empty answer", FormatConnID(node, conn))
	}
	switch reply.Data[0] {
	case directOK:
		return nil
	case directNoConn:
		return fmt.Errorf("natsbroker: SendTo %s: %w", FormatConnID(node, conn), broadcast.ErrNoConn)
	case directNoHandler:
		return fmt.Errorf("%w: %q", ErrNoDirect, node)
	default:
		return fmt.Errorf("natsbroker: SendTo %s: %s", FormatConnID(node, conn), reply.Data[1:])
	}
}

// answerDirect delivers a direct send, on nats.go's goroutine for the
// subscription.
func (b *Broker) answerDirect(m *nats.Msg) {
	r := reader{b: m.Data}
	if r.u8() != wireVersion {
		b.malformed.Add(1)
		return
	}
	op := codec.OpCode(r.u8())
	conn := r.uvarint()
	if r.bad || (op != codec.OpText && op != codec.OpBinary) {
		b.malformed.Add(1)
		return
	}
	answer := []byte{directNoHandler}
	if f := b.loc().SendTo; f != nil {
		switch err := f(conn, op, r.b); {
		case err == nil:
			answer[0] = directOK
		case errors.Is(err, broadcast.ErrNoConn):
			answer[0] = directNoConn
		default:
			answer = append([]byte{directFailed}, err.Error()...)
		}
	}
	if m.Reply == "" {
		return
	}
	if err := m.Respond(answer); err != nil {
		b.log.Warn("natsbroker: answering a direct send", zap.Error(err))
	}
}
