package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/ovs-netpol/ovs-netpol/pkg/controller"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
)

// flowStatsMaxAge is how old the flow counters of a scrape may be: scrapes
// within it share one dump-flows (0.6 s for 100k flows).
const flowStatsMaxAge = 2 * time.Second

// registerFlowStats exposes the bridge's flow counters per policy rule and
// per isolated pod (controller.StatsCollector) on the agent's registry.
func registerFlowStats(reg prometheus.Registerer, ctrl *controller.Controller, inst *flowsync.Installer, log logrus.FieldLogger) {
	dump := func(ctx context.Context) ([]controller.FlowCounter, error) {
		flows, err := inst.DumpStats(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]controller.FlowCounter, len(flows))
		for i, f := range flows {
			out[i] = controller.FlowCounter{Table: f.Table, Priority: f.Priority, Cookie: f.Cookie, Match: f.Match, Packets: f.Packets, Bytes: f.Bytes}
		}
		return out, nil
	}
	reg.MustRegister(controller.NewStatsCollector(ctrl, dump, flowStatsMaxAge, log.WithField("component", "flowstats")))
}
