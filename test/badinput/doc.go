// Package badinput checks what runlog does with input it did not write or
// must not accept (issue 5): foreign or corrupt messages another program
// published on an instance's subject, oversized payloads and commits,
// invalid instance ids and a closed connection. Every test runs on a real
// embedded nats-server. See docs/RELIABILITY.md.
//
//	go test -race ./test/badinput/
//
// The package has no API; everything is in its _test.go files.
package badinput
