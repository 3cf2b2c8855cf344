package master

import (
	"context"
	"maps"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/statemachine"
)

// ClusterHashKey is the gRPC metadata key that carries the caller's
// canonical cluster-config hash on every daemon-to-daemon call.
const ClusterHashKey = "abs-cluster-hash"

// slaveAPI serves api.MasterService: the calls media slaves make.
type slaveAPI struct {
	api.UnimplementedMasterServiceServer
	m *Master
}

// checkClusterHash refuses a caller whose cluster section differs from
// ours (Spread's rule: nothing is acted on across configurations).
func (s *slaveAPI) checkClusterHash(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	theirs := md.Get(ClusterHashKey)
	ours := s.m.cfg.Cluster.Hash()
	switch {
	case len(theirs) == 0:
		return status.Errorf(codes.FailedPrecondition, "the call carries no cluster hash (%s); this master's is %s", ClusterHashKey, ours)
	case theirs[0] != ours:
		return status.Errorf(codes.FailedPrecondition, "cluster configuration differs: caller's hash %s, this master's %s (make the cluster: sections identical on every node)", theirs[0], ours)
	}
	return nil
}

func (s *slaveAPI) RegisterDevice(ctx context.Context, req *api.RegisterDeviceRequest) (*api.RegisterDeviceResponse, error) {
	if err := s.checkClusterHash(ctx); err != nil {
		return nil, err
	}
	name := caller(ctx)
	if req.GetName() != name {
		return nil, status.Errorf(codes.PermissionDenied, "certificate is for slave %s but registers as %q", name, req.GetName())
	}
	if allowed := s.m.cfg.Cluster.Slaves; len(allowed) > 0 && !slices.Contains(allowed, name) {
		return nil, status.Errorf(codes.PermissionDenied, "slave %s is not in this realm's cluster.slaves %v", name, allowed)
	}
	sl := statemachine.Slave{Name: name, Addr: req.GetAddr(), Drives: int(req.GetDrives()), LastSeq: req.GetSeq()}
	for _, r := range req.GetReaches() {
		switch {
		case r.GetPartition() == "":
			sl.Reaches = append(sl.Reaches, statemachine.Target{Scope: statemachine.ScopeServer, Server: r.GetServer()})
		default:
			sl.Reaches = append(sl.Reaches, statemachine.Target{Scope: statemachine.ScopePartition, Server: r.GetServer(), Partition: r.GetPartition()})
			for _, v := range r.GetVolumes() {
				sl.Reaches = append(sl.Reaches, statemachine.Target{Scope: statemachine.ScopeVolume, Server: r.GetServer(), Partition: r.GetPartition(), Volume: v})
			}
		}
	}
	res, err := s.m.loop.propose(ctx, statemachine.RegisterSlave{Slave: sl}, func(st *statemachine.State, _ []statemachine.Event) any {
		return &api.RegisterDeviceResponse{JournalId: st.Journal.ID, Epoch: st.Master.Epoch, Realm: st.Journal.Realm}
	})
	if err != nil {
		return nil, rpcError(err)
	}
	s.m.log.Info("slave registered", "slave", name, "addr", sl.Addr, "drives", sl.Drives, "reaches", len(sl.Reaches))
	return res.val.(*api.RegisterDeviceResponse), nil
}

// ListSlaves is an operator call (OperatorService), kept beside the slave
// API it reports on.
func (o *operator) ListSlaves(ctx context.Context, _ *api.ListSlavesRequest) (*api.ListSlavesResponse, error) {
	res, err := o.m.loop.propose(ctx, nil, func(st *statemachine.State, _ []statemachine.Event) any {
		load := map[string]uint32{}
		for _, j := range st.Jobs {
			if j.Slave != "" {
				load[j.Slave]++
			}
		}
		resp := &api.ListSlavesResponse{}
		for _, name := range slices.Sorted(maps.Keys(st.Slaves)) {
			sl := st.Slaves[name]
			info := &api.SlaveInfo{Name: sl.Name, Addr: sl.Addr, Drives: uint32(sl.Drives), RegisteredAtUnixNano: sl.RegisteredAt, LastSeq: sl.LastSeq, Jobs: load[name]}
			for _, t := range sl.Reaches {
				info.Reaches = append(info.Reaches, targetProto(t))
			}
			resp.Slaves = append(resp.Slaves, info)
		}
		return resp
	})
	if err != nil {
		return nil, rpcError(err)
	}
	return res.val.(*api.ListSlavesResponse), nil
}
