package main

import (
	"errors"
	"strings"
	"testing"
)

// TestCompareRunsEachDataSetInMirroredOrder: after the row's first run on
// the -users data set, the comparison runs it on the -compare-users one
// twice, then on the -users one again, and compares the means of each
// side; a run without a figure counts on neither side.
func TestCompareRunsEachDataSetInMirroredOrder(t *testing.T) {
	big, small := &dataset{users: 1_000_000}, &dataset{users: 1000}
	ceiling := func(ops float64) *phaseJSON { return &phaseJSON{OpsPerSec: ops} }
	first := scenarioResult{Name: "check", Peak: 100, AdjacentCeiling: ceiling(400)}
	next := []scenarioResult{
		{Name: "check", Peak: 120, AdjacentCeiling: ceiling(400)},
		{Name: "check", Peak: 110, AdjacentCeiling: ceiling(550)},
		{Name: "check", Peak: 90, AdjacentCeiling: ceiling(300)},
	}
	var order []*dataset
	row, err := compareOn(big, small, first, func(ds *dataset) (scenarioResult, error) {
		order = append(order, ds)
		res := next[0]
		next = next[1:]
		return res, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 3 || order[0] != small || order[1] != small || order[2] != big {
		t.Fatalf("measured on %v, want the compared set twice, then -users", order)
	}
	var users []int
	for _, r := range row.Runs {
		users = append(users, r.Users)
	}
	if len(users) != 4 || users[0] != 1_000_000 || users[1] != 1000 || users[2] != 1000 || users[3] != 1_000_000 {
		t.Fatalf("runs of %v users, want 1000000, 1000, 1000, 1000000", users)
	}
	// Peaks: (100+90)/2 = 95 against (120+110)/2 = 115. Shares of the
	// ceiling next to each: (25+30)/2 = 27.5 against (30+20)/2 = 25.
	if d := row.PeakDifferencePct; d == nil || *d > -17.39 || *d < -17.40 {
		t.Errorf("peak difference %v, want -17.39 %%", signedPct(d))
	}
	if d := row.AdjacentDifferencePct; d == nil || *d < 9.99 || *d > 10.01 {
		t.Errorf("adjacent difference %v, want +10 %%", signedPct(d))
	}

	// A failed run counts on neither side; a side with no figure at all
	// gives no difference, and no ceiling next to any run gives none either.
	failed := scenarioResult{Name: "start", Error: "closed loop: boom\nmore"}
	row, err = compareOn(big, small, scenarioResult{Name: "start", Peak: 80}, func(ds *dataset) (scenarioResult, error) {
		if ds == small {
			return failed, nil
		}
		return scenarioResult{Name: "start", Peak: 60}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if row.PeakDifferencePct != nil || row.AdjacentDifferencePct != nil {
		t.Errorf("differences %s, %s with no run on one side, want none", signedPct(row.PeakDifferencePct), signedPct(row.AdjacentDifferencePct))
	}
	if row.Runs[1].Error != "closed loop: boom" {
		t.Errorf("the failed run's error is %q", row.Runs[1].Error)
	}

	// A setup failure stops the comparison with its error.
	stop := errors.New("cancelled")
	if _, err := compareOn(big, small, first, func(*dataset) (scenarioResult, error) { return scenarioResult{}, stop }); !errors.Is(err, stop) {
		t.Errorf("compareOn returned %v, want %v", err, stop)
	}
}

// TestComparisonIsInTheReport: the section names both data sets, every run
// and both differences, and a failed run by its error.
func TestComparisonIsInTheReport(t *testing.T) {
	cfg, err := parseFlags([]string{"-users", "1000000", "-compare-users", "1000"})
	if err != nil {
		t.Fatal(err)
	}
	res := newResults(cfg)
	if res.Config["compare_users"] != 1000 {
		t.Errorf("the JSON's compare_users is %v", res.Config["compare_users"])
	}
	row := comparisonRow{Name: "check", Runs: []comparisonRun{
		{Users: 1_000_000, Peak: 20_000, PctAdjacent: 50, P99: 7.5, PeakRSSMB: 101},
		{Users: 1000, Peak: 21_000, PctAdjacent: 52, P99: 6.25, PeakRSSMB: 99},
		{Users: 1000, Error: "open loop: refused"},
		{Users: 1_000_000, Peak: 19_000, P99: 8, PeakRSSMB: 103},
	}}
	row.compute(1_000_000, 1000)
	res.Comparison = &usersComparison{Users: 1_000_000, CompareUsers: 1000, Seed: seedInfo{Seconds: 0.1, Method: "bulk"}, Rows: []comparisonRow{row}}
	md := res.markdown()
	for _, want := range []string{
		"#### 1,000,000 users against 1,000, alternated",
		"| check | 20,000/s · 50 % · p99 7.50 ms · 101 MB | 21,000/s · 52 % · p99 6.25 ms · 99 MB | error: open loop: refused | 19,000/s · p99 8.00 ms · 103 MB | -7.1 % | -3.8 % |",
		"at 0.5 × that peak",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	plain := newResults(cfg)
	if md := plain.markdown(); strings.Contains(md, "alternated") {
		t.Errorf("a run without a comparison reports one:\n%s", md)
	}
}
