package model

import (
	"net/netip"
	"testing"
)

func TestParseLegacyAnnotation(t *testing.T) {
	for _, tc := range []struct {
		value   string
		present bool
		want    LegacyIsolation
		err     bool
	}{
		{"", false, LegacyNone, false},
		{`{"ingress":{"isolation":"DefaultDeny"}}`, true, LegacyDefaultDeny, false},
		{"{\n  \"ingress\": {\n    \"isolation\": \"DefaultDeny\"\n  }\n}\n", true, LegacyDefaultDeny, false},
		{`{"ingress":{}}`, true, LegacyNone, false},
		{`{}`, true, LegacyNone, false},
		{`{"ingress":{"isolation":""}}`, true, LegacyNone, false},
		{`{"ingress":{"isolation":"defaultdeny"}}`, true, LegacyMalformed, true},
		{`{"ingress": {"isolation": "DefaultDeny"`, true, LegacyMalformed, true},
		{`DefaultDeny`, true, LegacyMalformed, true},
	} {
		got, err := ParseLegacyAnnotation(tc.value, tc.present)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseLegacyAnnotation(%q, %v) = %v, %v; want %v, error=%v", tc.value, tc.present, got, err, tc.want, tc.err)
		}
		if got.Isolates() != (tc.want != LegacyNone) {
			t.Errorf("%q: Isolates() = %v", tc.value, got.Isolates())
		}
	}
}

func TestPortSpecMatches(t *testing.T) {
	pod := &Pod{Ports: []ContainerPort{{Name: "http", Port: 8080, Protocol: TCP}, {Name: "dns", Port: 53, Protocol: UDP}}}
	for _, tc := range []struct {
		spec  PortSpec
		proto Protocol
		port  int32
		dst   *Pod
		want  bool
	}{
		{PortSpec{Protocol: TCP, Port: 80}, TCP, 80, nil, true},
		{PortSpec{Protocol: TCP, Port: 80}, UDP, 80, nil, false},
		{PortSpec{Protocol: TCP}, TCP, 12345, nil, true},
		{PortSpec{Protocol: SCTP}, TCP, 80, nil, false},
		{PortSpec{Protocol: TCP, Port: 80, EndPort: 90}, TCP, 90, nil, true},
		{PortSpec{Protocol: TCP, Port: 80, EndPort: 90}, TCP, 91, nil, false},
		{PortSpec{Protocol: TCP, Name: "http"}, TCP, 8080, pod, true},
		{PortSpec{Protocol: TCP, Name: "http"}, TCP, 8080, nil, false}, // not a pod: names never match
		{PortSpec{Protocol: UDP, Name: "http"}, UDP, 8080, pod, false}, // protocol is part of the name
		{PortSpec{Protocol: TCP, Name: "nope"}, TCP, 8080, pod, false},
	} {
		if got := tc.spec.Matches(tc.proto, tc.port, tc.dst); got != tc.want {
			t.Errorf("%s matches %s/%d (pod %v) = %v, want %v", tc.spec, tc.proto, tc.port, tc.dst != nil, got, tc.want)
		}
	}
}

func TestIPBlockContains(t *testing.T) {
	b := IPBlock{CIDR: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	for ip, want := range map[string]bool{"10.0.0.1": true, "10.1.2.3": false, "11.0.0.1": false, "fd00::1": false} {
		if got := b.Contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", ip, got, want)
		}
	}
}

func TestParseProtocol(t *testing.T) {
	for in, want := range map[string]Protocol{"": TCP, "tcp": TCP, "TCP": TCP, "udp": UDP, "Sctp": SCTP} {
		if got, err := ParseProtocol(in); err != nil || got != want {
			t.Errorf("ParseProtocol(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseProtocol("icmp"); err == nil {
		t.Error("icmp accepted")
	}
}
