// Package cluster holds runlog's node-loss test (issue 5): a three-node
// NATS cluster in one process, a stream with three replicas, writers on
// their own connections racing to create the same instance ids under
// policy Fail while they checkpoint and signal, and the stream's leader,
// then a follower, shut down and restarted under that load. It checks
// that nothing acknowledged is lost on any replica, that no id is created
// twice, and that every history folds and verifies. See
// docs/RELIABILITY.md ("Node loss"):
//
//	go test -race ./test/cluster/                 # CI: one round
//	RUNLOG_SOAK=1 go test -v -timeout 30m ./test/cluster/  # five rounds
//	RUNLOG_SEED=7 go test -v ./test/cluster/       # another schedule
//
// The package has no API; everything is in its _test.go files.
package cluster
