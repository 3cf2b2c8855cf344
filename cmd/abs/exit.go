package main

import (
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/abs-backup/abs/cluster"
	"github.com/abs-backup/abs/journal"
	"github.com/abs-backup/abs/master"
)

// Exit statuses: documented in the top-level help (main.go). This file is
// the one place that maps errors to them.
const (
	exitOK       = 0
	exitFailed   = 1                   // the work failed: a job failed or was aborted
	exitUsage    = 2                   // bad command line
	exitRefused  = 3                   // the master refused the request
	exitConnect  = 4                   // cannot reach or authenticate with the master
	exitCorrupt  = journal.ExitCorrupt // 65: damaged journal or catalog
	exitSoftware = 70                  // a bug
	exitIO       = journal.ExitIO      // 74
	exitLocked   = journal.ExitLocked  // 75
	exitConfig   = 78
)

// exitError carries an exit status chosen by a command, with a message
// already shaped for the operator.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

// report prints err for the operator and returns the exit status.
func report(err error) int {
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	msg := err.Error()
	// kong joins the command's error with its hooks' (errors.Join), and
	// status.FromError then puts the whole wrapped text in the message: find
	// the gRPC status itself to print only what the master said.
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		msg = se.GRPCStatus().Message()
	}
	if msg != "" {
		fmt.Fprintf(os.Stderr, "abs: %s\n", msg)
	}
	return code
}

func exitCode(err error) int {
	var ee *exitError
	var locked *journal.LockedError
	var corrupt *journal.CorruptError
	var cfg *cluster.ConfigError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &locked):
		return exitLocked
	case errors.As(err, &corrupt), errors.Is(err, master.ErrCatalog):
		return exitCorrupt
	case errors.As(err, &cfg):
		return exitConfig
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists, codes.OutOfRange:
			return exitRefused
		case codes.Unavailable, codes.Unauthenticated, codes.PermissionDenied, codes.DeadlineExceeded:
			return exitConnect
		}
	}
	return exitFailed
}
