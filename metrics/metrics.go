// Package metrics holds the Prometheus collectors of the abs daemons. Every
// constructor takes an explicit prometheus.Registerer: nothing registers in
// init(), so tests can build as many daemons as they like in one process.
// Metric names carry their unit (abs_journal_fsync_duration_seconds).
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Master is the master's collectors. It implements journal.Observer.
type Master struct {
	AppendSeconds  prometheus.Histogram // one group commit: write + fsync
	FsyncSeconds   prometheus.Histogram
	BatchRecords   prometheus.Histogram // records per group commit
	BatchBytes     prometheus.Histogram
	JournalBytes   prometheus.Gauge
	JournalLast    prometheus.Gauge
	CatalogApplied prometheus.Gauge
	CatalogLag     prometheus.Gauge
	CatalogSeconds prometheus.Histogram // one catalog batch commit
	Epoch          prometheus.Gauge
	Jobs           *prometheus.GaugeVec // by state
	Commands       *prometheus.CounterVec
	Refusals       *prometheus.CounterVec
}

// latency buckets from 50µs to ~3s: fsyncs on a good disk are sub-millisecond,
// on a loaded virtual disk tens of milliseconds.
var latency = prometheus.ExponentialBuckets(50e-6, 2, 16)

// NewMaster makes and registers the master's collectors.
func NewMaster(reg prometheus.Registerer) *Master {
	m := &Master{
		AppendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "abs_journal_append_duration_seconds", Help: "Time of one journal group commit (write and fsync).", Buckets: latency}),
		FsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "abs_journal_fsync_duration_seconds", Help: "Time of one journal fsync.", Buckets: latency}),
		BatchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "abs_journal_batch_records", Help: "Records per journal group commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		BatchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "abs_journal_batch_bytes", Help: "Bytes per journal group commit.", Buckets: prometheus.ExponentialBuckets(64, 4, 10)}),
		JournalBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abs_journal_size_bytes", Help: "Size of the journal on disk."}),
		JournalLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abs_journal_last_index", Help: "Index of the last durable journal record."}),
		CatalogApplied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abs_catalog_applied_index", Help: "Journal index the catalog has applied."}),
		CatalogLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abs_catalog_lag_records", Help: "Durable journal records the catalog has not applied yet."}),
		CatalogSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "abs_catalog_commit_duration_seconds", Help: "Time of one catalog batch commit.", Buckets: latency}),
		Epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abs_master_epoch", Help: "Epoch of this master incarnation."}),
		Jobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abs_jobs", Help: "Jobs by state (ended states count every job that ever ended so)."}, []string{"state"}),
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abs_master_commands_total", Help: "Commands decided, by command."}, []string{"command"}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abs_master_refusals_total", Help: "Commands refused, by command and reason."}, []string{"command", "code"}),
	}
	reg.MustRegister(m.AppendSeconds, m.FsyncSeconds, m.BatchRecords, m.BatchBytes, m.JournalBytes, m.JournalLast,
		m.CatalogApplied, m.CatalogLag, m.CatalogSeconds, m.Epoch, m.Jobs, m.Commands, m.Refusals)
	return m
}

// Appended observes one group commit (journal.Observer).
func (m *Master) Appended(records, bytes int, write, fsync time.Duration) {
	m.AppendSeconds.Observe((write + fsync).Seconds())
	m.FsyncSeconds.Observe(fsync.Seconds())
	m.BatchRecords.Observe(float64(records))
	m.BatchBytes.Observe(float64(bytes))
}

// Size observes the journal's size and last index (journal.Observer).
func (m *Master) Size(bytes int64, last uint64) {
	m.JournalBytes.Set(float64(bytes))
	m.JournalLast.Set(float64(last))
}

// Jobs and dumps, observed as their records become durable.
type Dumps struct {
	JobsEnded      *prometheus.CounterVec   // by kind and final state
	JobDuration    *prometheus.HistogramVec // queued → ended, by kind and final state
	DumpRecords    prometheus.Counter
	DumpBytes      prometheus.Counter
	Tapes          *prometheus.GaugeVec // by state
	VolumeLastDump *prometheus.GaugeVec // unix seconds of each volume's latest dump
}

// NewDumps makes and registers the master's job and dump collectors.
func NewDumps(reg prometheus.Registerer) *Dumps {
	d := &Dumps{
		JobsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abs_jobs_ended_total", Help: "Jobs ended since the master started, by kind and final state."}, []string{"kind", "state"}),
		JobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "abs_job_duration_seconds", Help: "Time from queueing to end of jobs, by kind and final state.",
			Buckets: prometheus.ExponentialBuckets(0.05, 3, 12)}, []string{"kind", "state"}),
		DumpRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abs_dump_records_total", Help: "Dump records (volumes written to tape) since the master started."}),
		DumpBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abs_dump_bytes_total", Help: "Bytes of dumps recorded since the master started."}),
		Tapes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abs_tapes", Help: "Tapes the master labeled, by state."}, []string{"state"}),
		VolumeLastDump: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abs_volume_last_dump_timestamp_seconds", Help: "When each volume's latest good dump was taken (age: time() - this)."},
			[]string{"server", "partition", "volume"}),
	}
	reg.MustRegister(d.JobsEnded, d.JobDuration, d.DumpRecords, d.DumpBytes, d.Tapes, d.VolumeLastDump)
	return d
}

// Slave is a media slave's collectors.
type Slave struct {
	Bytes       *prometheus.CounterVec // by drive and direction (dump, restore)
	JobSeconds  *prometheus.CounterVec // busy time by drive
	Jobs        prometheus.Gauge       // in progress
	TapeWaits   prometheus.Counter
	WaitingTape prometheus.Gauge
	ReportsOwed prometheus.Gauge
}

// NewSlave makes and registers a slave's collectors.
func NewSlave(reg prometheus.Registerer) *Slave {
	s := &Slave{
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abs_slave_bytes_total", Help: "Bytes dumped or restored, by drive (counted when each job ends; throughput: rate())."}, []string{"drive", "direction"}),
		JobSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abs_slave_drive_busy_seconds_total", Help: "Time drives spent running jobs."}, []string{"drive"}),
		Jobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abs_slave_jobs", Help: "Jobs in progress on this slave."}),
		TapeWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abs_slave_tape_waits_total", Help: "Times a job had to wait for a blank tape (mount waits)."}),
		WaitingTape: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abs_slave_jobs_waiting_for_tape", Help: "Jobs waiting now for a blank tape."}),
		ReportsOwed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abs_slave_reports_owed", Help: "Reports journaled but not yet acknowledged by the master."}),
	}
	reg.MustRegister(s.Bytes, s.JobSeconds, s.Jobs, s.TapeWaits, s.WaitingTape, s.ReportsOwed)
	return s
}
