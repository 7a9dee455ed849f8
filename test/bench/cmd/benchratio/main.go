// Command benchratio summarises `go test -bench` outputs of test/bench:
// the median of each metric across passes, and the ratios of issue 6's
// targets computed per pass, then their median. A pass is one file of a
// run over all benchmarks (best: raw and runlog benchmarks of a pair then
// ran seconds apart), or the i-th result of each benchmark in a file
// written with -count. It prints Markdown tables.
//
//	go run ./test/bench/cmd/benchratio pass1.txt pass2.txt ...
//	go run ./test/bench/cmd/benchratio count5.txt
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

type pass map[string]map[string]float64 // benchmark → unit → value

var procSuffix = regexp.MustCompile(`-\d+$`)

// parse reads one output file. A benchmark that appears k times (a run
// with -count k) contributes to k passes: its i-th line to the i-th.
func parse(path string) ([]pass, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var ps []pass
	seen := map[string]int{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := procSuffix.ReplaceAllString(strings.TrimPrefix(fields[0], "Benchmark"), "")
		m := map[string]float64{}
		for i := 2; i+1 < len(fields); i += 2 {
			if v, err := strconv.ParseFloat(fields[i], 64); err == nil {
				m[fields[i+1]] = v
			}
		}
		k := seen[name]
		seen[name]++
		for len(ps) <= k {
			ps = append(ps, pass{})
		}
		ps[k][name] = m
		if k == 0 {
			order = append(order, name)
		}
	}
	return ps, order, sc.Err()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type target struct {
	label    string
	num, den []string
	limit    float64
	atLeast  bool // throughput ratio: den/num must be >= limit
	official bool // one of issue 6's targets
}

var targets = []target{
	{"PrepareRunFresh / RawPublishCAS", []string{"PrepareRunFresh"}, []string{"RawPublishCAS"}, 1.15, false, true},
	{"PrepareRunFresh / KVCreate", []string{"PrepareRunFresh"}, []string{"KVCreate"}, 1.0, false, true},
	{"PrepareRunUseExisting / RawGetLast", []string{"PrepareRunUseExisting"}, []string{"RawGetLast"}, 1.25, false, true},
	{"PrepareRunTerminateExisting / (RawGetLast + RawPublishCAS)", []string{"PrepareRunTerminateExisting"}, []string{"RawGetLast", "RawPublishCAS"}, 1.4, false, true},
	{"Checkpoint / RawPublishCAS", []string{"Checkpoint"}, []string{"RawPublishCAS"}, 1.25, false, true},
	{"PrepareRunFreshParallel / RawPublishCASParallel (throughput)", []string{"PrepareRunFreshParallel"}, []string{"RawPublishCASParallel"}, 0.8, true, true},
	{"LoadCold10k / RawRead10k", []string{"LoadCold10k"}, []string{"RawRead10k"}, 1.3, false, true},
	{"PrepareRunFreshSyncAlways / RawPublishCASSyncAlways", []string{"PrepareRunFreshSyncAlways"}, []string{"RawPublishCASSyncAlways"}, 1.15, false, false},
	{"PrepareRunUseExistingUncached / RawGetLast", []string{"PrepareRunUseExistingUncached"}, []string{"RawGetLast"}, 1.25, false, false},
	{"PrepareRunTerminateExistingUncached / (RawGetLast + RawPublishCAS)", []string{"PrepareRunTerminateExistingUncached"}, []string{"RawGetLast", "RawPublishCAS"}, 1.4, false, false},
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchratio pass1.txt [pass2.txt ...]")
		os.Exit(2)
	}
	var passes []pass
	var order []string
	for _, path := range os.Args[1:] {
		ps, o, err := parse(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		passes = append(passes, ps...)
		for _, n := range o {
			if !slices.Contains(order, n) {
				order = append(order, n)
			}
		}
	}
	values := func(name, unit string) []float64 {
		var v []float64
		for _, p := range passes {
			if x, ok := p[name][unit]; ok {
				v = append(v, x)
			}
		}
		return v
	}
	fmt.Printf("%d passes; medians.\n\n", len(passes))
	fmt.Println("| benchmark | ns/op | cpu-ns/op | B/op | allocs/op | other |")
	fmt.Println("|---|---:|---:|---:|---:|---|")
	for _, n := range order {
		var other []string
		units := map[string]bool{}
		for _, p := range passes {
			for u := range p[n] {
				units[u] = true
			}
		}
		var us []string
		for u := range units {
			switch u {
			case "ns/op", "cpu-ns/op", "B/op", "allocs/op":
			default:
				us = append(us, u)
			}
		}
		slices.Sort(us)
		for _, u := range us {
			other = append(other, fmt.Sprintf("%.4g %s", median(values(n, u)), u))
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", n, num(median(values(n, "ns/op"))), num(median(values(n, "cpu-ns/op"))),
			num(median(values(n, "B/op"))), num(median(values(n, "allocs/op"))), strings.Join(other, ", "))
	}
	fmt.Println()
	fmt.Println("| ratio (per pass, then median) | target | wall | wall range | CPU | wall | CPU |")
	fmt.Println("|---|---:|---:|---:|---:|---|---|")
	for _, t := range targets {
		ratio := func(unit string) []float64 {
			var r []float64
			for _, p := range passes {
				a, b, ok := 0.0, 0.0, true
				for _, n := range t.num {
					v, has := p[n][unit]
					ok = ok && has
					a += v
				}
				for _, n := range t.den {
					v, has := p[n][unit]
					ok = ok && has
					b += v
				}
				if ok && a > 0 && b > 0 {
					if t.atLeast {
						r = append(r, b/a) // throughput = 1/(ns/op)
					} else {
						r = append(r, a/b)
					}
				}
			}
			return r
		}
		w, c := ratio("ns/op"), ratio("cpu-ns/op")
		if len(w) == 0 {
			continue
		}
		verdict := func(v float64) string {
			if t.atLeast && v >= t.limit || !t.atLeast && v <= t.limit {
				return "met"
			}
			return "**missed**"
		}
		op := "≤"
		if t.atLeast {
			op = "≥"
		}
		label := t.label
		if !t.official {
			label += " (extra)"
		}
		fmt.Printf("| %s | %s %.2f | %.2f | %.2f–%.2f | %.2f | %s | %s |\n", label, op, t.limit, median(w), slices.Min(w), slices.Max(w), median(c), verdict(median(w)), verdict(median(c)))
	}
	if f := values("Fold", "events/s"); len(f) > 0 {
		v := median(f)
		verdict := "met"
		if v < 5e6 {
			verdict = "**missed**"
		}
		fmt.Printf("\nFold: %.3g events/s (median; range %.3g–%.3g), target ≥ 5e6: %s\n", v, slices.Min(f), slices.Max(f), verdict)
	}
}

func num(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 1e6:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
