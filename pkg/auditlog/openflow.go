// Package auditlog writes the deny (and allow) audit log: it receives the
// packet-ins that the audit flows send (pkg/compiler audit.go), rate limited
// by OpenFlow meters in the datapath, decodes who talked to whom and why,
// and writes one line per connection attempt to a size-rotated file.
package auditlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// OpenFlow and Nicira extension constants for the few messages the reader
// exchanges. Verified against ovs-vswitchd 3.1 (TestReaderOnOVS).
const (
	ofVersion15 = 0x06

	ofptHello        = 0
	ofptError        = 1
	ofptEchoRequest  = 2
	ofptEchoReply    = 3
	ofptExperimenter = 4
	ofptSetConfig    = 9

	nxVendorID = 0x00002320
	// NXT_SET_PACKET_IN_FORMAT with NXPIF_NXT_PACKET_IN2: only that format
	// carries a controller action's userdata.
	nxtSetPacketInFormat = 16
	nxpifNXTPacketIn2    = 2
	nxtPacketIn2         = 30

	// NXT_PACKET_IN2 property types (nx_packet_in2_prop_type).
	nxpintPacket   = 0
	nxpintFullLen  = 1
	nxpintTableID  = 3
	nxpintCookie   = 4
	nxpintUserdata = 7

	// maxMissSendLen asks for whole packets (OFPCML_NO_BUFFER).
	maxMissSendLen = 0xffff
)

// PacketIn is what the reader keeps of an NXT_PACKET_IN2.
type PacketIn struct {
	Table    uint8
	Cookie   uint64
	Userdata []byte
	Packet   []byte // the packet from its Ethernet header
	FullLen  uint32 // the packet's length before truncation (0: not truncated)
}

// ofHeader builds an OpenFlow 1.5 message header.
func ofHeader(typ byte, length int, xid uint32) []byte {
	h := make([]byte, 8, length)
	h[0], h[1] = ofVersion15, typ
	binary.BigEndian.PutUint16(h[2:4], uint16(length))
	binary.BigEndian.PutUint32(h[4:8], xid)
	return h
}

// setupMessages are sent after the hello: packet-ins in the NXT_PACKET_IN2
// format, and a nonzero miss_send_len, without which ovs-vswitchd sends a
// service connection (BRIDGE.mgmt) no asynchronous message at all (see
// ofconn_receives_async_msg in OVS's connmgr.c; verified: without it no
// packet-in arrives).
func setupMessages() []byte {
	format := ofHeader(ofptExperimenter, 20, 1)
	format = binary.BigEndian.AppendUint32(format, nxVendorID)
	format = binary.BigEndian.AppendUint32(format, nxtSetPacketInFormat)
	format = binary.BigEndian.AppendUint32(format, nxpifNXTPacketIn2)
	config := ofHeader(ofptSetConfig, 12, 2)
	config = binary.BigEndian.AppendUint16(config, 0) // flags: fragments normal
	config = binary.BigEndian.AppendUint16(config, maxMissSendLen)
	return append(format, config...)
}

// parsePacketIn2 decodes the body of an NXT_PACKET_IN2 after its 16-byte
// Nicira header: a list of properties, each type(2) length(2) value padded
// to 8 bytes (length excludes the padding).
func parsePacketIn2(props []byte) (PacketIn, error) {
	var pi PacketIn
	seen := false
	for len(props) > 0 {
		if len(props) < 4 {
			return PacketIn{}, errors.New("truncated property header")
		}
		typ := binary.BigEndian.Uint16(props[0:2])
		n := int(binary.BigEndian.Uint16(props[2:4]))
		if n < 4 || n > len(props) {
			return PacketIn{}, fmt.Errorf("property %d of length %d in %d bytes", typ, n, len(props))
		}
		v := props[4:n]
		switch typ {
		case nxpintPacket:
			pi.Packet, seen = v, true
		case nxpintFullLen:
			if len(v) != 4 {
				return PacketIn{}, fmt.Errorf("full_len property of %d bytes", len(v))
			}
			pi.FullLen = binary.BigEndian.Uint32(v)
		case nxpintTableID:
			if len(v) != 1 {
				return PacketIn{}, fmt.Errorf("table_id property of %d bytes", len(v))
			}
			pi.Table = v[0]
		case nxpintCookie:
			// The value starts after 4 bytes of padding (ovs_be64 alignment).
			switch len(v) {
			case 8:
				pi.Cookie = binary.BigEndian.Uint64(v)
			case 12:
				pi.Cookie = binary.BigEndian.Uint64(v[4:])
			default:
				return PacketIn{}, fmt.Errorf("cookie property of %d bytes", len(v))
			}
		case nxpintUserdata:
			pi.Userdata = v
		}
		padded := (n + 7) &^ 7
		if padded > len(props) {
			padded = len(props)
		}
		props = props[padded:]
	}
	if !seen {
		return PacketIn{}, errors.New("no packet property")
	}
	return pi, nil
}

// Read connects to an OpenFlow management socket (RUNDIR/BRIDGE.mgmt),
// asks for packet-ins and calls got with each one until the connection
// fails or ctx ends (it returns the error). hello is called when the
// switch's hello arrives (a new ovs-vswitchd: its meters must be created
// again). bad is called with each message that could not be decoded.
// Packets are copied: got may keep them.
func Read(ctx context.Context, path string, hello func(), got func(PacketIn), bad func(error)) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	if _, err := conn.Write(ofHeader(ofptHello, 8, 0)); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	hdr := make([]byte, 8)
	greeted := false
	for {
		if _, err := io.ReadFull(conn, hdr); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint16(hdr[2:4]))
		if n < 8 {
			return fmt.Errorf("OpenFlow message of length %d", n)
		}
		body := make([]byte, n-8)
		if _, err := io.ReadFull(conn, body); err != nil {
			return err
		}
		switch hdr[1] {
		case ofptHello:
			if greeted {
				continue
			}
			greeted = true
			if hdr[0] < ofVersion15 {
				return fmt.Errorf("switch speaks OpenFlow version 0x%02x, want 0x%02x (OpenFlow 1.5)", hdr[0], ofVersion15)
			}
			if _, err := conn.Write(setupMessages()); err != nil {
				return fmt.Errorf("packet-in setup: %w", err)
			}
			if hello != nil {
				hello()
			}
		case ofptEchoRequest:
			reply := append(ofHeader(ofptEchoReply, n, binary.BigEndian.Uint32(hdr[4:8])), body...)
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(reply); err != nil {
				return fmt.Errorf("echo reply: %w", err)
			}
			conn.SetWriteDeadline(time.Time{})
		case ofptError:
			// Our setup was refused: nothing will arrive.
			if len(body) >= 4 {
				return fmt.Errorf("switch error type %d code %d to our setup", binary.BigEndian.Uint16(body[0:2]), binary.BigEndian.Uint16(body[2:4]))
			}
			return errors.New("switch error to our setup")
		case ofptExperimenter:
			if len(body) < 8 || binary.BigEndian.Uint32(body[0:4]) != nxVendorID || binary.BigEndian.Uint32(body[4:8]) != nxtPacketIn2 {
				continue
			}
			pi, err := parsePacketIn2(body[8:])
			if err != nil {
				bad(fmt.Errorf("NXT_PACKET_IN2: %w", err))
				continue
			}
			got(pi)
		}
	}
}
