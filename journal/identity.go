package journal

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Journal modes, recorded in the identity.
const (
	ModeNormal   = "normal"
	ModeCrippled = "crippled"
	// ModeSlave is a media slave's own journal (its orders and reports).
	ModeSlave = "slave"
)

// Identity names a journal. It is the payload of the first record (index 1)
// and never changes afterwards.
type Identity struct {
	// JournalID is 32 lowercase hex characters: 128 random bits from
	// crypto/rand, drawn once when the journal is created.
	JournalID string `msgpack:"id"`
	// Realm is the backup realm (cluster) the journal belongs to.
	Realm string `msgpack:"realm"`
	// Mode is ModeNormal, ModeCrippled or ModeSlave.
	Mode string `msgpack:"mode"`
	// Created is the creation time in unix nanoseconds.
	Created int64 `msgpack:"created"`
}

// NewIdentity returns an identity with a fresh random JournalID.
func NewIdentity(realm, mode string, now time.Time) (Identity, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Identity{}, fmt.Errorf("journal: new identity: %w", err)
	}
	id := Identity{JournalID: hex.EncodeToString(b[:]), Realm: realm, Mode: mode, Created: now.UnixNano()}
	if err := id.validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

func (id Identity) validate() error {
	if len(id.JournalID) != 32 {
		return fmt.Errorf("journal: identity: id %q is not 32 hex characters", id.JournalID)
	}
	for _, c := range []byte(id.JournalID) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("journal: identity: id %q is not lowercase hex", id.JournalID)
		}
	}
	if id.Realm == "" {
		return fmt.Errorf("journal: identity: empty realm")
	}
	if id.Mode != ModeNormal && id.Mode != ModeCrippled && id.Mode != ModeSlave {
		return fmt.Errorf("journal: identity: mode %q is not %q, %q or %q", id.Mode, ModeNormal, ModeCrippled, ModeSlave)
	}
	return nil
}

func encodeIdentity(id Identity) ([]byte, error) {
	b, err := msgpack.Marshal(&id)
	if err != nil {
		return nil, fmt.Errorf("journal: encode identity: %w", err)
	}
	return b, nil
}

func decodeIdentity(b []byte) (Identity, error) {
	var id Identity
	if err := msgpack.Unmarshal(b, &id); err != nil {
		return Identity{}, err
	}
	if err := id.validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}
