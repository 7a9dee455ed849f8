package lifecycle

import (
	"fmt"
	"testing"
	"time"

	"github.com/runlog/runlog/workflow"
)

// TestLeaseViewIsSwept: the leases a store notes and never releases are
// forgotten once their time has passed, every leaseSweepEvery notes; a
// lease with no expiry, and a live one, stay.
func TestLeaseViewIsSwept(t *testing.T) {
	s := &Store{}
	task := workflow.NewTaskID("t")
	past := time.Now().Add(-time.Minute)
	for i := range leaseSweepEvery - 2 {
		s.noteLease(LeaseKey{Instance: fmt.Sprint("dead-", i), Task: task}, "w", past, time.Second)
	}
	s.noteLease(LeaseKey{Instance: "forever", Task: task}, "w", past, 0)
	s.noteLease(LeaseKey{Instance: "live", Task: task}, "w", time.Now(), time.Hour) // the sweep's turn
	n := 0
	s.leaseView.Range(func(any, any) bool { n++; return true })
	if n != 2 || !s.leaseCertain(LeaseKey{Instance: "forever", Task: task}, "w") || !s.leaseCertain(LeaseKey{Instance: "live", Task: task}, "w") {
		t.Errorf("after the sweep the view holds %d leases, want the 2 it can count on", n)
	}
}
