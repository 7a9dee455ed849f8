package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/runlog/runlog/events"
	"github.com/runlog/runlog/lifecycle"
	"github.com/runlog/runlog/workflow"
)

// Retry policy of Append for transient failures (timeouts, no responders).
const (
	appendAttempts      = 4                      // first try included
	appendAttemptWait   = 5 * time.Second        // per attempt, within the caller's deadline
	appendBackoff       = 50 * time.Millisecond  // doubled after each retry
	appendBackoffMax    = 400 * time.Millisecond // cap
	errCodeDupInProcess = 10158                  // R>1: same Msg-Id proposed, not yet applied
)

// Append stores msg as the next message of instance if the stream
// sequence of the instance's last message is expect (0: none yet), and
// returns the new message's stream sequence. It implements
// [lifecycle.Log.Append].
//
// The message is published on [Log.SubjectFor](instance) with msg's
// headers, Nats-Msg-Id set to msg.MsgID (or, if MsgID is empty, to the
// message's own Nats-Msg-Id header), and the expected stream and expected
// last subject sequence headers. msg.Header is not modified.
//
// Errors:
//   - the sequence check failed: the error matches
//     [lifecycle.ErrWrongSequence] and wraps the server's
//     [*natsjs.APIError] (code 10071 or 10164); nothing was stored;
//   - msg.MsgID is already the instance's last message (a retry of an
//     append that landed): no error, the original sequence is returned,
//     nothing more is stored. Within the stream's duplicate window this
//     also holds for an earlier message of the instance, if expect is
//     the current last sequence;
//   - the store was opened with [Config.ReadOnly]: [ErrReadOnly];
//   - msg carries a header the server sets on what it delivers
//     ([events.ServerHeaders], such as Nats-Sequence): an error matching
//     [events.ErrReservedHeader]; nothing was sent;
//   - data plus headers exceed the server's max payload: [ErrTooLarge],
//     nothing was sent;
//   - an invalid instance id: [workflow.ErrInvalidInstanceID];
//   - msg.MsgID is the Msg-Id of a message of another instance still in
//     the stream's duplicate window (de-duplication is stream-wide): an
//     error that is not ErrWrongSequence; nothing was stored;
//   - a closed connection: wraps [nats.ErrConnectionClosed];
//   - a user without publish permission on the instance's subject: wraps
//     [nats.ErrPermissionViolation] (after one attempt's wait: the server
//     answers such a publish with nothing but a connection error);
//   - anything else is wrapped as "jetstream: append <id>: ..." with the
//     NATS error reachable by [errors.Is] and [errors.As].
//
// Timeouts and missing responders are retried a few times with the same
// Msg-Id and a short backoff, within ctx. Whenever the sequence check
// fails, Append reads the instance's last message from the stream leader;
// if it carries msg's Msg-Id the earlier attempt had landed and its
// sequence is returned. (On R1 streams the server checks the sequence
// before de-duplicating, so a retry of a stored message fails the check
// instead of being acknowledged as a duplicate.)
func (s *Log) Append(ctx context.Context, instance string, msg events.Message, expect uint64) (uint64, error) {
	if err := workflow.ValidateInstanceID(instance); err != nil {
		return 0, fmt.Errorf("jetstream: append: %w", err)
	}
	if s.cfg.ReadOnly {
		return 0, fmt.Errorf("jetstream: append %q: %w; nothing was sent", instance, ErrReadOnly)
	}
	if err := events.CheckHeaders(msg.Header); err != nil {
		return 0, fmt.Errorf("jetstream: append %q: %w; nothing was sent", instance, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("jetstream: append %q: %w", instance, err)
	}
	if s.nc.IsClosed() {
		return 0, fmt.Errorf("jetstream: append %q: %w", instance, nats.ErrConnectionClosed)
	}

	id := msg.MsgID
	if id == "" && len(msg.Header[events.HeaderMsgID]) > 0 {
		id = msg.Header[events.HeaderMsgID][0]
	}
	// The message's own headers (shared, not copied: nothing below or in
	// nats.go writes to them), then the Msg-Id and the two expectations.
	h := make(nats.Header, len(msg.Header)+3)
	for k, vs := range msg.Header {
		h[k] = vs
	}
	if id != "" {
		h[natsjs.MsgIDHeader] = []string{id}
	}
	p := s.part(instance)
	h[natsjs.ExpectedStreamHeader] = []string{p.name}
	h[natsjs.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(expect, 10)}
	m := &nats.Msg{Subject: p.prefix + "." + EncodeID(instance), Header: h, Data: msg.Data}
	if max := s.nc.MaxPayload(); max > 0 {
		if size := int64(wireSize(h, m.Data)); size > max {
			return 0, fmt.Errorf("%w: append %q: the message is %d bytes (%d of data, %d of headers), over the server's max payload of %d bytes; "+
				"keep commits smaller (large inputs belong outside the event log) or raise the server's max_payload",
				ErrTooLarge, instance, size, len(m.Data), size-int64(len(m.Data)), max)
		}
	}
	log := lazyLog{s.log, instance}

	backoff := appendBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, appendAttemptWait)
		var ack pubAck
		var err error
		if attempt == 1 && p.commit != nil {
			ack, err = p.commit.publish(actx, m)
		} else {
			ack, err = s.publish(actx, m)
		}
		cancel()
		if err == nil {
			if !ack.Duplicate {
				return ack.Seq, nil
			}
			// De-duplication is stream-wide: make sure the message with
			// this Msg-Id is this instance's.
			_, subj, found, gerr := s.leaderGet(ctx, p, ack.Seq, "")
			switch {
			case gerr != nil:
				return 0, fmt.Errorf("jetstream: append %q: acknowledged as a duplicate of message %d, which could not be read: %w", instance, ack.Seq, gerr)
			case !found || subj != m.Subject:
				return 0, fmt.Errorf("jetstream: append %q: Msg-Id %q is already used by message %d of another instance (subject %q); nothing was stored", instance, id, ack.Seq, subj)
			}
			log.Debug("jetstream: append acknowledged as a duplicate", slog.Uint64(logKeySeq, ack.Seq), slog.Int(logKeyAttempt, attempt))
			return ack.Seq, nil
		}

		if apiErr, ok := wrongSequence(err); ok {
			// Did an earlier attempt (or an earlier call) store this very
			// message? Then this is success.
			if id == "" {
				return 0, fmt.Errorf("jetstream: append %q: %w: %w", instance, lifecycle.ErrWrongSequence, apiErr)
			}
			last, _, found, perr := s.leaderGet(ctx, p, 0, m.Subject)
			switch {
			case perr == nil && found && last.MsgID == id:
				log.Debug("jetstream: append had already landed", slog.Uint64(logKeySeq, last.Seq), slog.Int(logKeyAttempt, attempt))
				return last.Seq, nil
			case perr == nil || attempt == 1:
				return 0, fmt.Errorf("jetstream: append %q: %w: %w", instance, lifecycle.ErrWrongSequence, apiErr)
			default:
				// An earlier attempt's outcome is unknown and the probe
				// failed: do not claim that nothing was stored.
				return 0, fmt.Errorf("jetstream: append %q: outcome unknown: wrong last sequence after a retry (%w), and reading the last message failed: %w", instance, apiErr, perr)
			}
		}

		if transient(err) {
			// A publish the server refused for permissions gets no answer:
			// the refusal arrives on the connection instead. Report it
			// rather than retrying into a timeout.
			if perm := s.publishDenied(m.Subject); perm != nil {
				return 0, fmt.Errorf("jetstream: append %q: %w (nothing was stored; the user needs publish permission on %s)", instance, perm, m.Subject)
			}
		}
		if ctx.Err() != nil || !transient(err) || attempt >= appendAttempts {
			// The last attempt's outcome may be unknown: look once, if
			// there is still time, before giving up.
			if transient(err) && id != "" && ctx.Err() == nil {
				if last, _, found, perr := s.leaderGet(ctx, p, 0, m.Subject); perr == nil && found && last.MsgID == id {
					log.Debug("jetstream: append had landed despite the error", slog.Uint64(logKeySeq, last.Seq), slog.Any(logKeyErr, err))
					return last.Seq, nil
				}
			}
			if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
				return 0, fmt.Errorf("jetstream: append %q: %w (last attempt: %w)", instance, cerr, err)
			}
			if attempt > 1 {
				return 0, fmt.Errorf("jetstream: append %q: %d attempts: %w", instance, attempt, err)
			}
			return 0, fmt.Errorf("jetstream: append %q: %w", instance, err)
		}
		log.Debug("jetstream: append failed, retrying", slog.Int(logKeyAttempt, attempt), slog.Any(logKeyErr, err))
		if serr := sleep(ctx, backoff); serr != nil {
			return 0, fmt.Errorf("jetstream: append %q: %w (last attempt: %w)", instance, serr, err)
		}
		backoff = min(2*backoff, appendBackoffMax)
	}
}

// publish sends m as a request and reads the server's acknowledgement.
// It is nats.go's JetStream PublishMsg without its option processing (the
// headers are already set) and with a hand-read answer (parsePubAck).
// Like PublishMsg, it asks again a few times while nobody answers (a
// stream leader being elected), then reports natsjs.ErrNoStreamResponse.
func (s *Log) publish(ctx context.Context, m *nats.Msg) (pubAck, error) {
	resp, err := s.request(ctx, m)
	for r := 0; errors.Is(err, nats.ErrNoResponders) && r < natsjs.DefaultPubRetryAttempts; r++ {
		if serr := sleep(ctx, natsjs.DefaultPubRetryWait); serr != nil {
			break
		}
		resp, err = s.request(ctx, m)
	}
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return pubAck{}, fmt.Errorf("%w: %w", natsjs.ErrNoStreamResponse, err)
		}
		return pubAck{}, err
	}
	return parsePubAck(resp.Data)
}

// wrongSequence reports whether err is a failed sequence check: API error
// 10071 (wrong last sequence: N) or 10164 (wrong last sequence, with a
// write in flight on a replicated stream). Codes are compared, never text.
func wrongSequence(err error) (*natsjs.APIError, bool) {
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) {
		return nil, false
	}
	switch apiErr.ErrorCode {
	case natsjs.JSErrCodeStreamWrongLastSequence, natsjs.JSErrCodeStreamWrongLastSequenceConstant:
		return apiErr, true
	}
	return nil, false
}

// transient reports whether a publish that failed with err may be retried
// with the same Msg-Id: no answer in time, nobody answering (a leader
// change), the same Msg-Id still being applied, or a server that says it
// is temporarily unavailable.
func transient(err error) bool {
	switch {
	case errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded), // the attempt's own timeout; the caller's is checked first
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, natsjs.ErrNoStreamResponse):
		return true
	}
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == errCodeDupInProcess || apiErr.Code == 503
	}
	return false
}

// leaderGet reads message seq, or if seq is 0 the last message on
// lastBySubj, with a leader-routed STREAM.MSG.GET request, not a direct
// get: direct gets may be answered by a replica that has not applied the
// latest write, and the checks in Append must see their own writes. It
// returns the message, its subject and whether it exists.
func (s *Log) leaderGet(ctx context.Context, p *partition, seq uint64, lastBySubj string) (events.Message, string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, appendAttemptWait)
	defer cancel()
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq,omitempty"`
		LastFor string `json:"last_by_subj,omitempty"`
	}{seq, lastBySubj})
	if err != nil {
		return events.Message{}, "", false, err
	}
	resp, err := s.nc.RequestWithContext(ctx, s.apiSubject("STREAM.MSG.GET."+p.name), req)
	if err != nil {
		return events.Message{}, "", false, err
	}
	var r struct {
		Error   *natsjs.APIError `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return events.Message{}, "", false, fmt.Errorf("decode message get response: %w", err)
	}
	if r.Error != nil {
		if r.Error.ErrorCode == natsjs.JSErrCodeMessageNotFound {
			return events.Message{}, "", false, nil
		}
		return events.Message{}, "", false, r.Error
	}
	if r.Message == nil {
		return events.Message{}, "", false, natsjs.ErrInvalidJetStreamResponse
	}
	var hdr nats.Header
	if len(r.Message.Header) > 0 {
		if hdr, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			return events.Message{}, "", false, err
		}
	}
	return storedMessage(r.Message.Seq, r.Message.Time, hdr, r.Message.Data), r.Message.Subject, true, nil
}

// apiSubject prefixes a JetStream API subject the way the JetStream
// context does.
func (s *Log) apiSubject(subj string) string {
	o := s.js.Options()
	switch {
	case o.APIPrefix != "":
		p := o.APIPrefix
		if p[len(p)-1] != '.' {
			p += "."
		}
		return p + subj
	case o.Domain != "":
		return "$JS." + o.Domain + ".API." + subj
	}
	return "$JS.API." + subj
}

// publishDenied returns the connection's last error if it is a permissions
// violation for publishing on subject. nats.go reports the violation only
// as text naming the subject (it parses the same text itself).
func (s *Log) publishDenied(subject string) error {
	le := s.nc.LastError()
	if le != nil && errors.Is(le, nats.ErrPermissionViolation) && strings.Contains(le.Error(), `"`+subject+`"`) {
		return le
	}
	return nil
}

// lazyLog adds the instance to the store's logger only when a line is
// written: appends are hot, their debug lines rare.
type lazyLog struct {
	l        *slog.Logger
	instance string
}

func (l lazyLog) Debug(msg string, attrs ...any) {
	if l.l.Enabled(context.Background(), slog.LevelDebug) {
		l.l.Debug(msg, append([]any{slog.String(logKeyInstance, l.instance)}, attrs...)...)
	}
}
