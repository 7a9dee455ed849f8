// Package perms checks runlog under NATS subject permissions (issue 5): a
// writer allowed only the stream's subjects and the JetStream API subjects
// runlog needs, a reader with no publish permission on the stream's
// subjects, and the embedded server's default of listening on no port.
// The minimal permission sets are in perms_test.go (writerPublish,
// readerPublish) and docs/RELIABILITY.md.
//
//	go test -race ./test/perms/
//	RUNLOG_PERMS_EXPLORE=1 go test -run Minimal -v ./test/perms/   # re-derive the minimal sets
//
// The package has no API; everything is in its _test.go files.
package perms
