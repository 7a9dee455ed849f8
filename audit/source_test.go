package audit

import (
	"github.com/runlog/runlog/jetstream"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/memlog"
)

// The logs audit reads from and writes to.
var (
	_ Source        = (*memlog.Log)(nil)
	_ Source        = (*jetstream.Log)(nil)
	_ lifecycle.Log = (*jetstream.Log)(nil)
)
