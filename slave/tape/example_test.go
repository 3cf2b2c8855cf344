package tape_test

import (
	"fmt"
	"log"
	"os"
	"time"

	"github.com/abs-backup/abs/slave/tape"
)

// A media slave labels a blank cartridge, writes a dump as a tape file, and
// an operator lists the cartridge with no library at all.
func Example() {
	dir, err := os.MkdirTemp("", "library")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	names, err := tape.NewCartridges(dir, 2, "A") // abs tape new --library DIR --count 2
	if err != nil {
		log.Fatal(err)
	}
	capacity, _ := tape.ParseSize("10MiB")
	lib, err := tape.OpenLibrary(dir, 1, capacity)
	if err != nil {
		log.Fatal(err)
	}
	d, err := lib.Load(0, names[0])
	if err != nil {
		log.Fatal(err)
	}
	when := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := d.WriteLabel(tape.Label{Label: "athena-7f3a-000012", Realm: "athena", Created: when}); err != nil {
		log.Fatal(err)
	}
	w, err := d.Append(tape.FileHeader{Job: "K7Q2", Volume: "user.alice", Server: "afs1", Partition: "/vicepa", DumpDate: when}, nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := w.Write([]byte("a tar stream")); err != nil {
		log.Fatal(err) // on ErrEndOfTape: Close(true) and go on on another cartridge
	}
	if _, _, err := w.Close(false); err != nil { // durable once Close returns
		log.Fatal(err)
	}
	if err := d.Unload(); err != nil {
		log.Fatal(err)
	}

	label, files, err := tape.List(lib.Path(names[0])) // abs tape ls
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(names, label.Label)
	for _, f := range files {
		fmt.Println(f.Number, f.Volume, f.Offset, f.Size, f.SHA256[:12], f.Complete)
	}
	// Output:
	// [A00001 A00002] athena-7f3a-000012
	// 1 user.alice 512 12 2d357e5f0284 true
}
