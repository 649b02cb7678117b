package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"

	"github.com/ovs-netpol/ovs-netpol/pkg/auditlog"
	"github.com/ovs-netpol/ovs-netpol/pkg/compiler"
	"github.com/ovs-netpol/ovs-netpol/pkg/flowsync"
	"github.com/ovs-netpol/ovs-netpol/pkg/model"
)

// auditFlags are the audit log's flags (see flows/README.md, "Audit log").
type auditFlags struct {
	path       string
	all        string
	rate       uint32
	burst      uint32
	maxSizeMB  int
	maxBackups int
	maxAgeDays int
	compress   bool
}

var audit auditFlags

// auditMeterWait is how long setup tries to create the meters (ovs-vswitchd
// may still be starting); auditMeterRetry is the pause between attempts
// after a switch's hello. Variables for the tests.
var (
	auditMeterWait  = 10 * time.Second
	auditMeterRetry = time.Second
)

// addAuditFlags registers the audit log's flags.
func addAuditFlags(f *pflag.FlagSet) {
	f.StringVar(&audit.path, "audit-log", "", "write the audit log (denied, and optionally allowed, new connections of namespaces annotated "+
		model.AuditAnnotation+"=deny|allow|deny,allow) to this file; off when empty")
	f.StringVar(&audit.all, "audit-all", "off", "audit every namespace: deny, allow, deny,allow or off (--audit-all alone: deny); needs --audit-log")
	f.Lookup("audit-all").NoOptDefVal = "deny"
	f.Uint32Var(&audit.rate, "audit-rate", 100, "audit packet-ins per second per verdict, node-wide (an OpenFlow meter in the datapath drops the rest)")
	f.Uint32Var(&audit.burst, "audit-burst", 200, "audit packet-ins let through in a burst above --audit-rate")
	f.IntVar(&audit.maxSizeMB, "audit-max-size", 100, "rotate the audit log when it reaches this many megabytes")
	f.IntVar(&audit.maxBackups, "audit-max-backups", 5, "rotated audit logs to keep (0: all)")
	f.IntVar(&audit.maxAgeDays, "audit-max-age", 0, "days to keep rotated audit logs (0: no limit)")
	f.BoolVar(&audit.compress, "audit-compress", false, "gzip rotated audit logs")
}

// auditController is what the audit log needs of the controller: the pods
// owning addresses, and adding the metered flows again.
type auditController interface {
	auditlog.Resolver
	ReinstallMetered(ctx context.Context) (int, error)
}

// setupAudit validates the flags and, when the audit log is on, creates
// its meters on the bridge (before any flow names them) and sets
// cfg.Audit. The returned start registers the metrics (either way) and
// begins reading packet-ins once the controller (which names the pods)
// exists; with the log off it reads nothing.
func setupAudit(ctx context.Context, node, bridge, runDir string, cfg *compiler.Config, log logrus.FieldLogger) (start func(context.Context, auditController, prometheus.Registerer), err error) {
	metrics := auditlog.NewMetrics(nil)
	all, err := model.ParseAuditMode(audit.all)
	if err != nil {
		return nil, fmt.Errorf("--audit-all: %w", err)
	}
	if audit.path == "" {
		if all != 0 {
			return nil, errors.New("--audit-all needs --audit-log")
		}
		return func(_ context.Context, _ auditController, reg prometheus.Registerer) { metrics.Register(reg) }, nil
	}
	if audit.rate == 0 {
		return nil, errors.New("--audit-rate must be positive")
	}
	// lumberjack counts the size in bytes in an int64: bound it (1 TiB).
	if audit.maxSizeMB <= 0 || audit.maxSizeMB > 1<<20 || audit.maxBackups < 0 || audit.maxAgeDays < 0 {
		return nil, errors.New("--audit-max-size must be 1 to 1048576 (MB), --audit-max-backups and --audit-max-age not negative")
	}
	log = log.WithField("component", "audit")
	// kick asks keepAuditMeters to set the meters; force, to add the
	// metered flows again even when the meters were there.
	kick := make(chan struct{}, 1)
	var force atomic.Bool
	wake := func() {
		select {
		case kick <- struct{}{}:
		default: // an attempt is already due
		}
	}
	// The logger's own bound is what both meters let through (a kernel
	// datapath meter's bucket holds burst + rate), with another second's
	// worth for packet-ins delivered late in a bunch: more means the
	// meters are not limiting (deleted, or flows added before them), and
	// it says so.
	l, err := auditlog.New(auditlog.Options{Node: node, Metrics: metrics, Log: log,
		File: auditlog.FileOptions{Path: audit.path, MaxSizeMB: audit.maxSizeMB, MaxBackups: audit.maxBackups,
			MaxAgeDays: audit.maxAgeDays, Compress: audit.compress},
		Rate: 2 * float64(audit.rate), Burst: 2 * (float64(audit.burst) + 2*float64(audit.rate)),
		Flood: func() {
			log.Warn("audit packet-ins over the meters' rate: setting the meters and adding the metered flows again")
			force.Store(true)
			wake()
		}})
	if err != nil {
		return nil, err
	}
	ac := compiler.AuditConfig{All: all, DenyMeter: compiler.DefaultAuditDenyMeter, AllowMeter: compiler.DefaultAuditAllowMeter}
	meters := []flowsync.Meter{
		{ID: ac.DenyMeter, Rate: audit.rate, Burst: audit.burst},
		{ID: ac.AllowMeter, Rate: audit.rate, Burst: audit.burst},
	}
	inst := &flowsync.Installer{Bridge: bridge, RunDir: runDir, Log: log}
	ensure := func(ctx context.Context) (added int, err error) {
		added, modified, err := inst.EnsureMeters(ctx, meters)
		if added+modified > 0 {
			log.WithFields(logrus.Fields{"added": added, "modified": modified, "rate": audit.rate, "burst": audit.burst}).Info("audit meters set")
		}
		return added, err
	}
	// Before the first sync: OVS accepts a flow naming a meter that does
	// not exist and leaves it unmetered, so without the meters every
	// denied packet would reach the agent. ovs-vswitchd may still be
	// starting: retry a while; past that, compile no audit flow at all
	// (ovs_netpol_audit_active stays 0) rather than unmetered ones.
	deadline := time.Now().Add(auditMeterWait)
	for {
		_, err := ensure(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			// Policy is enforced all the same; only the log is given up
			// (refusing to start would leave the node's policy behind).
			log.WithError(err).WithField("file", audit.path).Error("audit log OFF: its meters cannot be created, and without them the audit flows would send every packet to the agent unmetered; restart the agent once ovs-vswitchd can create meters")
			return func(_ context.Context, _ auditController, reg prometheus.Registerer) { metrics.Register(reg) }, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	cfg.Audit = ac
	metrics.Active.Set(1)
	log.WithFields(logrus.Fields{"file": audit.path, "all": all, "rate": audit.rate, "burst": audit.burst}).Info("audit log on")
	return func(ctx context.Context, ctrl auditController, reg prometheus.Registerer) {
		metrics.Register(reg)
		l.SetResolver(ctrl)
		go l.Run(ctx)
		// A new ovs-vswitchd (restart) has no meters: set them on its
		// hello. Its full sync may have added the audit flows first, and
		// OVS binds a flow to its meter when the flow is added: such flows
		// would stay unmetered, so they are added again. The meters are
		// set apart from the reader, retried until they are.
		go keepAuditMeters(ctx, kick, &force, ensure, ctrl.ReinstallMetered, log)
		go auditlog.Watch(ctx, filepath.Join(runDir, bridge+".mgmt"), l, wake)
	}, nil
}

// keepAuditMeters sets the meters on each kick (a switch's hello, or a
// flood the meters did not limit), trying again every auditMeterRetry
// until they are set, and then, if any had to be added or force is set,
// adds the metered flows again so that they are bound to them.
func keepAuditMeters(ctx context.Context, kick <-chan struct{}, force *atomic.Bool, ensure func(context.Context) (int, error),
	reinstall func(context.Context) (int, error), log logrus.FieldLogger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		added := 0
		for attempt := 1; ; attempt++ {
			n, err := ensure(ctx)
			added += n
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if attempt == 1 || attempt%60 == 0 {
				log.WithError(err).WithField("attempts", attempt).Warn("setting the audit meters (retrying: the audit flows are unmetered until they are set)")
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(auditMeterRetry):
			}
		}
		if added == 0 && !force.Swap(false) {
			continue
		}
		n, err := reinstall(ctx)
		if err != nil {
			log.WithError(err).Warn("adding the audit flows again after their meters (a full sync follows)")
		} else if n > 0 {
			log.WithField("flows", n).Info("audit flows added again: bound to the new meters")
		}
	}
}
