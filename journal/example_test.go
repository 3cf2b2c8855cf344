package journal_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/abs-backup/abs/journal"
)

func Example() {
	tmp, err := os.MkdirTemp("", "journal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "journal")

	// The master creates its journal once...
	id, err := journal.NewIdentity("example", journal.ModeNormal, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	j, err := journal.Create(dir, id, journal.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// ...and appends one record per decision; Append returns once durable.
	for _, ev := range []string{"queued dump", "dispatched dump"} {
		idx, err := j.Append(journal.Entry{Type: journal.TypeEvents, Epoch: 1, Time: time.Now().UnixNano(), Payload: []byte(ev)})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("durable at", idx)
	}
	if err := j.Close(); err != nil {
		log.Fatal(err)
	}

	// Anyone may read it, without a lock, even beside a writer.
	r, err := journal.OpenReader(dir)
	if err != nil {
		log.Fatal(err)
	}
	err = r.Scan(2, func(rec journal.Record) error {
		fmt.Printf("%d %s %q\n", rec.Index, rec.Type, rec.Payload) // Payload is valid only here
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("realm", r.Identity().Realm, "last", r.LastIndex())
	// Output:
	// durable at 2
	// durable at 3
	// 2 events "queued dump"
	// 3 events "dispatched dump"
	// realm example last 3
}
