package catalog_test

import (
	"fmt"
	"time"

	"github.com/abs-backup/abs/master/catalog"
	"github.com/abs-backup/abs/statemachine"
)

// The commit loop's use of the catalog: after the journal has made a
// record durable at index idx, apply it to the state and store the records
// Apply changed, with idx, in one batch.
func Example() {
	journal := statemachine.JournalInfo{ID: "0123456789abcdef0123456789abcdef", Realm: "athena", Mode: "normal"}
	state := statemachine.NewState(journal)
	cat, err := catalog.Open("", catalog.Options{InMemory: true})
	if err != nil {
		panic(err)
	}
	defer cat.Close()

	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cmd := statemachine.QueueDump{Target: statemachine.Target{Scope: statemachine.ScopeServer, Server: "fs1"}, By: "alice"}
	events, err := statemachine.Decide(state, cmd, now)
	if err != nil {
		panic(err)
	}
	idx := state.Applied + 1 // in the master: the index journal.Append returned
	out := state.Apply(idx, events)

	b := cat.NewBatch()
	for _, r := range out.Records {
		if err := b.Put(r); err != nil {
			panic(err)
		}
	}
	b.SetApplied(journal.ID, idx)
	if err := b.Commit(); err != nil {
		panic(err)
	}

	meta, _ := cat.Meta()
	fmt.Println("applied", meta.Applied)
	cat.Jobs(0, func(j statemachine.Job) bool {
		fmt.Println(j.ID, j.State, j.Target)
		return true
	})
	// Output:
	// applied 2
	// ntz1z-1 queued fs1
}
