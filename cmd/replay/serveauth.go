package main

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/runlog/runlog/internal/atomicfile"
)

// serveFileName is the file replay serve writes in the store directory
// (mode 0600) while it runs: the web UI's address and token, for the
// programs of the directory's owner (a Prometheus scraper, a script).
const serveFileName = "replay-serve.json"

// serveFile is the content of serveFileName.
type serveFile struct {
	PID   int    `json:"pid"`
	URL   string `json:"url"`   // the web UI, without its token
	Token string `json:"token"` // ?token=… once, or Authorization: Bearer …
}

// webAuth guards the web UI and its API with a token, as Jupyter does:
// loopback is every local user's, so the address alone must not be
// enough. A browser opens the URL serve prints (…/?token=T) once: the
// token is checked, kept in a cookie of this port (HttpOnly,
// SameSite=Strict) and dropped from the address. A program sends
// "Authorization: Bearer T".
type webAuth struct {
	token  string
	cookie string // the cookie's name: one per port, as cookies ignore ports
}

func newWebAuth(port string) (*webAuth, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return &webAuth{token: hex.EncodeToString(b), cookie: "runlog_serve_" + port}, nil
}

func (a *webAuth) ok(given string) bool {
	return given != "" && subtle.ConstantTimeCompare([]byte(given), []byte(a.token)) == 1
}

func (a *webAuth) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("token"); tok != "" {
			if !a.ok(tok) {
				a.refuse(w, "the token in the address is not this serve's")
				return
			}
			http.SetCookie(w, &http.Cookie{Name: a.cookie, Value: a.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			if r.URL.Path == "/" {
				// Drop the token from the address (and the history).
				q := r.URL.Query()
				q.Del("token")
				target := "/"
				if len(q) > 0 {
					target += "?" + q.Encode()
				}
				http.Redirect(w, r, target, http.StatusSeeOther)
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && a.ok(bearer) {
			h.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(a.cookie); err == nil && a.ok(c.Value) {
			h.ServeHTTP(w, r)
			return
		}
		a.refuse(w, "no token")
	})
}

func (a *webAuth) refuse(w http.ResponseWriter, why string) {
	msg := fmt.Sprintf("replay serve needs its token (%s): open the address it printed (http://…/?token=…), or send \"Authorization: Bearer TOKEN\"; the token is in the store directory's %s", why, serveFileName)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// writeServeFile writes serveFileName in dir; the returned func removes
// it.
func writeServeFile(dir string, f serveFile) (func(), error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, serveFileName)
	if err := atomicfile.Write(path, 0o600, func(w io.Writer) error { _, err := w.Write(append(b, '\n')); return err }); err != nil {
		return nil, err
	}
	return func() { os.Remove(path) }, nil
}
