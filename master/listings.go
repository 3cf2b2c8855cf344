package master

import (
	"context"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/statemachine"
)

// The operator listings that read the catalog: every acknowledged record is
// there (replies wait for the catalog commit).

func dumpProto(d statemachine.DumpRecord) *api.DumpRecord {
	return &api.DumpRecord{Volume: d.Volume, Server: d.Server, Partition: d.Partition, DumpDateUnixNano: d.DumpDate,
		IncrementDateUnixNano: d.IncrementDate, Tapes: d.Tapes, File: uint32(d.File), Bytes: d.Bytes, Sha256: d.SHA256, Job: string(d.Job)}
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
