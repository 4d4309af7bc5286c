package main

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// -compare-users measures every row on a second data set as well, to
// compare how Verity holds up as its data grows (for instance a million
// users against 1000). Run by run this machine's speed drifts by tens of
// percent within minutes, so two separate runs of the benchmark cannot
// show a difference of a few percent. Here each row runs four times, in
// the order -users, -compare-users, -compare-users, -users: a drift that
// is linear in time weighs on both data sets' means alike.

// usersComparison is the -compare-users section of the results.
type usersComparison struct {
	Users        int             `json:"users"`         // -users: the table's rows ran on these
	CompareUsers int             `json:"compare_users"` // -compare-users
	Seed         seedInfo        `json:"seed"`          // how the -compare-users template was made
	Rows         []comparisonRow `json:"rows"`
}

// comparisonRow is one row's four runs and what they compare to.
type comparisonRow struct {
	Name string          `json:"name"`
	Runs []comparisonRun `json:"runs"` // in the order measured
	// PeakDifferencePct is the mean peak of the -users runs against that of
	// the -compare-users runs, in percent (negative: slower with -users);
	// AdjacentDifferencePct compares their shares of the HTTP ceiling
	// measured next to each run instead. Absent when a side has no figure.
	PeakDifferencePct     *float64 `json:"peak_difference_pct,omitempty"`
	AdjacentDifferencePct *float64 `json:"adjacent_difference_pct,omitempty"`
}

// comparisonRun is one run of a row: the figures the comparison reads.
type comparisonRun struct {
	Users       int     `json:"users"`
	Peak        float64 `json:"peak_ops_per_sec"`
	PctAdjacent float64 `json:"pct_of_adjacent_http_ceiling,omitempty"`
	P99         float64 `json:"p99_ms"`
	CPUPerOp    float64 `json:"server_cpu_us_per_op"`
	PeakRSSMB   float64 `json:"server_peak_rss_mb"`
	Error       string  `json:"error,omitempty"`
}

func newComparisonRun(users int, s scenarioResult) comparisonRun {
	run := comparisonRun{Users: users, Peak: s.Peak, P99: s.Open.Latency.P99, CPUPerOp: s.CPUPerOp, PeakRSSMB: s.PeakRSSMB, Error: firstLine(s.Error)}
	if s.AdjacentCeiling != nil {
		run.PctAdjacent = 100 * ratio(s.Peak, s.AdjacentCeiling.OpsPerSec)
	}
	return run
}

// compareRow measures spec three more times after first, its run on the
// -users data set, and records the four runs (see compareOn).
func (r *runner) compareRow(ctx context.Context, spec rowSpec, first scenarioResult) error {
	row, err := compareOn(r.data, r.compare, first, func(ds *dataset) (scenarioResult, error) { return r.runRow(ctx, spec, ds) })
	if err != nil {
		return err
	}
	r.results.Comparison.Rows = append(r.results.Comparison.Rows, row)
	return nil
}

// compareOn completes a row's comparison: first is its run on data, then
// measure runs it twice on compare and once more on data.
func compareOn(data, compare *dataset, first scenarioResult, measure func(*dataset) (scenarioResult, error)) (comparisonRow, error) {
	row := comparisonRow{Name: first.Name, Runs: []comparisonRun{newComparisonRun(data.users, first)}}
	for _, ds := range []*dataset{compare, compare, data} {
		res, err := measure(ds)
		if err != nil {
			return row, err
		}
		row.Runs = append(row.Runs, newComparisonRun(ds.users, res))
	}
	row.compute(data.users, compare.users)
	return row, nil
}

// compute sets the differences from the runs: the mean over the runs with
// a figure on each side, -users against -compare-users.
func (c *comparisonRow) compute(users, compareUsers int) {
	c.PeakDifferencePct = difference(c.Runs, users, compareUsers, func(r comparisonRun) float64 { return r.Peak })
	c.AdjacentDifferencePct = difference(c.Runs, users, compareUsers, func(r comparisonRun) float64 { return r.PctAdjacent })
}

func difference(runs []comparisonRun, users, compareUsers int, figure func(comparisonRun) float64) *float64 {
	mean := func(n int) float64 {
		sum, count := 0.0, 0
		for _, r := range runs {
			if v := figure(r); r.Users == n && v > 0 {
				sum += v
				count++
			}
		}
		return ratio(sum, float64(count))
	}
	a, b := mean(users), mean(compareUsers)
	if a == 0 || b == 0 {
		return nil
	}
	d := 100 * (a/b - 1)
	return &d
}

// markdown renders the comparison as a table and a line of explanation.
func (c *usersComparison) markdown(openFraction any) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n#### %s users against %s, alternated\n\n", num(float64(c.Users)), num(float64(c.CompareUsers)))
	b.WriteString("| row |")
	for _, n := range []int{c.Users, c.CompareUsers, c.CompareUsers, c.Users} {
		fmt.Fprintf(&b, " %s users |", num(float64(n)))
	}
	b.WriteString(" peak: difference of the means | % of the HTTP ceiling next to it: difference |\n|---|---|---|---|---|---:|---:|\n")
	for _, row := range c.Rows {
		fmt.Fprintf(&b, "| %s |", row.Name)
		for _, run := range row.Runs {
			switch {
			case run.Error != "" && run.Peak == 0:
				fmt.Fprintf(&b, " error: %s |", run.Error)
			case run.PctAdjacent > 0:
				fmt.Fprintf(&b, " %s/s · %.0f %% · p99 %.2f ms · %.0f MB |", num(run.Peak), run.PctAdjacent, run.P99, run.PeakRSSMB)
			default:
				fmt.Fprintf(&b, " %s/s · p99 %.2f ms · %.0f MB |", num(run.Peak), run.P99, run.PeakRSSMB)
			}
		}
		fmt.Fprintf(&b, " %s | %s |\n", signedPct(row.PeakDifferencePct), signedPct(row.AdjacentDifferencePct))
	}
	fmt.Fprintf(&b, "\nEach row ran four times, in the order of the columns, each on a fresh copy of its data set: a drift of the machine's speed that is linear in time weighs on both data sets' means alike. "+
		"A cell is the run's peak, its share of the HTTP ceiling measured next to it, its p99 in the open loop at %v × that peak and its server's peak RSS. "+
		"A difference is the mean of the %s-user runs against that of the %s-user runs (negative: slower with %s users). "+
		"The %s-user data set was seeded in %.1f s via %s%s.\n",
		openFraction, num(float64(c.Users)), num(float64(c.CompareUsers)), num(float64(c.Users)),
		num(float64(c.CompareUsers)), c.Seed.Seconds, c.Seed.Method, noteSuffix(c.Seed.Error))
	return b.String()
}

// signedPct renders a difference as "+3.2 %", or "n/a" without one.
func signedPct(p *float64) string {
	if p == nil || math.IsNaN(*p) {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f %%", *p)
}
