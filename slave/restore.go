package slave

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"time"

	"github.com/abs-backup/abs/slave/source"
	"github.com/abs-backup/abs/slave/tape"
)

// RestoreOrder is a restore the master ordered: one volume, a target
// directory on this slave's host, and the plan (a full dump, then the
// incrementals that chain after it), each naming its tapes.
type RestoreOrder struct {
	Job       string       `msgpack:"j"`
	Server    string       `msgpack:"sv"`
	Partition string       `msgpack:"p"`
	Volume    string       `msgpack:"v"`
	To        string       `msgpack:"to"`
	Plan      []DumpRecord `msgpack:"plan"`
	Origin    string       `msgpack:"or,omitempty"` // journal ID of the master that gave the order
}

// restorer returns what restores the partition's dumps: a directory
// partition restores into a directory, a command pair through its restore
// command.
func restorer(cfg *Config, server, partition string) (source.Restorer, error) {
	for _, s := range cfg.Servers {
		if s.Name != server {
			continue
		}
		for _, p := range s.Partitions {
			if p.Name == partition {
				if r, ok := NewSource(server, p).(source.Restorer); ok {
					return r, nil
				}
			}
		}
	}
	if server != "" {
		return source.DirRestorer{}, nil // a directory restore needs no config
	}
	return nil, fmt.Errorf("no partition %s/%s in this slave's config", server, partition)
}

// runRestore applies the plan's dumps in order to the target, reading each
// dump's parts from the cartridges that carry its labels, and checks each
// whole dump's size and SHA-256 against the master's record.
func (s *Slave) runRestore(ctx context.Context, drive int, o RestoreOrder) (int, int64, error) {
	if len(o.Plan) == 0 {
		return 0, 0, errors.New("empty restore plan")
	}
	rs, err := restorer(s.config(), o.Server, o.Partition)
	if err != nil {
		return 0, 0, err
	}
	var after time.Time
	var bytes int64
	for i, d := range o.Plan {
		if err := ctx.Err(); err != nil {
			return i, bytes, fmt.Errorf("%w: before dump %d of %d: %w", ErrAborted, i+1, len(o.Plan), err)
		}
		pr := &partReader{s: s, ctx: ctx, drive: drive, d: d, h: sha256.New()}
		st, err := rs.Restore(ctx, o.To, pr, source.RestoreOptions{After: after, Volume: o.Volume})
		if err == nil {
			err = pr.finish()
		}
		pr.close()
		if err != nil {
			if ctx.Err() != nil {
				return i, bytes, fmt.Errorf("%w: %w", ErrAborted, err)
			}
			return i, bytes, fmt.Errorf("dump %d of %d (%s, %s): %w", i+1, len(o.Plan), d.DumpDate.UTC().Format(time.RFC3339), d.Tapes, err)
		}
		bytes += pr.n
		after = st.DumpDate
		s.agent.queue(report{Kind: "status", Job: o.Job, Volumes: 0, Bytes: bytes,
			Note: fmt.Sprintf("restored dump %d of %d", i+1, len(o.Plan))})
	}
	return 1, bytes, nil
}

// partReader reads one dump across its parts: the first at file d.File of
// the cartridge labeled d.Tapes[0], each next one on the cartridge of the
// next label (the file that continues it). It loads each cartridge in the
// slave's drive in turn.
type partReader struct {
	s     *Slave
	ctx   context.Context
	drive int
	d     DumpRecord
	h     hash.Hash
	n     int64

	part int // index into d.Tapes of the part being read
	dr   tape.Drive
	rc   io.ReadCloser
	prev string // label of the previous part's cartridge
}

func (p *partReader) Read(b []byte) (int, error) {
	for {
		if p.rc == nil {
			if p.part >= len(p.d.Tapes) {
				return 0, io.EOF
			}
			if err := p.open(); err != nil {
				return 0, err
			}
		}
		n, err := p.rc.Read(b)
		if p.h != nil {
			p.h.Write(b[:n])
		}
		p.n += int64(n)
		if errors.Is(err, io.EOF) {
			if cerr := p.rc.Close(); cerr != nil {
				return n, cerr
			}
			p.rc = nil
			p.dr.Unload()
			p.dr = nil
			p.prev = p.d.Tapes[p.part]
			p.part++
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// open loads the cartridge carrying the next part and opens that part.
func (p *partReader) open() error {
	label := p.d.Tapes[p.part]
	name, err := p.s.findCartridge(label)
	if err != nil {
		return err
	}
	dr, err := p.s.library.Load(p.drive, name)
	if err != nil {
		return fmt.Errorf("load %s (label %s): %w", name, label, err)
	}
	files, err := dr.Files()
	if err != nil && len(files) == 0 {
		dr.Unload()
		return err
	}
	n := 0
	for _, f := range files {
		if p.part == 0 && f.Number == p.d.File {
			if f.Volume != p.d.Volume || f.Part != 1 || (p.d.Server != "" && f.Server != p.d.Server) || (p.d.Partition != "" && f.Partition != p.d.Partition) {
				dr.Unload()
				return fmt.Errorf("file %d of cartridge %s (label %s) is part %d of %s/%s/%s, not the dump of %s/%s/%s",
					f.Number, name, label, f.Part, f.Server, f.Partition, f.Volume, p.d.Server, p.d.Partition, p.d.Volume)
			}
			if len(p.d.Tapes) == 1 && !f.Continues && p.d.SHA256 != "" {
				// A dump in one part: the tape's reader checks the payload
				// against its trailer, so the record is checked against the
				// trailer here, with no second hash of the stream.
				if f.TotalSize != p.d.Bytes || f.TotalSHA256 != p.d.SHA256 {
					dr.Unload()
					return fmt.Errorf("file %d of cartridge %s (label %s) holds %d bytes with SHA-256 %s; the master recorded %d bytes, %s",
						f.Number, name, label, f.TotalSize, f.TotalSHA256, p.d.Bytes, p.d.SHA256)
				}
				p.h = nil
			}
			n = f.Number
			break
		}
		if p.part > 0 && f.Volume == p.d.Volume && f.Part == p.part+1 && f.PrevLabel == p.prev {
			n = f.Number
			break
		}
	}
	if n == 0 {
		dr.Unload()
		return fmt.Errorf("cartridge %s (label %s) has no part %d of the dump of %s", name, label, p.part+1, p.d.Volume)
	}
	rc, err := dr.Open(n)
	if err != nil {
		dr.Unload()
		return err
	}
	p.dr, p.rc = dr, rc
	return nil
}

// finish reads what the restorer left unread (a tar reader stops at the
// end marker) and checks the whole dump against the master's record.
func (p *partReader) finish() error {
	if _, err := io.Copy(io.Discard, p); err != nil {
		return err
	}
	if p.d.SHA256 == "" {
		return nil // a dump named by tape and file, which the master has no record of: the tape's own checksums were checked
	}
	if p.h == nil { // one part, checked against its trailer at open
		if p.n != p.d.Bytes {
			return fmt.Errorf("the dump read back is %d bytes; the master recorded %d", p.n, p.d.Bytes)
		}
		return nil
	}
	if sum := hex.EncodeToString(p.h.Sum(nil)); p.n != p.d.Bytes || sum != p.d.SHA256 {
		return fmt.Errorf("the dump read back is %d bytes with SHA-256 %s; the master recorded %d bytes, %s", p.n, sum, p.d.Bytes, p.d.SHA256)
	}
	return nil
}

func (p *partReader) close() {
	if p.rc != nil {
		p.rc.Close()
	}
	if p.dr != nil {
		p.dr.Unload()
	}
}

// findCartridge returns the external name of the cartridge carrying label.
func (s *Slave) findCartridge(label string) (string, error) {
	names, err := s.library.Cartridges()
	if err != nil {
		return "", err
	}
	slices.Sort(names)
	for _, name := range names {
		l, err := readLabelOf(s.library, name)
		if err == nil && l.Label == label {
			return name, nil
		}
	}
	return "", fmt.Errorf("no cartridge in library %s carries label %s (load it and retry)", s.library.Dir(), label)
}

// readLabelOf reads only a cartridge's label (List would read and hash
// every payload of every cartridge searched).
func readLabelOf(lib *tape.FileLibrary, name string) (tape.Label, error) {
	f, err := os.Open(lib.Path(name))
	if err != nil {
		return tape.Label{}, err
	}
	defer f.Close()
	return tape.ReadLabel(f)
}
