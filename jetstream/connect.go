package jetstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnectConfig says how [Connect] authenticates to a NATS server and
// secures the connection. At most one of CredsFile, NKeyFile, User and
// Token may be set. The zero value connects without authentication.
type ConnectConfig struct {
	Name        string // connection name shown by the server; default "runlog"
	CredsFile   string // a .creds file (user JWT and NKey seed)
	NKeyFile    string // a file holding an NKey seed
	User        string // user name, with Password
	Password    string
	Token       string // an authentication token
	TLSCA       string // PEM file of CAs to verify the server with
	TLSCert     string // PEM client certificate, with TLSKey
	TLSKey      string // PEM client key, with TLSCert
	TLSInsecure bool   // do not verify the server's certificate (tests only)
}

// options maps c onto nats.Options.
func (c ConnectConfig) options() ([]nats.Option, error) {
	name := c.Name
	if name == "" {
		name = "runlog"
	}
	n := 0
	for _, set := range []bool{c.CredsFile != "", c.NKeyFile != "", c.User != "", c.Token != ""} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, fmt.Errorf("%w: ConnectConfig: set at most one of CredsFile, NKeyFile, User and Token", ErrInvalidConfig)
	case c.Password != "" && c.User == "":
		return nil, fmt.Errorf("%w: ConnectConfig: Password without User", ErrInvalidConfig)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return nil, fmt.Errorf("%w: ConnectConfig: TLSCert and TLSKey go together", ErrInvalidConfig)
	}
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1)}
	if c.TLSInsecure {
		// First, so that RootCAs and ClientCert below add to this config.
		opts = append(opts, nats.Secure(&tls.Config{InsecureSkipVerify: true}))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	switch {
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ConnectConfig.NKeyFile: %w", ErrInvalidConfig, err)
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	}
	return opts, nil
}

// syncQueueLen bounds the queue of the connection's synchronous
// subscriptions, such as the reply subscription of every batched read
// (a page is ReadBatch messages). nats.go's default, 65,536, makes each
// read allocate and clear 512 KiB.
const syncQueueLen = 4096

// Connect connects to the NATS server or cluster at url (comma separated
// URLs are accepted) with ccfg and opens a store on it with [Open]. The
// store owns the connection: [Log.Close] closes it. The connection
// reconnects without limit until then. If ctx has a deadline, the dial
// timeout is what remains of it. An invalid ccfg or cfg gives an error
// matching [ErrInvalidConfig]; a failed connection a wrapped NATS error
// ("jetstream: connect <url>: ..."); then the errors of Open.
func Connect(ctx context.Context, url string, ccfg ConnectConfig, cfg Config) (*Log, error) {
	if _, err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	opts, err := ccfg.options()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("jetstream: connect %s: %w", url, err)
	}
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(max(time.Until(d), time.Millisecond)))
	}
	// The connection's asynchronous errors (a permissions violation, a
	// slow consumer) and its reconnects go to the logger, not to stderr.
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	opts = append(opts,
		nats.SyncQueueLen(max(syncQueueLen, 4*cfg.ReadBatch)),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{slog.Any("error", err)}
			if sub != nil {
				attrs = append(attrs, slog.String("subject", sub.Subject))
			}
			log.Warn("jetstream: connection error", attrs...)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("jetstream: disconnected", slog.String("url", url), slog.Any("error", err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("jetstream: reconnected", slog.String("url", nc.ConnectedUrlRedacted()))
		}),
	)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("jetstream: connect %s: %w", url, err)
	}
	s, err := Open(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.ownConn = true
	return s, nil
}
