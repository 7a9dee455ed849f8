package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// versionView is what 'replay version' prints.
type versionView struct {
	Version    string `json:"version"`            // the module's version, "(devel)" for a build from a checkout
	Revision   string `json:"revision,omitempty"` // the VCS revision it was built from, when known
	Modified   bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	Go         string `json:"go"`
	NATSServer string `json:"nats_server"` // the embedded server's version
	NATSClient string `json:"nats_client"`
}

// buildVersion reads the binary's build information.
func buildVersion() versionView {
	v := versionView{Version: "(unknown)", Go: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Version = bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	for _, d := range bi.Deps {
		switch d.Path {
		case "github.com/nats-io/nats-server/v2":
			v.NATSServer = d.Version
		case "github.com/nats-io/nats.go":
			v.NATSClient = d.Version
		}
	}
	return v
}

func runVersion(_ context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("version takes no arguments")
	}
	v := buildVersion()
	switch e.output {
	case outJSON:
		return writeJSON(e.stdout, v)
	case outNDJSON:
		return writeNDJSON(e.stdout, v)
	}
	rev := ""
	if v.Revision != "" {
		rev = " " + v.Revision
		if v.Modified {
			rev += " (modified)"
		}
	}
	_, err := fmt.Fprintf(e.stdout, "replay %s%s, %s, nats-server %s, nats.go %s\n", v.Version, rev, v.Go, v.NATSServer, v.NATSClient)
	return err
}
