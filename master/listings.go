package master

import (
	"context"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/statemachine"
)

// The operator listings that read the catalog: every acknowledged record is
// there (replies wait for the catalog commit).

func dumpProto(d statemachine.DumpRecord) *api.DumpRecord {
	return &api.DumpRecord{Volume: d.Volume, Server: d.Server, Partition: d.Partition, DumpDateUnixNano: d.DumpDate,
		IncrementDateUnixNano: d.IncrementDate, Tapes: d.Tapes, File: uint32(d.File), Bytes: d.Bytes, Sha256: d.SHA256, Job: string(d.Job)}
}

// restoreNamed queues a restore of the dumps the operator named by tape and
// file. A dump the catalog knows comes with its record (dates, size and
// checksum, which the slave checks); one it does not (a crippled master
// knows only its own) is read from the tape, checked by the tape's own
// checksums.
func (o *operator) restoreNamed(ctx context.Context, req *api.RestoreRequest) (*api.Job, error) {
	if req.GetServer() == "" || req.GetPartition() == "" || req.GetAsOfUnixNano() != 0 {
		return nil, status.Error(codes.InvalidArgument, "a restore of named dumps needs the server and partition, and no as-of time")
	}
	var known []statemachine.Dump
	if err := o.m.cat.Dumps(req.GetServer(), req.GetPartition(), req.GetVolume(), func(d statemachine.DumpRecord) bool {
		known = append(known, d.Dump)
		return true
	}); err != nil {
		return nil, rpcError(err)
	}
	var plan []statemachine.Dump
	for _, ref := range req.GetDumps() {
		if len(ref.GetTapes()) == 0 || ref.GetFile() == 0 {
			return nil, status.Error(codes.InvalidArgument, "a named dump needs its tape labels and its file number")
		}
		i := slices.IndexFunc(known, func(d statemachine.Dump) bool {
			return d.File == int(ref.GetFile()) && slices.Equal(d.Tapes, ref.GetTapes())
		})
		if i >= 0 {
			plan = append(plan, known[i])
			continue
		}
		plan = append(plan, statemachine.Dump{Volume: req.GetVolume(), Server: req.GetServer(), Partition: req.GetPartition(),
			Tapes: ref.GetTapes(), File: int(ref.GetFile())})
	}
	t := statemachine.Target{Scope: statemachine.ScopeVolume, Server: req.GetServer(), Partition: req.GetPartition(), Volume: req.GetVolume()}
	cmd := statemachine.QueueRestore{Target: t, To: req.GetTo(), Slave: req.GetSlave(), Plan: plan, Named: true, By: caller(ctx)}
	return o.queue(ctx, cmd)
}

// dumpFromProto is the inverse of dumpProto.
func dumpFromProto(d *api.DumpRecord) statemachine.Dump {
	return statemachine.Dump{Volume: d.GetVolume(), Server: d.GetServer(), Partition: d.GetPartition(), DumpDate: d.GetDumpDateUnixNano(),
		IncrementDate: d.GetIncrementDateUnixNano(), Tapes: d.GetTapes(), File: int(d.GetFile()), Bytes: d.GetBytes(), SHA256: d.GetSha256(), Job: statemachine.JobID(d.GetJob())}
}

func (o *operator) Report(req *api.ReportRequest, stream api.OperatorService_ReportServer) error {
	var sendErr error
	err := o.m.cat.Dumps(req.GetServer(), req.GetPartition(), req.GetVolume(), func(d statemachine.DumpRecord) bool {
		sendErr = stream.Send(dumpProto(d))
		return sendErr == nil
	})
	if err == nil {
		err = sendErr
	}
	return rpcError(err)
}

func (o *operator) ListVolumes(ctx context.Context, _ *api.ListVolumesRequest) (*api.ListVolumesResponse, error) {
	resp := &api.ListVolumesResponse{}
	err := o.m.cat.Volumes(func(v statemachine.Volume) bool {
		resp.Volumes = append(resp.Volumes, &api.VolumeInfo{Server: v.Server, Partition: v.Partition, Volume: v.Name,
			LastFullUnixNano: v.LastFull, LastDumpUnixNano: v.LastDump, Dumps: uint32(v.Dumps), LastJob: string(v.LastDumpJob), LastTape: v.LastDumpTape})
		return true
	})
	return resp, rpcError(err)
}

func (o *operator) ListTapes(ctx context.Context, _ *api.ListTapesRequest) (*api.ListTapesResponse, error) {
	resp := &api.ListTapesResponse{}
	err := o.m.cat.Tapes(func(t statemachine.Tape) bool {
		resp.Tapes = append(resp.Tapes, &api.TapeInfo{Label: t.Label, Name: t.Name, State: t.State.String(), Job: string(t.Job),
			Slave: t.Slave, Files: uint32(t.Files), UpdatedAtUnixNano: t.UpdatedAt})
		return true
	})
	return resp, rpcError(err)
}

// Restore plans a volume's restore from the catalog's dump records and
// queues the restore job.
func (o *operator) Restore(ctx context.Context, req *api.RestoreRequest) (*api.Job, error) {
	if req.GetVolume() == "" {
		return nil, status.Error(codes.InvalidArgument, "no volume given")
	}
	if len(req.GetDumps()) > 0 {
		return o.restoreNamed(ctx, req)
	}
	byPlace := map[string][]statemachine.Dump{}
	err := o.m.cat.Dumps(req.GetServer(), req.GetPartition(), req.GetVolume(), func(d statemachine.DumpRecord) bool {
		key := d.Server + "/" + d.Partition
		byPlace[key] = append(byPlace[key], d.Dump)
		return true
	})
	if err != nil {
		return nil, rpcError(err)
	}
	switch {
	case len(byPlace) == 0:
		return nil, status.Errorf(codes.NotFound, "no dump of volume %s (abs report lists dumps)", req.GetVolume())
	case len(byPlace) > 1:
		places := slices.Sorted(maps.Keys(byPlace))
		return nil, status.Errorf(codes.InvalidArgument, "volume %s has dumps on %s: say which with --server and --partition", req.GetVolume(), strings.Join(places, ", "))
	}
	var dumps []statemachine.Dump
	for _, ds := range byPlace {
		dumps = ds
	}
	plan, err := statemachine.PlanRestore(dumps, req.GetAsOfUnixNano())
	if err != nil {
		return nil, rpcError(err)
	}
	t := statemachine.Target{Scope: statemachine.ScopeVolume, Server: plan[0].Server, Partition: plan[0].Partition, Volume: req.GetVolume()}
	cmd := statemachine.QueueRestore{Target: t, To: req.GetTo(), AsOf: req.GetAsOfUnixNano(), Slave: req.GetSlave(), Plan: plan, By: caller(ctx)}
	return o.queue(ctx, cmd)
}
