package main

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/abs-backup/abs/api"
	"github.com/abs-backup/abs/cluster"
)

// operatorClient connects to the master named by --master / ABS_MASTER with
// the operator identity in --certs / ABS_CERTS.
type operatorClient struct {
	api.OperatorServiceClient
	conn    *grpc.ClientConn
	timeout time.Duration
	addr    string
}

func (g *Globals) dial() (*operatorClient, error) {
	if g.MasterAddr == "" {
		return nil, fail(exitUsage, "which master? give --master HOST:PORT or set ABS_MASTER")
	}
	if g.Certs == "" {
		return nil, fail(exitUsage, "no operator identity: give --certs DIR or set ABS_CERTS (make one with `abs certs issue --role operator`)")
	}
	timeout, err := time.ParseDuration(g.Timeout)
	if err != nil || timeout <= 0 {
		return nil, fail(exitUsage, "--timeout %q is not a duration like 30s", g.Timeout)
	}
	creds, err := cluster.LoadCredentials(g.Certs)
	if err != nil {
		return nil, fail(exitConnect, "%v", err)
	}
	if err := creds.Require(cluster.RoleOperator); err != nil {
		return nil, fail(exitConnect, "%v", err)
	}
	conn, err := grpc.NewClient(g.MasterAddr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientTLS(cluster.RoleMaster))))
	if err != nil {
		return nil, fail(exitUsage, "bad master address %q: %v", g.MasterAddr, err)
	}
	return &operatorClient{OperatorServiceClient: api.NewOperatorServiceClient(conn), conn: conn, timeout: timeout, addr: g.MasterAddr}, nil
}

func (c *operatorClient) Close() { c.conn.Close() }

// call bounds one RPC by --timeout and turns transport failures into an
// operator-readable error.
func (c *operatorClient) call(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := f(ctx)
	if err != nil && exitCode(err) == exitConnect {
		return fail(exitConnect, "cannot reach the master at %s: %v\n(is `abs master` running there? check --master / ABS_MASTER and that --certs holds an operator certificate of this realm)", c.addr, err)
	}
	return err
}

// conn helpers for commands: dial, run, close.
func withClient(g *Globals, f func(c *operatorClient) error) error {
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}
