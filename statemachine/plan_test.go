package statemachine

import (
	"fmt"
	"testing"
)

func TestPlanRestore(t *testing.T) {
	d := func(date, incr int64) Dump {
		return Dump{Volume: "v", DumpDate: date, IncrementDate: incr, Tapes: []string{fmt.Sprint(date)}}
	}
	history := []Dump{
		d(500, 100), // since the first full: it also covers 400..500, so it chains after the newer full
		d(100, 0),   // full
		d(200, 100), // incremental since the full
		d(300, 200), // since the previous
		d(400, 0),   // a newer full
		d(600, 400),
		d(700, 650), // a gap: since 650, but the dump before is 600
		d(800, 600),
	}
	cases := []struct {
		asOf int64
		want string
		err  string
	}{
		{0, "[400 500 600 800]", ""},
		{350, "[100 200 300]", ""},
		{300, "[100 200 300]", ""},
		{299, "[100 200]", ""},
		{100, "[100]", ""},
		{99, "", "no full dump at or before that time"},
		{650, "[400 500 600]", ""},
	}
	for _, c := range cases {
		plan, err := PlanRestore(history, c.asOf)
		if c.err != "" {
			if err == nil || err.Error() != "the volume has "+c.err {
				t.Errorf("asOf %d: err %v, want %q", c.asOf, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("asOf %d: %v", c.asOf, err)
		}
		var dates []int64
		for _, p := range plan {
			dates = append(dates, p.DumpDate)
		}
		if got := fmt.Sprint(dates); got != c.want {
			t.Errorf("asOf %d: plan %s, want %s", c.asOf, got, c.want)
		}
	}
	if _, err := PlanRestore(nil, 0); err == nil {
		t.Fatal("a plan from no dumps")
	}
}
