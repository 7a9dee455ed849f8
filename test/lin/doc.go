// Package lin checks that lifecycle.Store is linearizable (issue 5): many
// clients run randomized operations concurrently against a handful of
// instance ids, every call and return is recorded, and porcupine searches
// for a sequential order of the history that a model of the store
// accepts. The model is in model_test.go, the workload and the runs on
// memlog and on an embedded JetStream server in lin_test.go.
//
//	go test -race ./test/lin/                       # the CI size
//	RUNLOG_LIN_LARGE=1 go test -race ./test/lin/    # the large size
//	RUNLOG_LIN_SEED=42 go test ./test/lin/          # another workload
//
// See docs/RELIABILITY.md. The package has no API; everything is in its
// _test.go files.
package lin
