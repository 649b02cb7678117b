package compiler

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// ParseBindings reads port bindings, one per line: "NAMESPACE/NAME OFPORT
// MAC". Blank lines and lines starting with '#' are ignored. name is used in
// error messages.
func ParseBindings(r io.Reader, name string) (map[string]Binding, error) {
	out := map[string]Binding{}
	ports := map[uint32]string{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 3 {
			return nil, fmt.Errorf("%s:%d: want \"NAMESPACE/NAME OFPORT MAC\", got %q", name, line, text)
		}
		if ns, pod, ok := strings.Cut(fields[0], "/"); !ok || ns == "" || pod == "" {
			return nil, fmt.Errorf("%s:%d: pod %q is not NAMESPACE/NAME", name, line, fields[0])
		}
		port, err := strconv.ParseUint(fields[1], 10, 32)
		if err != nil || port == 0 || port >= 0xff00 {
			return nil, fmt.Errorf("%s:%d: OpenFlow port %q is not a number in 1..65279", name, line, fields[1])
		}
		mac, err := net.ParseMAC(fields[2])
		if err != nil || len(mac) != 6 {
			return nil, fmt.Errorf("%s:%d: %q is not an Ethernet MAC address", name, line, fields[2])
		}
		if _, dup := out[fields[0]]; dup {
			return nil, fmt.Errorf("%s:%d: pod %s bound twice", name, line, fields[0])
		}
		if other, dup := ports[uint32(port)]; dup {
			return nil, fmt.Errorf("%s:%d: port %d already bound to %s", name, line, port, other)
		}
		ports[uint32(port)] = fields[0]
		out[fields[0]] = Binding{OFPort: uint32(port), MAC: mac}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
