// Package crash holds runlog's crash tests (issue 5): an embedded NATS
// server with JetStream runs in a child process (the test binary,
// re-executed), the test writes to it through lifecycle.Store from
// several goroutines, kills it with SIGKILL at a seeded random point,
// restarts it on the same directory and port, and checks that every
// acknowledged decision survived, that nothing was half applied and that
// every history folds and verifies. See docs/RELIABILITY.md ("Crashes"):
//
//	go test -race ./test/crash/                   # CI: 3 kill cycles
//	RUNLOG_SOAK=1 go test -v -timeout 30m ./test/crash/  # 20 kill cycles
//	RUNLOG_SEED=7 go test -v ./test/crash/         # another schedule
//
// The package has no API; everything is in its _test.go files.
package crash
