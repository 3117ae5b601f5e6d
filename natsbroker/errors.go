package natsbroker

import (
	"errors"
	"fmt"

	"github.com/wsdproject/wsd/broadcast"
)

var (
	// ErrClosed is returned by a Broker's methods after Close. It wraps
	// broadcast.ErrBrokerUnavailable.
	ErrClosed = fmt.Errorf("natsbroker: broker closed: %w", broadcast.ErrBrokerUnavailable)

	// ErrNoNode is returned by SendTo for a node that no NATS server knows
	// (no node of that id subscribes to its direct subject).
	ErrNoNode = errors.New("natsbroker: no such node")

	// ErrNoDirect is returned by SendTo when the target node has no
	// Local.SendTo.
	ErrNoDirect = errors.New("natsbroker: node does not take direct sends")

	// errNotConnected is returned, without allocating, by every call made
	// while the connection to NATS is down.
	errNotConnected = fmt.Errorf("natsbroker: not connected to NATS: %w", broadcast.ErrBrokerUnavailable)

	// errReconnected is returned by Flush when the connection was
	// re-established after a publish it has not yet confirmed: the
	// publish may be lost.
	errReconnected = fmt.Errorf("natsbroker: connection to NATS re-established since an unconfirmed publish, which may be lost: %w", broadcast.ErrBrokerUnavailable)
)
