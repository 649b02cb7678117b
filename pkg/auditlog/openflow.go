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
	"net"

	"github.com/ovs-netpol/ovs-netpol/internal/ofconn"
)

// OpenFlow and Nicira extension constants for the few messages the reader
// exchanges. Verified against ovs-vswitchd 3.1 (TestReaderOnOVS).
const (
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

// setupMessages are sent after the hello: packet-ins in the NXT_PACKET_IN2
// format, and a nonzero miss_send_len, without which ovs-vswitchd sends a
// service connection (BRIDGE.mgmt) no asynchronous message at all (see
// ofconn_receives_async_msg in OVS's connmgr.c; verified: without it no
// packet-in arrives).
func setupMessages() []byte {
	format := ofconn.Header(ofconn.Version15, ofconn.TypeExperimenter, 20, 1)
	format = binary.BigEndian.AppendUint32(format, nxVendorID)
	format = binary.BigEndian.AppendUint32(format, nxtSetPacketInFormat)
	format = binary.BigEndian.AppendUint32(format, nxpifNXTPacketIn2)
	config := ofconn.Header(ofconn.Version15, ofconn.TypeSetConfig, 12, 2)
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
	greeted := false
	return ofconn.Serve(ctx, conn, func(m ofconn.Message) error {
		body := m.Body
		switch m.Type {
		case ofconn.TypeHello:
			if greeted {
				return nil
			}
			greeted = true
			if m.Version < ofconn.Version15 {
				return fmt.Errorf("switch speaks OpenFlow version 0x%02x, want 0x%02x (OpenFlow 1.5)", m.Version, ofconn.Version15)
			}
			if err := ofconn.Write(conn, setupMessages()); err != nil {
				return fmt.Errorf("packet-in setup: %w", err)
			}
			if hello != nil {
				hello()
			}
		case ofconn.TypeError:
			// Our setup was refused: nothing will arrive.
			if len(body) >= 4 {
				return fmt.Errorf("switch error type %d code %d to our setup", binary.BigEndian.Uint16(body[0:2]), binary.BigEndian.Uint16(body[2:4]))
			}
			return errors.New("switch error to our setup")
		case ofconn.TypeExperimenter:
			if len(body) < 8 || binary.BigEndian.Uint32(body[0:4]) != nxVendorID || binary.BigEndian.Uint32(body[4:8]) != nxtPacketIn2 {
				return nil
			}
			pi, err := parsePacketIn2(body[8:])
			if err != nil {
				bad(fmt.Errorf("NXT_PACKET_IN2: %w", err))
				return nil
			}
			got(pi)
		}
		return nil
	})
}
