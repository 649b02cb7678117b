package cni

import (
	"fmt"
	"strings"

	"github.com/safchain/ethtool"
)

// disableTxChecksum turns TX checksum offload off on ifname in the current
// network namespace, like "ethtool -K IFNAME tx off": every feature
// "tx-checksum-*" off (the kernel then also drops the features that need
// them, such as TSO). It verifies the result, since the ioctl succeeds even
// when the driver refuses a change.
func disableTxChecksum(ifname string) error {
	e, err := ethtool.NewEthtool()
	if err != nil {
		return fmt.Errorf("ethtool: %w", err)
	}
	defer e.Close()
	features, err := e.Features(ifname)
	if err != nil {
		return fmt.Errorf("ethtool: features of %s: %w", ifname, err)
	}
	off := map[string]bool{}
	for name, on := range features {
		if on && strings.HasPrefix(name, "tx-checksum-") {
			off[name] = false
		}
	}
	if len(off) == 0 {
		return nil
	}
	if err := e.Change(ifname, off); err != nil {
		return fmt.Errorf("ethtool: turning TX checksum offload of %s off: %w", ifname, err)
	}
	after, err := e.Features(ifname)
	if err != nil {
		return fmt.Errorf("ethtool: features of %s: %w", ifname, err)
	}
	for name := range off {
		if after[name] {
			return fmt.Errorf("ethtool: %s of %s is still on", name, ifname)
		}
	}
	return nil
}
