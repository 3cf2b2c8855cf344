// Package slave is the media slave daemon: it owns a tape library and
// reaches servers' partitions, registers with the master named in its
// cluster config, and (coming next) dumps and restores volumes on the
// master's orders. It never imports the master's logic.
package slave

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/slave/tape"
)

// Config is a slave's YAML file: the cluster and node sections every node
// has, plus the slave's own library and servers.
//
//	library:
//	  path: /var/lib/abs/tapes   # cartridge files (relative: to the config's directory)
//	  drives: 2
//	  capacity: 10GiB            # per cartridge
//	servers:
//	  fs1:
//	    vicepa: /srv/vicepa      # a directory: each subdirectory is a volume
//	    db:                      # a command pair
//	      dump: "pg_dump -Fc {volume}"
//	      restore: "pg_restore -d {volume}"
//	      volumes: [app, billing]
type Config struct {
	*cluster.Config
	Library Library
	Servers []Server // sorted by name
}

// Library is the slave's tape library.
type Library struct {
	Path     string `yaml:"path"`
	Drives   int    `yaml:"drives"`
	Capacity string `yaml:"capacity"`
	Bytes    int64  `yaml:"-"` // Capacity parsed
}

// Server is a file server the slave reaches, with its partitions.
type Server struct {
	Name       string
	Partitions []Partition // sorted by name
}

// Partition is a directory of volumes, or a dump/restore command pair.
type Partition struct {
	Name    string
	Path    string   // a directory: each subdirectory is a volume
	Dump    string   // or a command pair with placeholders {volume}, {since}, {target}
	Restore string   //
	Volumes []string // the command pair's volumes
}

type commandSpec struct {
	Dump    string   `yaml:"dump"`
	Restore string   `yaml:"restore"`
	Volumes []string `yaml:"volumes"`
}

// LoadConfig reads and validates a slave's config file. Every problem is
// reported with the file and line (errors.Join of *cluster.ConfigError).
func LoadConfig(path string) (*Config, error) {
	base, err := cluster.LoadWith(path, "library", "servers")
	if err != nil {
		return nil, err
	}
	c := &Config{Config: base}
	var problems []error
	add := func(line int, format string, args ...any) {
		problems = append(problems, &cluster.ConfigError{File: base.Path, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	libNode, ok := base.Extra["library"]
	if !ok {
		add(0, "a slave needs a library: section (path, drives, capacity)")
	} else if err := base.DecodeSection("library", &c.Library); err != nil {
		problems = append(problems, err)
	} else {
		line := libNode.Line
		switch {
		case c.Library.Path == "":
			add(line, "library.path is required (the directory of cartridge files)")
		default:
			c.Library.Path = base.Resolve(c.Library.Path)
		}
		if c.Library.Drives < 1 || c.Library.Drives > 64 {
			add(line, "library.drives must be between 1 and 64 (got %d)", c.Library.Drives)
		}
		if c.Library.Bytes, err = tape.ParseSize(c.Library.Capacity); err != nil {
			add(line, "library.capacity: %v", err)
		}
	}
	if n, ok := base.Extra["servers"]; ok {
		servers, errs := decodeServers(base, n)
		c.Servers = servers
		problems = append(problems, errs...)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeServers reads servers: NAME: PARTITION: (path | command pair).
func decodeServers(base *cluster.Config, n *yaml.Node) ([]Server, []error) {
	var problems []error
	add := func(line int, format string, args ...any) {
		problems = append(problems, &cluster.ConfigError{File: base.Path, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	if n.Kind != yaml.MappingNode {
		add(n.Line, "servers must be a mapping of server names to partitions")
		return nil, problems
	}
	var servers []Server
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		srv := Server{Name: key.Value}
		if !cluster.ValidName(srv.Name) {
			add(key.Line, "server name %q is not valid (lower-case letters, digits, '.', '_' and '-')", srv.Name)
		}
		if val.Kind != yaml.MappingNode {
			add(val.Line, "servers.%s must be a mapping of partition names to a directory or a command pair", srv.Name)
			continue
		}
		for k := 0; k+1 < len(val.Content); k += 2 {
			pk, pv := val.Content[k], val.Content[k+1]
			p := Partition{Name: pk.Value}
			where := "servers." + srv.Name + "." + p.Name
			if !cluster.ValidName(p.Name) {
				add(pk.Line, "partition name %q is not valid", p.Name)
			}
			switch pv.Kind {
			case yaml.ScalarNode:
				if pv.Value == "" {
					add(pv.Line, "%s: empty directory", where)
				}
				p.Path = base.Resolve(pv.Value)
			case yaml.MappingNode:
				var spec commandSpec
				if err := cluster.DecodeStrict(pv, base.Path, &spec); err != nil {
					problems = append(problems, err)
					continue
				}
				p.Dump, p.Restore, p.Volumes = spec.Dump, spec.Restore, spec.Volumes
				if p.Dump == "" || p.Restore == "" {
					add(pv.Line, "%s: a command pair needs both dump: and restore:", where)
				}
				if !strings.Contains(p.Dump, "{volume}") {
					add(pv.Line, "%s: the dump command must name {volume}", where)
				}
				if len(p.Volumes) == 0 {
					add(pv.Line, "%s: a command pair lists its volumes: [..]", where)
				}
			default:
				add(pv.Line, "%s must be a directory or a command pair (dump:, restore:, volumes:)", where)
			}
			srv.Partitions = append(srv.Partitions, p)
		}
		slices.SortFunc(srv.Partitions, func(a, b Partition) int { return strings.Compare(a.Name, b.Name) })
		servers = append(servers, srv)
	}
	slices.SortFunc(servers, func(a, b Server) int { return strings.Compare(a.Name, b.Name) })
	return servers, problems
}
