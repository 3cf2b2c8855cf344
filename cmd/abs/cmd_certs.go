package main

import (
	"fmt"
	"time"

	"github.com/abs-backup/abs/cluster"
)

type certsCmd struct {
	InitCA certsInitCACmd `cmd:"" name:"init-ca" help:"Create a realm CA (ca.crt, ca.key) in a directory."`
	Issue  certsIssueCmd  `cmd:"" help:"Issue a certificate for a master, a slave or an operator, signed by the realm CA."`
}

type certsInitCACmd struct {
	Dir   string `required:"" type:"path" placeholder:"CA_DIR" help:"Directory for ca.crt and ca.key (created 0700)."`
	Realm string `help:"Realm name, recorded in the CA's name (informational)."`
}

func (c *certsInitCACmd) Help() string {
	return "Example:\n  abs certs init-ca --dir ca\n\nKeep ca.key offline once every node has its certificate. Refuses to overwrite an existing CA."
}

func (c *certsInitCACmd) Run() error {
	if err := cluster.InitCA(c.Dir, c.Realm, time.Now()); err != nil {
		return fail(exitFailed, "%v", err)
	}
	fmt.Printf("created realm CA in %s (ca.crt, ca.key)\n", c.Dir)
	return nil
}

type certsIssueCmd struct {
	CA    string   `required:"" name:"ca" type:"existingdir" placeholder:"CA_DIR" help:"The realm CA's directory."`
	Role  string   `required:"" enum:"master,slave,operator" help:"What the certificate may act as: ${enum}."`
	Name  string   `required:"" help:"Node or operator name (the certificate's common name)."`
	Dir   string   `required:"" type:"path" placeholder:"OUT_DIR" help:"Directory for ca.crt, node.crt and node.key."`
	Hosts []string `name:"host" help:"Host names or IP addresses the node serves on (repeatable; default: the name, localhost, 127.0.0.1, ::1)."`
}

func (c *certsIssueCmd) Help() string {
	return `Roles are checked on every call: an operator certificate cannot act as a
slave, a slave certificate cannot call the operator API, and so on.

Examples:
  abs certs issue --ca ca --role master   --name green-acres --dir certs/green-acres
  abs certs issue --ca ca --role slave    --name tape1 --dir certs/tape1 --host tape1.example.org
  abs certs issue --ca ca --role operator --name alice --dir certs/alice`
}

func (c *certsIssueCmd) Run() error {
	role, err := cluster.ParseRole(c.Role)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	if err := cluster.Issue(c.CA, role, c.Name, c.Dir, c.Hosts, time.Now()); err != nil {
		return fail(exitFailed, "%v", err)
	}
	article := "a"
	if role == cluster.RoleOperator {
		article = "an"
	}
	fmt.Printf("issued %s %s certificate for %s in %s (ca.crt, node.crt, node.key)\n", article, role, c.Name, c.Dir)
	return nil
}
