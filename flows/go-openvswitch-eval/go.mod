module github.com/ovs-netpol/ovs-netpol/flows/go-openvswitch-eval

go 1.26

require github.com/digitalocean/go-openvswitch v0.0.0-20241021184246-19e734367535
