package events

import (
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/runlog/runlog/workflow"
)

// parsed is a commit as read from the wire, before validation.
type parsed struct {
	V        int
	ID       ulid.ULID
	Instance string
	Time     time.Time
	Command  string
	Actor    string
	Prev     string
	Events   []parsedEvent
}

type parsedEvent struct {
	ID   ulid.ULID
	Type Type
	Run  ulid.ULID
	Data Payload
	Err  error // the payload's decoding error, if any
}

// parseCommit reads a commit payload with the lexer. A malformed envelope
// is an error; a malformed event payload is recorded on its event (so the
// error can name the event).
func parseCommit(data []byte) (*parsed, error) {
	l := &lexer{data: data}
	w := &parsed{}
	err := l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "v":
			var n int64
			n, err = l.int64()
			if n > 1<<31 || n < -1<<31 {
				return l.errorf("version out of range")
			}
			w.V = int(n)
		case "id":
			err = l.text(&w.ID)
		case "instance":
			w.Instance, err = l.str()
		case "time":
			err = l.text(&w.Time)
		case "command":
			w.Command, err = l.str()
		case "actor":
			w.Actor, err = l.str()
		case "prev":
			w.Prev, err = l.str()
		case "events":
			w.Events = w.Events[:0]
			err = l.array(func() error {
				e, err := parseEvent(l)
				w.Events = append(w.Events, e)
				return err
			})
		default:
			return unknownField(k)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := l.end(); err != nil {
		return nil, err
	}
	return w, nil
}

func parseEvent(l *lexer) (parsedEvent, error) {
	var e parsedEvent
	var dataStart, dataEnd = -1, -1
	var inPlace Type // the type the payload was decoded (or failed) as
	err := l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			err = l.text(&e.ID)
		case "type":
			var t string
			t, err = l.str()
			e.Type = Type(t)
		case "run":
			err = l.text(&e.Run)
		case "data":
			l.ws()
			dataStart = l.pos
			if newPayload, ok := registry[e.Type]; ok && e.Data == nil {
				// The type came first (as runlog writes it): decode in place.
				e.Data = newPayload()
				inPlace = e.Type
				if l.null() {
					return nil
				}
				if e.Err = e.Data.(fastPayload).decode(l); e.Err == nil {
					dataEnd = l.pos
					return nil
				}
				l.pos = dataStart // resynchronise past the bad payload
				e.Data = nil
			}
			err = l.skip()
			dataEnd = l.pos
		default:
			return unknownField(k)
		}
		return err
	})
	if err != nil {
		return e, err
	}
	if inPlace != "" && inPlace == e.Type && (e.Err != nil || e.Data != nil) {
		return e, nil // decoded (or failed) in place
	}
	e.Err = nil
	newPayload, ok := registry[e.Type]
	if !ok {
		e.Data = nil
		return e, nil // reported as an unknown type
	}
	p := newPayload()
	if dataStart < 0 {
		e.Err = fmt.Errorf("missing data")
	} else {
		sub := &lexer{data: l.data[:dataEnd], pos: dataStart}
		if sub.null() {
			// encoding/json leaves the payload zero
		} else if d, ok := p.(fastPayload); ok {
			e.Err = d.decode(sub)
		}
	}
	e.Data = p
	return e, nil
}

// fastPayload is implemented by every payload type.
type fastPayload interface {
	decode(l *lexer) error
}

func readTaskID(l *lexer) (*workflow.TaskID, error) {
	if l.null() {
		return nil, nil
	}
	var t workflow.TaskID
	if err := l.text(&t); err != nil {
		return nil, err
	}
	return &t, nil
}

func readTime(l *lexer) (*time.Time, error) {
	if l.null() {
		return nil, nil
	}
	var t time.Time
	if err := l.text(&t); err != nil {
		return nil, err
	}
	return &t, nil
}

func readU8(l *lexer) (*uint8, error) {
	if l.null() {
		return nil, nil
	}
	n, err := l.uint64(255)
	if err != nil {
		return nil, err
	}
	v := uint8(n)
	return &v, nil
}

func readStrings(l *lexer) ([]string, error) {
	if l.null() {
		return nil, nil
	}
	out := []string{}
	err := l.array(func() error {
		s, err := l.str()
		out = append(out, s)
		return err
	})
	return out, err
}

func readTaskIDs(l *lexer) ([]workflow.TaskID, error) {
	if l.null() {
		return nil, nil
	}
	out := []workflow.TaskID{}
	err := l.array(func() error {
		var t workflow.TaskID
		err := l.text(&t)
		out = append(out, t)
		return err
	})
	return out, err
}

func readHint(l *lexer, h *workflow.TaskHint) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "id":
			err = l.text(&h.ID)
		case "priority":
			h.Priority, err = readU8(l)
		case "tags":
			h.Tags, err = readStrings(l)
		default:
			return unknownField(k)
		}
		return err
	})
}

func readPosition(l *lexer) (*workflow.Position, error) {
	if l.null() {
		return nil, nil
	}
	p := &workflow.Position{}
	err := l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "kind":
			err = l.text(&p.Kind)
		case "task_id":
			err = l.text(&p.TaskID)
		case "node_id":
			err = l.text(&p.NodeID)
		case "branches":
			if l.null() {
				return nil
			}
			if p.Branches == nil {
				p.Branches = map[string]workflow.TaskResult{}
			}
			err = l.object(func(label []byte) error {
				name := string(label)
				r := p.Branches[name]
				err := l.object(func(k []byte) error {
					var err error
					switch string(k) {
					case "task_id":
						err = l.text(&r.TaskID)
					case "output":
						r.Output, err = l.bytes()
					default:
						return unknownField(k)
					}
					return err
				})
				p.Branches[name] = r
				return err
			})
		case "entered_at":
			err = l.text(&p.EnteredAt)
		case "wake_at":
			p.WakeAt, err = readTime(l)
		case "next_task_id":
			p.NextTaskID, err = readTaskID(l)
		case "signal_name":
			p.SignalName, err = l.str()
		case "iteration":
			var n uint64
			n, err = l.uint64(1<<32 - 1)
			p.Iteration = uint32(n)
		default:
			return unknownField(k)
		}
		return err
	})
	return p, err
}

func (d *SnapshotCreatedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "definition_hash":
			err = l.text(&d.DefinitionHash)
		case "input":
			d.Input, err = l.bytes()
		case "first_task":
			err = readHint(l, &d.FirstTask)
		case "policy":
			d.Policy, err = l.str()
		case "trace_parent":
			d.TraceParent, err = l.str()
		default:
			return unknownField(k)
		}
		return err
	})
}

func (d *SnapshotDeletedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "reason":
			d.Reason, err = l.str()
		case "discarded_events":
			var n int64
			n, err = l.int64()
			d.DiscardedEvents = int(n)
		default:
			return unknownField(k)
		}
		return err
	})
}

func (d *SignalStoredData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "kind":
			err = l.text(&d.Kind)
		case "reason":
			d.Reason, err = l.str()
		case "requested_by":
			d.RequestedBy, err = l.str()
		case "requested_at":
			err = l.text(&d.RequestedAt)
		default:
			return unknownField(k)
		}
		return err
	})
}

func (d *SignalClearedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "kind":
			err = l.text(&d.Kind)
		case "reason":
			d.Reason, err = l.str()
		default:
			return unknownField(k)
		}
		return err
	})
}

func (d *TaskCompletedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "task_id":
			err = l.text(&d.TaskID)
		case "output":
			d.Output, err = l.bytes()
		default:
			return unknownField(k)
		}
		return err
	})
}

func (d *CheckpointSavedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "position":
			d.Position, err = readPosition(l)
		case "completed":
			if l.null() {
				return nil
			}
			if d.Completed == nil {
				d.Completed = map[workflow.TaskID][]byte{}
			}
			err = l.object(func(k []byte) error {
				var id workflow.TaskID
				if err := id.UnmarshalText(k); err != nil {
					return err
				}
				out, err := l.bytes()
				d.Completed[id] = out
				return err
			})
		case "removed":
			d.Removed, err = readTaskIDs(l)
		case "last_completed_task":
			d.LastCompletedTask, err = readTaskID(l)
		case "hint":
			if l.null() {
				d.Hint = nil
				return nil
			}
			h := &HintChange{}
			err = l.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "priority":
					h.Priority, err = readU8(l)
				case "tags":
					h.Tags, err = readStrings(l)
				default:
					return unknownField(k)
				}
				return err
			})
			d.Hint = h
		case "deadline":
			if l.null() {
				d.Deadline = nil
				return nil
			}
			dl := &workflow.TaskDeadline{}
			err = l.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "task_id":
					err = l.text(&dl.TaskID)
				case "deadline":
					err = l.text(&dl.Deadline)
				case "timeout_ms":
					dl.TimeoutMS, err = l.uint64(1<<64 - 1)
				default:
					return unknownField(k)
				}
				return err
			})
			d.Deadline = dl
		case "clear_deadline":
			d.ClearDeadline, err = l.boolean()
		case "retries":
			if l.null() {
				return nil
			}
			if d.Retries == nil {
				d.Retries = map[workflow.TaskID]workflow.TaskRetryState{}
			}
			err = l.object(func(k []byte) error {
				var id workflow.TaskID
				if err := id.UnmarshalText(k); err != nil {
					return err
				}
				r, err := readRetry(l)
				d.Retries[id] = r
				return err
			})
		case "removed_retries":
			d.RemovedRetries, err = readTaskIDs(l)
		case "loops":
			if l.null() {
				return nil
			}
			if d.Loops == nil {
				d.Loops = map[workflow.TaskID]uint32{}
			}
			err = l.object(func(k []byte) error {
				var id workflow.TaskID
				if err := id.UnmarshalText(k); err != nil {
					return err
				}
				n, err := l.uint64(1<<32 - 1)
				d.Loops[id] = uint32(n)
				return err
			})
		case "removed_loops":
			d.RemovedLoops, err = readTaskIDs(l)
		case "trace_parent":
			if l.null() {
				d.TraceParent = nil
				return nil
			}
			var s string
			s, err = l.str()
			d.TraceParent = &s
		default:
			return unknownField(k)
		}
		return err
	})
}

func readRetry(l *lexer) (workflow.TaskRetryState, error) {
	var r workflow.TaskRetryState
	err := l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "attempts":
			var n uint64
			n, err = l.uint64(1<<32 - 1)
			r.Attempts = uint32(n)
		case "policy":
			err = l.object(func(k []byte) error {
				var err error
				p := &r.Policy
				switch string(k) {
				case "max_retries":
					var n uint64
					n, err = l.uint64(1<<32 - 1)
					p.MaxRetries = uint32(n)
				case "initial_delay":
					var n int64
					n, err = l.int64()
					p.InitialDelay = time.Duration(n)
				case "backoff_multiplier":
					p.BackoffMultiplier, err = l.float64()
				case "max_delay":
					var n int64
					n, err = l.int64()
					p.MaxDelay = time.Duration(n)
				default:
					return unknownField(k)
				}
				return err
			})
		case "last_error":
			r.LastError, err = l.str()
		case "last_failed_worker":
			r.LastFailedWorker, err = l.str()
		case "next_retry_at":
			err = l.text(&r.NextRetryAt)
		default:
			return unknownField(k)
		}
		return err
	})
	return r, err
}

func (d *WorkflowCompletedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		if string(k) != "output" {
			return unknownField(k)
		}
		var err error
		d.Output, err = l.bytes()
		return err
	})
}

func (d *WorkflowFailedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		if string(k) != "error" {
			return unknownField(k)
		}
		var err error
		d.Error, err = l.str()
		return err
	})
}

func (d *WorkflowCancelledData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "reason":
			d.Reason, err = l.str()
		case "by":
			d.By, err = l.str()
		case "at":
			err = l.text(&d.At)
		case "interrupted_at_task":
			d.InterruptedAtTask, err = readTaskID(l)
		default:
			return unknownField(k)
		}
		return err
	})
}

func (d *WorkflowPausedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "reason":
			d.Reason, err = l.str()
		case "by":
			d.By, err = l.str()
		case "at":
			err = l.text(&d.At)
		default:
			return unknownField(k)
		}
		return err
	})
}

func (d *WorkflowUnpausedData) decode(l *lexer) error {
	return l.object(func(k []byte) error { return unknownField(k) })
}

func (d *EventSentData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "name":
			d.Name, err = l.str()
		case "payload":
			d.Payload, err = l.bytes()
		default:
			return unknownField(k)
		}
		return err
	})
}

func (d *EventConsumedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "name":
			d.Name, err = l.str()
		case "event_id":
			err = l.text(&d.EventID)
		default:
			return unknownField(k)
		}
		return err
	})
}

func (d *TaskClaimedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "task_id":
			err = l.text(&d.TaskID)
		case "worker":
			d.Worker, err = l.str()
		case "ttl_ms":
			d.TTLMS, err = l.uint64(1<<64 - 1)
		case "taken_over":
			if l.null() {
				d.TakenOver = nil
				return nil
			}
			r := &ClaimRef{}
			err = l.object(func(k []byte) error {
				var err error
				switch string(k) {
				case "claim":
					err = l.text(&r.Claim)
				case "worker":
					r.Worker, err = l.str()
				default:
					return unknownField(k)
				}
				return err
			})
			d.TakenOver = r
		default:
			return unknownField(k)
		}
		return err
	})
}

func (d *TaskClaimReleasedData) decode(l *lexer) error {
	return l.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "task_id":
			err = l.text(&d.TaskID)
		case "claim":
			err = l.text(&d.Claim)
		case "worker":
			d.Worker, err = l.str()
		case "reason":
			d.Reason, err = l.str()
		default:
			return unknownField(k)
		}
		return err
	})
}
