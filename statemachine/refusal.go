package statemachine

import (
	"errors"
	"fmt"
)

// Code classifies a refusal so the API layer can map it (to gRPC codes, to
// exit statuses) without parsing messages.
type Code uint8

const (
	InvalidArgument    Code = 1 // the command is malformed
	NotFound           Code = 2 // it names something that does not exist
	FailedPrecondition Code = 3 // valid, but not in the current state
	Unavailable        Code = 4 // not now (e.g. the master is stopping)
	Unregistered       Code = 5 // a slave this master does not know: it must register (again)
)

func (c Code) String() string {
	switch c {
	case InvalidArgument:
		return "invalid argument"
	case NotFound:
		return "not found"
	case FailedPrecondition:
		return "failed precondition"
	case Unavailable:
		return "unavailable"
	case Unregistered:
		return "unregistered"
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Refusal is Decide's answer to a command it will not turn into events. It is
// a user-facing error: Msg says what is wrong and, where it can, what to do.
type Refusal struct {
	Code Code
	Msg  string
}

func (r *Refusal) Error() string { return r.Msg }

func refuse(code Code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// AsRefusal returns the refusal inside err, if any.
func AsRefusal(err error) (*Refusal, bool) {
	var r *Refusal
	ok := errors.As(err, &r)
	return r, ok
}
