package slave

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/slave/source"
	"github.com/abs-backup/abs/slave/tape"
)

// ErrAborted is wrapped by the error Runner.Dump returns when its context
// was cancelled: the job was aborted. Volumes checkpointed before stay
// recorded.
var ErrAborted = errors.New("slave: job aborted")

// DefaultPoll is how often a Runner looks again for a writable cartridge
// when the library has none.
const DefaultPoll = 2 * time.Second

// Master is what a Runner needs from the master. The daemon implements it
// over gRPC (MasterService); tests fake it. Every method may be retried by
// the implementation; the runner calls each once per decision.
type Master interface {
	// ValidateTape offers a cartridge read with label ("" when blank) for
	// job. verdict is one of blank, mine, valid, reserved, unknown, expired;
	// writable says whether the job may write it.
	ValidateTape(ctx context.Context, job, label, cartridge string) (verdict string, writable bool, reason string, err error)
	// GenLabel asks for a new internal label for the blank cartridge.
	GenLabel(ctx context.Context, job, cartridge string) (label, realm, origin string, err error)
	// ValidateLabel confirms, before any dump is written, that label (just
	// written on the medium) is reserved for job.
	ValidateLabel(ctx context.Context, job, label string) error
	// DumpCheckpoint reports one volume written. The runner calls it only
	// once every tape file of the dump is durable (FileWriter.Close
	// returned). volumes and bytes are the job's progress so far.
	DumpCheckpoint(ctx context.Context, job string, d DumpRecord, volumes int, bytes int64) error
	// JobStatus reports progress; note says what the job waits for, if
	// anything. Errors are logged, never fatal: progress is advisory.
	JobStatus(ctx context.Context, job string, volumes int, bytes int64, note string) error
}

// DumpRecord is one volume written to tape, as DumpCheckpoint reports it.
type DumpRecord struct {
	Volume, Server, Partition string
	// DumpDate is when the runner started the volume's dump (taken before
	// the source's own dump date, so an incremental since DumpDate misses
	// nothing); IncrementDate is zero for a full dump.
	DumpDate, IncrementDate time.Time
	// Tapes are the internal labels of the cartridges holding the parts,
	// in part order.
	Tapes []string
	// File is the tape file number of part 1 on Tapes[0].
	File int
	// Bytes and SHA256 are the whole stream's (all parts concatenated).
	Bytes  int64
	SHA256 string
}

// proto is the record on the wire, for job.
func (d DumpRecord) proto(job string) *api.DumpRecord {
	var incr int64
	if !d.IncrementDate.IsZero() {
		incr = d.IncrementDate.UnixNano()
	}
	return &api.DumpRecord{Volume: d.Volume, Server: d.Server, Partition: d.Partition, DumpDateUnixNano: d.DumpDate.UnixNano(),
		IncrementDateUnixNano: incr, Tapes: d.Tapes, File: uint32(d.File), Bytes: d.Bytes, Sha256: d.SHA256, Job: job}
}

// DumpOrder is what the master asks a slave to dump (BackupRequest).
type DumpOrder struct {
	Job string
	// Scope is volume, partition or server.
	Scope                     string
	Server, Partition, Volume string
	// Level is full, incremental or "" (auto). Incremental and auto are
	// alike: a volume with an entry in Since is dumped incrementally from
	// it, any other volume gets a full dump.
	Level string
	// Since holds increment dates by VolumeKey ("server/partition/volume").
	Since map[string]time.Time
	// Origin is the journal ID of the master that gave the order.
	Origin string
}

// DumpResult sums up a Dump.
type DumpResult struct {
	Volumes int
	Bytes   int64
	// Tapes are the labels written to, in the order first written.
	Tapes []string
}

// Runner dumps volumes onto cartridges of Library through one drive, under
// the master's tape label protocol. A Runner runs one Dump at a time (it
// owns its drive while it does); run one Runner per drive for parallel jobs.
type Runner struct {
	Library tape.Library
	// Drive is the drive number the runner loads cartridges into.
	Drive int
	// Config gives the servers and partitions the slave reaches.
	Config *Config
	Master Master
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Poll is how often to look again for a writable cartridge when there
	// is none; zero means DefaultPoll.
	Poll time.Duration
	// Source builds the volume source of a partition of the config; nil
	// means NewSource.
	Source func(server string, p Partition) source.Partition
	// LibraryName names the library in notes to the master ("waiting for a
	// blank tape in NAME"); empty means the library's directory if it has
	// one (Dir() string), else "the library".
	LibraryName string
	// Holding, if set, is told the tapes the dump holds each time that
	// changes: a master that adopts the job needs them (registration).
	Holding func(job string, tapes []HeldTape)
}

// HeldTape is a cartridge a dump holds: labeled for its job, or appended
// to by it.
type HeldTape struct {
	Label, Cartridge string
}

// NewSource is the volume source of partition p of server: a
// source.DirPartition for a directory, a source.CommandPartition for a
// command pair.
func NewSource(server string, p Partition) source.Partition {
	if p.Path != "" {
		return &source.DirPartition{ServerName: server, PartitionName: p.Name, Path: p.Path}
	}
	return &source.CommandPartition{ServerName: server, PartitionName: p.Name,
		DumpCommand: p.Dump, RestoreCommand: p.Restore, VolumeNames: slices.Clone(p.Volumes)}
}

// volumeRef is one volume an order expands to.
type volumeRef struct {
	src                       source.Partition
	server, partition, volume string
}

func (v volumeRef) key() string { return v.server + "/" + v.partition + "/" + v.volume }

// Dump runs a dump order: every volume of its target, in (server, partition,
// volume) order, each as one tape file (in several parts if it spans
// cartridges), each reported with DumpCheckpoint once durable. It stops at
// the first failure and returns it; volumes checkpointed before stay
// recorded. Cancelling ctx aborts: Dump stops between volumes or mid-write
// and returns an error wrapping ErrAborted. A part being written when Dump
// fails or aborts is left torn on its cartridge; the next Append to that
// cartridge cuts it (tape package, doc.go). The cartridge is unloaded when
// Dump returns.
func (r *Runner) Dump(ctx context.Context, o DumpOrder) (res DumpResult, err error) {
	if r.Library == nil || r.Config == nil || r.Master == nil {
		return res, errors.New("slave: runner needs a Library, a Config and a Master")
	}
	if o.Job == "" {
		return res, errors.New("slave: dump order without a job ID")
	}
	var full bool
	switch o.Level {
	case "full":
		full = true
	case "", "auto", "incremental":
	default:
		return res, fmt.Errorf("slave: job %s: unknown dump level %q (want full, incremental or auto)", o.Job, o.Level)
	}
	run := &dumpRun{r: r, job: o.Job, log: r.logger().With("job", o.Job, "drive", r.Drive),
		skip: map[string]string{}, full: map[string]bool{}}
	defer run.unload()
	defer func() {
		if err != nil && ctx.Err() != nil && !errors.Is(err, ErrAborted) {
			err = fmt.Errorf("%w: %w", ErrAborted, err)
		}
	}()
	vols, err := r.expand(ctx, o)
	if err != nil {
		return res, err
	}
	run.log.Info("dump started", "scope", o.Scope, "volumes", len(vols), "level", o.Level)
	for _, v := range vols {
		if err := ctx.Err(); err != nil {
			return run.result(), fmt.Errorf("%w: job %s before volume %s: %w", ErrAborted, o.Job, v.key(), err)
		}
		var since time.Time
		if !full {
			since = o.Since[v.key()]
		}
		rec, err := run.dumpVolume(ctx, v, since)
		if err != nil {
			return run.result(), err
		}
		run.volumes++
		run.bytes += rec.Bytes
		if err := r.Master.DumpCheckpoint(ctx, o.Job, rec, run.volumes, run.bytes); err != nil {
			return run.result(), fmt.Errorf("slave: job %s: checkpoint of %s: %w", o.Job, v.key(), err)
		}
		// The checkpoint carries the progress: no status report besides.
		run.log.Info("volume dumped", "volume", v.key(), "tapes", rec.Tapes, "file", rec.File, "bytes", rec.Bytes, "incremental", !since.IsZero())
	}
	return run.result(), nil
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

func (r *Runner) source(server string, p Partition) source.Partition {
	if r.Source != nil {
		return r.Source(server, p)
	}
	return NewSource(server, p)
}

// expand turns an order into its volumes, sorted.
func (r *Runner) expand(ctx context.Context, o DumpOrder) ([]volumeRef, error) {
	var out []volumeRef
	addAll := func(srv Server, p Partition) error {
		src := r.source(srv.Name, p)
		vols, err := src.Volumes(ctx)
		if err != nil {
			return fmt.Errorf("slave: job %s: volumes of %s/%s: %w", o.Job, srv.Name, p.Name, err)
		}
		for _, v := range vols {
			out = append(out, volumeRef{src: src, server: srv.Name, partition: p.Name, volume: v})
		}
		return nil
	}
	findServer := func() (Server, error) {
		for _, s := range r.Config.Servers {
			if s.Name == o.Server {
				return s, nil
			}
		}
		return Server{}, fmt.Errorf("slave: job %s: server %q is not in this slave's config", o.Job, o.Server)
	}
	switch o.Scope {
	case "server":
		srv, err := findServer()
		if err != nil {
			return nil, err
		}
		for _, p := range srv.Partitions {
			if err := addAll(srv, p); err != nil {
				return nil, err
			}
		}
	case "partition":
		srv, err := findServer()
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(srv.Partitions, func(p Partition) bool { return p.Name == o.Partition })
		if i < 0 {
			return nil, fmt.Errorf("slave: job %s: server %s has no partition %q in this slave's config", o.Job, o.Server, o.Partition)
		}
		if err := addAll(srv, srv.Partitions[i]); err != nil {
			return nil, err
		}
	case "volume":
		if o.Volume == "" {
			return nil, fmt.Errorf("slave: job %s: a volume dump names no volume", o.Job)
		}
		var searched []string
		for _, srv := range r.Config.Servers {
			if o.Server != "" && srv.Name != o.Server {
				continue
			}
			for _, p := range srv.Partitions {
				if o.Partition != "" && p.Name != o.Partition {
					continue
				}
				searched = append(searched, srv.Name+"/"+p.Name)
				src := r.source(srv.Name, p)
				vols, err := src.Volumes(ctx)
				if err != nil {
					return nil, fmt.Errorf("slave: job %s: volumes of %s/%s: %w", o.Job, srv.Name, p.Name, err)
				}
				if slices.Contains(vols, o.Volume) {
					out = append(out, volumeRef{src: src, server: srv.Name, partition: p.Name, volume: o.Volume})
				}
			}
		}
		if len(out) == 0 {
			where := "no partition matches"
			if len(searched) > 0 {
				where = "searched " + strings.Join(searched, ", ")
			}
			return nil, fmt.Errorf("slave: job %s: volume %q not found (server %q, partition %q: %s)",
				o.Job, o.Volume, o.Server, o.Partition, where)
		}
	default:
		return nil, fmt.Errorf("slave: job %s: unknown scope %q (want volume, partition or server)", o.Job, o.Scope)
	}
	slices.SortFunc(out, func(a, b volumeRef) int { return strings.Compare(a.key(), b.key()) })
	return out, nil
}

// dumpRun is the state of one Dump: the loaded cartridge and what was
// learnt about the others.
type dumpRun struct {
	r   *Runner
	job string
	log *slog.Logger

	drive tape.Drive // loaded and writable for job, or nil
	label string     // drive's internal label

	// skip remembers cartridges refused under a label (name → label): a
	// labeled cartridge's verdict cannot turn writable during the job, so
	// it is not offered again while it carries the same label.
	skip map[string]string
	// full are cartridges of this job with no room left.
	full map[string]bool

	volumes int
	bytes   int64
	tapes   []string
	held    []HeldTape // every cartridge labeled for the job or appended to
}

// hold records that the job holds a cartridge.
func (d *dumpRun) hold(label, cartridge string) {
	if slices.ContainsFunc(d.held, func(h HeldTape) bool { return h.Label == label }) {
		return
	}
	d.held = append(d.held, HeldTape{Label: label, Cartridge: cartridge})
	if d.r.Holding != nil {
		d.r.Holding(d.job, slices.Clone(d.held))
	}
}

func (d *dumpRun) result() DumpResult {
	return DumpResult{Volumes: d.volumes, Bytes: d.bytes, Tapes: slices.Clone(d.tapes)}
}

func (d *dumpRun) status(ctx context.Context, note string) {
	if err := d.r.Master.JobStatus(ctx, d.job, d.volumes, d.bytes, note); err != nil {
		d.log.Warn("job status not delivered", "note", note, "err", err)
	}
}

// unload releases the drive. A FileWriter still open is abandoned: its
// part stays torn until the next Append to that cartridge cuts it.
func (d *dumpRun) unload() {
	if d.drive == nil {
		return
	}
	if err := d.drive.Unload(); err != nil {
		d.log.Warn("unload", "cartridge", d.drive.Name(), "err", err)
	}
	d.drive, d.label = nil, ""
}

// aborted wraps ctx's error.
func (d *dumpRun) aborted(ctx context.Context, what string) error {
	return fmt.Errorf("%w: job %s %s: %w", ErrAborted, d.job, what, context.Cause(ctx))
}

// writable returns the loaded cartridge if it is writable for the job, or
// finds one: each cartridge of the library in order is loaded and offered
// to the master (ValidateTape); a blank one is labeled (GenLabel,
// WriteLabel, ValidateLabel), one the job reserved earlier ("mine") is
// appended to, any other is unloaded and skipped. With none writable it
// tells the master it waits, once, and polls until one appears or ctx ends.
func (d *dumpRun) writable(ctx context.Context) (tape.Drive, string, error) {
	if d.drive != nil {
		return d.drive, d.label, nil
	}
	waiting := false
	for {
		if err := ctx.Err(); err != nil {
			return nil, "", d.aborted(ctx, "waiting for a cartridge")
		}
		names, err := d.r.Library.Cartridges()
		if err != nil {
			return nil, "", fmt.Errorf("slave: job %s: %w", d.job, err)
		}
		for _, name := range names {
			if d.full[name] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, "", d.aborted(ctx, "choosing a cartridge")
			}
			ok, err := d.try(ctx, name)
			if err != nil {
				return nil, "", err
			}
			if ok {
				if waiting {
					d.log.Info("writable cartridge found, dump resumes", "cartridge", name, "label", d.label)
					d.status(ctx, "") // no longer waiting
				}
				return d.drive, d.label, nil
			}
		}
		if !waiting {
			waiting = true
			note := "waiting for a blank tape in " + d.libraryName()
			d.log.Warn(note)
			d.status(ctx, note)
		}
		poll := d.r.Poll
		if poll <= 0 {
			poll = DefaultPoll
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, "", d.aborted(ctx, "waiting for a blank tape")
		case <-t.C:
		}
	}
}

func (d *dumpRun) libraryName() string {
	if d.r.LibraryName != "" {
		return d.r.LibraryName
	}
	if l, ok := d.r.Library.(interface{ Dir() string }); ok {
		return l.Dir()
	}
	return "the library"
}

// try loads cartridge name and makes it the run's writable cartridge if the
// protocol allows. It returns false (the cartridge unloaded) for one that
// is not to be written; an error only when the job cannot go on. A master
// that cannot be reached counts as "not now": the cartridge is offered
// again on the next poll.
func (d *dumpRun) try(ctx context.Context, name string) (bool, error) {
	drv, err := d.r.Library.Load(d.r.Drive, name)
	switch {
	case errors.Is(err, tape.ErrInUse), errors.Is(err, tape.ErrNoSuchCartridge):
		return false, nil
	case err != nil:
		d.log.Warn("cartridge skipped: cannot load it", "cartridge", name, "err", err)
		return false, nil
	}
	keep := false
	defer func() {
		if !keep {
			if err := drv.Unload(); err != nil {
				d.log.Warn("unload", "cartridge", name, "err", err)
			}
		}
	}()
	lab, err := drv.Label()
	blank := errors.Is(err, tape.ErrBlank)
	if err != nil && !blank {
		d.log.Warn("cartridge skipped: cannot read its label", "cartridge", name, "err", err)
		return false, nil
	}
	if !blank {
		if prev, ok := d.skip[name]; ok && prev == lab.Label {
			return false, nil
		}
	}
	verdict, ok, reason, err := d.r.Master.ValidateTape(ctx, d.job, lab.Label, name)
	if err != nil {
		if ctx.Err() != nil {
			return false, d.aborted(ctx, "validating cartridge "+name)
		}
		d.log.Warn("cartridge not validated by the master", "cartridge", name, "label", lab.Label, "err", err)
		return false, nil
	}
	if blank {
		if !ok {
			d.log.Info("blank cartridge not writable", "cartridge", name, "verdict", verdict, "reason", reason)
			return false, nil
		}
		label, realm, origin, err := d.r.Master.GenLabel(ctx, d.job, name)
		if err != nil {
			if ctx.Err() != nil {
				return false, d.aborted(ctx, "labeling cartridge "+name)
			}
			d.log.Warn("no label for blank cartridge", "cartridge", name, "err", err)
			return false, nil
		}
		// WriteLabel refuses a labeled cartridge (ErrLabeled), so even a
		// cartridge labeled behind our back since Label() is safe.
		l := tape.Label{Label: label, Realm: realm, Origin: origin, Created: time.Now().UTC()}
		if err := drv.WriteLabel(l); err != nil {
			d.log.Warn("cannot label blank cartridge", "cartridge", name, "label", label, "err", err)
			return false, nil
		}
		lab = l
		d.log.Info("cartridge labeled", "cartridge", name, "label", label)
	} else if !ok || verdict != "mine" {
		d.log.Info("cartridge skipped", "cartridge", name, "label", lab.Label, "verdict", verdict, "reason", reason)
		d.skip[name] = lab.Label
		return false, nil
	}
	if err := d.r.Master.ValidateLabel(ctx, d.job, lab.Label); err != nil {
		if ctx.Err() != nil {
			return false, d.aborted(ctx, "confirming label "+lab.Label)
		}
		d.log.Warn("label not confirmed by the master", "cartridge", name, "label", lab.Label, "err", err)
		return false, nil
	}
	keep = true
	d.drive, d.label = drv, lab.Label
	d.hold(lab.Label, name)
	return true, nil
}

// appendPart starts a tape file (part 1 when cont is nil) on a writable
// cartridge, moving on to the next one while the loaded one is full.
func (d *dumpRun) appendPart(ctx context.Context, h tape.FileHeader, cont *tape.Continuation) (tape.FileWriter, string, error) {
	for {
		drv, label, err := d.writable(ctx)
		if err != nil {
			return nil, "", err
		}
		w, err := drv.Append(h, cont)
		if err == nil {
			if !slices.Contains(d.tapes, label) {
				d.tapes = append(d.tapes, label)
			}
			return w, label, nil
		}
		if errors.Is(err, tape.ErrEndOfTape) {
			d.log.Info("cartridge full", "cartridge", drv.Name(), "label", label)
		} else if errors.Is(err, tape.ErrCorrupt) {
			// Damage that is not a torn tail: an operator must look. The
			// cartridge is left as it is, and the dump goes elsewhere.
			d.log.Error("cartridge damaged, not written", "cartridge", drv.Name(), "label", label, "err", err)
		} else {
			return nil, "", fmt.Errorf("slave: job %s: append to %s (%s): %w", d.job, drv.Name(), label, err)
		}
		d.full[drv.Name()] = true
		d.unload()
	}
}

// dumpVolume writes one volume and returns its record; the tape files are
// durable when it returns without error.
func (d *dumpRun) dumpVolume(ctx context.Context, v volumeRef, since time.Time) (DumpRecord, error) {
	start := time.Now().UTC()
	h := tape.FileHeader{Job: d.job, Volume: v.volume, Server: v.server, Partition: v.partition,
		DumpDate: start, IncrementDate: since}
	w, label, err := d.appendPart(ctx, h, nil)
	if err != nil {
		return DumpRecord{}, err
	}
	sw := &spanWriter{ctx: ctx, run: d, h: h, w: w, tapes: []string{label}}
	st, err := v.src.Dump(ctx, v.volume, since, sw, nil)
	if err != nil {
		if ctx.Err() != nil {
			return DumpRecord{}, d.aborted(ctx, "dumping "+v.key())
		}
		return DumpRecord{}, fmt.Errorf("slave: job %s: dump %s: %w", d.job, v.key(), err)
	}
	if err := ctx.Err(); err != nil {
		return DumpRecord{}, d.aborted(ctx, "closing "+v.key())
	}
	fi, _, err := sw.w.Close(false)
	if err != nil {
		return DumpRecord{}, fmt.Errorf("slave: job %s: close %s: %w", d.job, v.key(), err)
	}
	sw.w = nil
	// The tape hashed exactly the bytes it was given (TotalSHA256, kept in
	// the trailer and the dump record); the sizes must agree.
	if fi.TotalSize != sw.n || fi.TotalSHA256 == "" || (st.Bytes != 0 && st.Bytes != sw.n) {
		return DumpRecord{}, fmt.Errorf("slave: job %s: dump %s: tape says %d bytes (SHA-256 %q), the stream was %d bytes (source counted %d)",
			d.job, v.key(), fi.TotalSize, fi.TotalSHA256, sw.n, st.Bytes)
	}
	return DumpRecord{Volume: v.volume, Server: v.server, Partition: v.partition,
		DumpDate: start, IncrementDate: since, Tapes: sw.tapes, File: sw.first(fi),
		Bytes: fi.TotalSize, SHA256: fi.TotalSHA256}, nil
}

// spanWriter is the io.Writer a volume is dumped into: it writes the
// stream into tape files, closing a part with continues=true when its
// cartridge is full and appending the next part on another cartridge.
type spanWriter struct {
	ctx   context.Context
	run   *dumpRun
	h     tape.FileHeader
	w     tape.FileWriter // the open part
	tapes []string        // labels, in part order
	file  int             // file number of part 1, once part 1 is closed
	n     int64           // stream bytes accepted
}

func (s *spanWriter) first(last tape.FileInfo) int {
	if s.file != 0 {
		return s.file
	}
	return last.Number
}

func (s *spanWriter) Write(p []byte) (int, error) {
	done := 0
	for {
		if err := s.ctx.Err(); err != nil {
			return done, s.run.aborted(s.ctx, "writing "+s.h.Volume)
		}
		m, err := s.w.Write(p[done:])
		s.n += int64(m)
		done += m
		if err == nil {
			return done, nil
		}
		if !errors.Is(err, tape.ErrEndOfTape) {
			return done, err
		}
		fi, cont, err := s.w.Close(true)
		if err != nil {
			return done, err
		}
		s.w = nil
		if s.file == 0 {
			s.file = fi.Number
		}
		s.run.log.Info("dump continues on another cartridge", "volume", s.h.Volume, "part", fi.Part, "bytes", cont.Size)
		s.run.full[s.run.drive.Name()] = true
		s.run.unload()
		w, label, err := s.run.appendPart(s.ctx, s.h, cont)
		if err != nil {
			return done, err
		}
		s.w = w
		s.tapes = append(s.tapes, label)
		if done == len(p) {
			return done, nil
		}
	}
}
