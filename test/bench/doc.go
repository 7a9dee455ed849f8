// Package bench holds runlog's benchmarks (issue 6): each runlog operation
// next to the raw JetStream operation that is its floor, on the same
// embedded server configuration, plus the scale measurements. See
// BENCHMARKS.md at the module root for the results and how to run them:
//
//	go test -run '^$' -bench . ./test/bench/...
//
// The package has no API; everything is in its _test.go files.
package bench
