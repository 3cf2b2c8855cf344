package main

import (
	"context"
	"fmt"
	"os"

	"github.com/abs-backup/abs/slave"
)

type slaveCmd struct {
	Config   string `required:"" type:"existingfile" placeholder:"FILE" help:"The slave's YAML config (cluster, node, library, servers)."`
	LogLevel string `default:"info" enum:"debug,info,warn,error" help:"Log level (${enum})."`
}

func (c *slaveCmd) Help() string {
	return `Runs a media slave: serves on node.listen (mutual TLS with the certificates
in node.certs, which must be a slave certificate named node.name) and
registers with the master named by cluster.master, telling it its drives and
every server and partition it reaches.

SIGHUP re-reads the config: if cluster.master changed, the slave registers with
the new master; a config that does not load changes nothing (the error is
logged). SIGTERM and SIGINT stop it at once (crash-only).

Example config:

  cluster:
    realm: athena
    master: 127.0.0.1:7400
    slaves: [tape1, tape2]
  node:
    name: tape1
    data: /var/lib/abs/tape1
    listen: 127.0.0.1:7401
    metrics: 127.0.0.1:7481
    certs: /etc/abs/tape1
  library:
    path: /var/lib/abs/tapes
    drives: 2
    capacity: 10GiB
  servers:
    fs1:
      vicepa: /srv/vicepa
      db:
        dump: "pg_dump -Fc {volume}"
        restore: "pg_restore -d {volume}"
        volumes: [app, billing]

The slave runs the master's dump and restore orders on its drives, keeps a
crash-only journal of orders and owed reports in node.data, and serves
/metrics on node.metrics when set.`
}

func (c *slaveCmd) Run(ctx context.Context) error {
	log := daemonLogger(c.LogLevel)
	if err := slave.Run(ctx, c.Config, slave.Options{Logger: log, Ready: os.Stdout}); err != nil {
		return fmt.Errorf("slave: %w", err)
	}
	return nil
}
