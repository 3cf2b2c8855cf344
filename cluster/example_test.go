package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/abs-backup/abs/cluster"
)

func ExampleParse() {
	cfg, err := cluster.Parse("master.yaml", []byte(`
cluster:
  realm: athena
  master: 127.0.0.1:7400
  slaves: [tape1, tape2]
node:
  name: green-acres
  data: /var/lib/abs/master
  listen: 127.0.0.1:7400
  certs: /etc/abs/green-acres
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Node.Name, cfg.Cluster.Hash())

	_, err = cluster.Parse("master.yaml", []byte(`
cluster:
  realm: athena
  master: localhost
node:
  name: green-acres
  listn: 127.0.0.1:7400
`))
	fmt.Println(err)
	// Output:
	// green-acres 576746c3f32c689a
	// master.yaml: node.data is required
	// master.yaml: node.listen is required
	// master.yaml: node.certs is required
	// master.yaml:4: cluster.master "localhost" is not host:port
	// master.yaml:7: unknown key "listn" in node (known: name, data, listen, metrics, certs)
}

func ExampleIssue() {
	dir, err := os.MkdirTemp("", "abs-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	now := time.Now()

	// abs certs init-ca, then abs certs issue for a node.
	if err := cluster.InitCA(filepath.Join(dir, "ca"), "athena", now); err != nil {
		panic(err)
	}
	certs := filepath.Join(dir, "alice")
	if err := cluster.Issue(filepath.Join(dir, "ca"), cluster.RoleOperator, "alice", certs, nil, now); err != nil {
		panic(err)
	}

	creds, err := cluster.LoadCredentials(certs)
	if err != nil {
		panic(err)
	}
	fmt.Println(creds.Identity)
	fmt.Println(creds.Require(cluster.RoleOperator) == nil)
	// Output:
	// operator alice
	// true
}
