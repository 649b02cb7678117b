package nodenet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Defaults of the CNI configuration the agent writes.
const (
	DefaultCNIConfName    = "10-ovs-netpol.conflist"
	DefaultCNINetworkName = "ovs-netpol"
	DefaultCNIDataDir     = "/var/lib/cni/networks"
	cniVersion            = "1.0.0"
	cniPluginType         = "ovs-netpol-cni"
)

// CNIConfig is what the node's CNI network configuration is made of.
type CNIConfig struct {
	// FileName is the file in the configuration directory (default
	// DefaultCNIConfName); it must end in .conflist.
	FileName string
	// NetworkName is the CNI network name (default DefaultCNINetworkName).
	NetworkName string
	// PodCIDRs are the node's pod CIDRs, at most one per family: host-local
	// hands out addresses from one range per CIDR, with the gateway being
	// the CIDR's first address.
	PodCIDRs []netip.Prefix
	// MTU of the pods' interfaces (0: the kernel's default).
	MTU int
	// The plugin's own keys (pkg/cni); empty ones are left out, so the
	// plugin's defaults apply.
	Bridge, OVSDB, DatapathType string
	// HostNetNS is the plugin's hostNetNS key (tests only; "" in production).
	HostNetNS string
	// DataDir is host-local's dataDir (default DefaultCNIDataDir).
	DataDir string
}

// The JSON shape. Field order here is the order in the file.
type (
	cniConfList struct {
		CNIVersion string      `json:"cniVersion"`
		Name       string      `json:"name"`
		Plugins    []cniPlugin `json:"plugins"`
	}
	cniPlugin struct {
		Type         string  `json:"type"`
		Bridge       string  `json:"bridge,omitempty"`
		OVSDB        string  `json:"ovsdb,omitempty"`
		DatapathType string  `json:"datapathType,omitempty"`
		HostNetNS    string  `json:"hostNetNS,omitempty"`
		MTU          int     `json:"mtu,omitempty"`
		IPAM         cniIPAM `json:"ipam"`
	}
	cniIPAM struct {
		Type    string       `json:"type"`
		Ranges  [][]cniRange `json:"ranges"`
		Routes  []cniRoute   `json:"routes"`
		DataDir string       `json:"dataDir"`
	}
	cniRange struct {
		Subnet  string `json:"subnet"`
		Gateway string `json:"gateway"`
	}
	cniRoute struct {
		Dst string `json:"dst"`
	}
)

func (c CNIConfig) withDefaults() CNIConfig {
	if c.FileName == "" {
		c.FileName = DefaultCNIConfName
	}
	if c.NetworkName == "" {
		c.NetworkName = DefaultCNINetworkName
	}
	if c.DataDir == "" {
		c.DataDir = DefaultCNIDataDir
	}
	return c
}

// validName: what a CNI network name may be (libcni: alphanumerics and
// ".-_"), which is also safe as a file name.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// RenderCNIConfig returns the configuration list as the file holds it
// (indented JSON, trailing newline). The same input gives the same bytes.
func RenderCNIConfig(conf CNIConfig) ([]byte, error) {
	c := conf.withDefaults()
	if !validName(c.NetworkName) {
		return nil, fmt.Errorf("nodenet: CNI network name %q: only letters, digits, '.', '-' and '_'", c.NetworkName)
	}
	if len(c.PodCIDRs) == 0 || len(c.PodCIDRs) > 2 {
		return nil, fmt.Errorf("nodenet: CNI configuration needs one pod CIDR per family (1 or 2), got %d", len(c.PodCIDRs))
	}
	if c.MTU != 0 && (c.MTU < minMTU || c.MTU > 65535) {
		return nil, fmt.Errorf("nodenet: CNI configuration: MTU %d is outside %d..65535", c.MTU, minMTU)
	}
	if !filepath.IsAbs(c.DataDir) {
		return nil, fmt.Errorf("nodenet: CNI configuration: dataDir %q is not an absolute path", c.DataDir)
	}
	ipam := cniIPAM{Type: "host-local", DataDir: c.DataDir}
	var have4, have6 bool
	for _, p := range c.PodCIDRs {
		gw := p.Addr().Next()
		if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" || p.Addr().Is4In6() || !gw.IsValid() || !p.Contains(gw) {
			return nil, fmt.Errorf("nodenet: pod CIDR %s: not a masked prefix with room for a gateway", p)
		}
		if p.Addr().Is4() {
			if have4 {
				return nil, fmt.Errorf("nodenet: pod CIDRs %v: two IPv4 ones", c.PodCIDRs)
			}
			have4 = true
		} else {
			if have6 {
				return nil, fmt.Errorf("nodenet: pod CIDRs %v: two IPv6 ones", c.PodCIDRs)
			}
			have6 = true
		}
		ipam.Ranges = append(ipam.Ranges, []cniRange{{Subnet: p.String(), Gateway: gw.String()}})
	}
	if have4 {
		ipam.Routes = append(ipam.Routes, cniRoute{Dst: "0.0.0.0/0"})
	}
	if have6 {
		ipam.Routes = append(ipam.Routes, cniRoute{Dst: "::/0"})
	}
	list := cniConfList{CNIVersion: cniVersion, Name: c.NetworkName, Plugins: []cniPlugin{{
		Type: cniPluginType, Bridge: c.Bridge, OVSDB: c.OVSDB, DatapathType: c.DatapathType,
		HostNetNS: c.HostNetNS, MTU: c.MTU, IPAM: ipam,
	}}}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(list); err != nil {
		return nil, fmt.Errorf("nodenet: CNI configuration: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteCNIConfig renders conf and writes it as dir/FileName with mode 0644,
// atomically: a temporary file in dir (a dot name not ending in .conflist,
// which runtimes do not read) is synced and renamed over the target, so a
// runtime never reads a partial file. A file that already has these bytes
// is left alone (and its mode fixed). It returns the file's path.
func WriteCNIConfig(dir string, conf CNIConfig) (path string, err error) {
	c := conf.withDefaults()
	if !strings.HasSuffix(c.FileName, ".conflist") || !validName(c.FileName) || strings.HasPrefix(c.FileName, ".") {
		return "", fmt.Errorf("nodenet: CNI configuration file name %q: must be a plain name ending in .conflist", c.FileName)
	}
	if dir == "" {
		return "", errors.New("nodenet: CNI configuration: no directory")
	}
	data, err := RenderCNIConfig(c)
	if err != nil {
		return "", err
	}
	path = filepath.Join(dir, c.FileName)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if err := os.Chmod(path, 0o644); err != nil {
			return "", fmt.Errorf("nodenet: CNI configuration %s: %w", path, err)
		}
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, "."+c.FileName+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("nodenet: CNI configuration in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("nodenet: write CNI configuration %s: %w", path, err)
	}
	// The rename is durable once the directory is synced.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return path, nil
}
