//go:build !linux

package engine

import "github.com/panjf2000/gnet/v2"

// limitKernelUnsent does nothing here: TCP_NOTSENT_LOWAT is set on Linux
// only, and the kernel keeps its own send buffer.
func (e *Engine) limitKernelUnsent(gnet.Conn) {}
