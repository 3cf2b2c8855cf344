package master

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/statemachine"
)

// Metadata keys a master sends with its calls to slaves.
const (
	JournalIDKey = "abs-journal-id"
	EpochKey     = "abs-epoch"
)

// slaveConns caches one connection per slave address.
type slaveConns struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (c *slaveConns) get(m *Master, addr string) (api.SlaveServiceClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns == nil {
		c.conns = map[string]*grpc.ClientConn{}
	}
	conn, ok := c.conns[addr]
	if !ok {
		var err error
		conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(m.creds.ClientTLS(cluster.RoleSlave))))
		if err != nil {
			return nil, err
		}
		c.conns[addr] = conn
	}
	return api.NewSlaveServiceClient(conn), nil
}

// runEffects carries out effects once their events are durable: each is an
// idempotent call to a slave, retried with backoff until the slave takes it
// or the state no longer calls for it. Effects lost in a crash are
// re-derived at start-up (Pending) and when a slave re-registers.
func (m *Master) runEffects(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-m.loop.effects:
			go m.runEffect(ctx, e)
		}
	}
}

// order is what an effect needs from the state, read through the loop.
type order struct {
	addr    string
	req     *api.BackupRequest
	restore *api.SlaveRestoreRequest
	abort   bool
}

func (m *Master) runEffect(ctx context.Context, e statemachine.Effect) {
	delay := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		o, ok := m.effectOrder(ctx, e)
		if !ok {
			return // no longer owed: the job moved on or ended
		}
		err := m.callSlave(ctx, o)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		if attempt%10 == 1 {
			m.log.Warn("slave call failed; retrying", "effect", fmt.Sprintf("%T", e), "slave", o.addr, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// effectOrder reads, through the loop, whether the effect is still owed and
// what the slave needs to carry it out.
func (m *Master) effectOrder(ctx context.Context, e statemachine.Effect) (order, bool) {
	res, err := m.loop.propose(ctx, nil, func(s *statemachine.State, _ []statemachine.Event) any {
		switch e := e.(type) {
		case statemachine.DispatchJob:
			j, ok := s.Jobs[e.Job.ID]
			sl := s.Slaves[e.Slave]
			if !ok || sl == nil || j.State != statemachine.StateDispatched || j.Slave != e.Slave || j.AbortRequested {
				return nil
			}
			if j.Restore != nil {
				return order{addr: sl.Addr, restore: restoreRequest(*j)}
			}
			return order{addr: sl.Addr, req: backupRequest(s, *j)}
		case statemachine.SendAbort:
			j, ok := s.Jobs[e.Job]
			sl := s.Slaves[e.Slave]
			if !ok || sl == nil || !j.AbortRequested {
				return nil
			}
			return order{addr: sl.Addr, req: &api.BackupRequest{Job: string(e.Job)}, abort: true}
		}
		return nil
	})
	if err != nil || res.val == nil {
		return order{}, false
	}
	return res.val.(order), true
}

// restoreRequest is a restore order: the volume, the target and the plan.
func restoreRequest(j statemachine.Job) *api.SlaveRestoreRequest {
	req := &api.SlaveRestoreRequest{Job: string(j.ID), Server: j.Target.Server, Partition: j.Target.Partition, Volume: j.Target.Volume, To: j.Restore.To}
	for _, d := range j.Restore.Plan {
		req.Plan = append(req.Plan, dumpProto(statemachine.DumpRecord{Dump: d}))
	}
	return req
}

// backupRequest is a dump order: the job's target and level, and the
// increment date of every volume under the target the master has dumped.
func backupRequest(s *statemachine.State, j statemachine.Job) *api.BackupRequest {
	req := &api.BackupRequest{Job: string(j.ID), Target: targetProto(j.Target)}
	switch j.Level {
	case statemachine.LevelFull:
		req.Level = "full"
		return req
	case statemachine.LevelIncremental:
		req.Level = "incremental"
	}
	for _, v := range s.Volumes {
		if v.LastDump == 0 || !j.Target.Covers(v.Server, v.Partition, v.Name) {
			continue
		}
		req.Since = append(req.Since, &api.VolumeSince{Server: v.Server, Partition: v.Partition, Volume: v.Name, SinceUnixNano: v.LastDump})
	}
	return req
}

func (m *Master) callSlave(ctx context.Context, o order) error {
	c, err := m.conns.get(m, o.addr)
	if err != nil {
		return err
	}
	m.loop.mu.Lock()
	epoch, journalID := m.loop.epoch, m.loop.journalID
	m.loop.mu.Unlock()
	ctx = metadata.AppendToOutgoingContext(ctx, "abs-cluster-hash", m.cfg.Cluster.Hash(),
		JournalIDKey, journalID, EpochKey, strconv.FormatUint(epoch, 10))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch {
	case o.abort:
		_, err = c.Abort(ctx, &api.SlaveAbortRequest{Job: o.req.Job})
	case o.restore != nil:
		_, err = c.Restore(ctx, o.restore)
	default:
		_, err = c.Backup(ctx, o.req)
	}
	return err
}
