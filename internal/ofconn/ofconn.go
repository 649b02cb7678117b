// Package ofconn is the little OpenFlow the agent speaks itself on a
// bridge's management socket (RUNDIR/BRIDGE.mgmt): it says hello, answers
// the switch's echo requests (its inactivity probe) and hands every other
// message to the caller. The switch watcher (a new ovs-vswitchd says hello)
// and the audit log's packet-in reader are built on it.
package ofconn

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// Version15 is the version of our hello: the agent's bridges speak OpenFlow
// 1.0 to 1.5 (pkg/ovsdb EnsureBridge), so it is accepted.
const Version15 = 0x06

// Message types that are the same in every OpenFlow version.
const (
	TypeHello        = 0
	TypeError        = 1
	TypeEchoRequest  = 2
	TypeEchoReply    = 3
	TypeExperimenter = 4
	TypeSetConfig    = 9
)

// writeTimeout bounds a write to a switch that stopped reading.
const writeTimeout = 5 * time.Second

// Header builds a message header; length counts the header too.
func Header(version, typ byte, length int, xid uint32) []byte {
	h := make([]byte, 8, max(length, 8))
	h[0], h[1] = version, typ
	binary.BigEndian.PutUint16(h[2:4], uint16(length))
	binary.BigEndian.PutUint32(h[4:8], xid)
	return h
}

// Message is one message from the switch.
type Message struct {
	Version, Type byte
	XID           uint32
	Body          []byte // after the 8-byte header; owned by the handler
}

// Serve says hello (OpenFlow 1.5) on conn, answers echo requests in their
// own version, and calls handle with every other message, the switch's
// hello included, until the connection fails, ctx ends (conn is closed) or
// handle returns an error, which Serve returns. handle may write to conn.
func Serve(ctx context.Context, conn net.Conn, handle func(Message) error) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	if err := write(conn, Header(Version15, TypeHello, 8, 0)); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	hdr := make([]byte, 8)
	for {
		if _, err := io.ReadFull(conn, hdr); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint16(hdr[2:4]))
		if n < 8 {
			return fmt.Errorf("OpenFlow message of length %d", n)
		}
		m := Message{Version: hdr[0], Type: hdr[1], XID: binary.BigEndian.Uint32(hdr[4:8]), Body: make([]byte, n-8)}
		if _, err := io.ReadFull(conn, m.Body); err != nil {
			return err
		}
		if m.Type == TypeEchoRequest {
			if err := write(conn, append(Header(m.Version, TypeEchoReply, n, m.XID), m.Body...)); err != nil {
				return fmt.Errorf("echo reply: %w", err)
			}
			continue
		}
		if err := handle(m); err != nil {
			return err
		}
	}
}

// Write sends msg with a write deadline, for handlers that answer.
func Write(conn net.Conn, msg []byte) error { return write(conn, msg) }

func write(conn net.Conn, msg []byte) error {
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	defer conn.SetWriteDeadline(time.Time{})
	_, err := conn.Write(msg)
	return err
}
