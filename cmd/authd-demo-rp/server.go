package main

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

//go:embed static
var staticFS embed.FS

var meTemplate = template.Must(template.ParseFS(staticFS, "static/me.html"))

const (
	ceremonyCookie = "demo_ceremony"
	sessionCookie  = "demo_session"
	ceremonyTTL    = 5 * time.Minute
	sessionTTL     = 12 * time.Hour
	maxBody        = 64 << 10
	maxUsername    = 64
)

// Config describes the relying party.
type Config struct {
	RPID   string
	RPName string
	Origin string // the one origin the site is served from
	Logger *slog.Logger
}

// credential is a stored passkey: go-webauthn's record plus bookkeeping.
type credential struct {
	webauthn.Credential
	Created  time.Time
	LastUsed time.Time
}

type user struct {
	id    []byte // random user handle, never the name
	name  string
	creds []*credential
}

func (u *user) WebAuthnID() []byte          { return u.id }
func (u *user) WebAuthnName() string        { return u.name }
func (u *user) WebAuthnDisplayName() string { return u.name }
func (u *user) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, len(u.creds))
	for i, c := range u.creds {
		out[i] = c.Credential
	}
	return out
}

// ceremony is a registration or sign-in in progress, keyed by a random
// cookie; it is used once.
type ceremony struct {
	register bool
	user     *user // registration: the (possibly new) account
	data     webauthn.SessionData
	expires  time.Time
}

type session struct {
	user    string
	expires time.Time
}

// Server is the demo relying party's HTTP handler.
type Server struct {
	cfg Config
	wa  *webauthn.WebAuthn
	log *slog.Logger
	mux *http.ServeMux
	// originHost is the host:port of cfg.Origin; page requests for another
	// host are redirected there so that the page runs on the right origin.
	originHost string

	mu         sync.Mutex
	users      map[string]*user // by name
	byHandle   map[string]*user // by string(user handle)
	ceremonies map[string]*ceremony
	sessions   map[string]*session
	now        func() time.Time
}

// NewServer builds the relying party.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RPName == "" {
		cfg.RPName = "authd demo"
	}
	u, err := url.Parse(cfg.Origin)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bad origin %q", cfg.Origin)
	}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          cfg.RPID,
		RPDisplayName: cfg.RPName,
		RPOrigins:     []string{cfg.Origin},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL},
		},
	})
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, wa: wa, log: cfg.Logger, originHost: u.Host,
		users: map[string]*user{}, byHandle: map[string]*user{},
		ceremonies: map[string]*ceremony{}, sessions: map[string]*session{},
		now: time.Now,
	}
	static, _ := fs.Sub(staticFS, "static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	}))
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("POST /register/begin", s.registerBegin)
	mux.HandleFunc("POST /register/finish", s.registerFinish)
	mux.HandleFunc("POST /login/begin", s.loginBegin)
	mux.HandleFunc("POST /login/finish", s.loginFinish)
	mux.HandleFunc("GET /me", s.page(s.me))
	mux.HandleFunc("POST /logout", s.logout)
	s.mux = mux
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if r.Method == http.MethodPost {
		// The JSON endpoints are called by the page's own script only.
		if o := r.Header.Get("Origin"); o != "" && o != s.cfg.Origin {
			jsonError(w, http.StatusForbidden, "cross-origin request refused")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	}
	s.mux.ServeHTTP(w, r)
}

// page redirects HTML page requests made to another host (127.0.0.1 for
// localhost, say) to the configured origin: WebAuthn only works there.
func (s *Server) page(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Host != s.originHost {
			http.Redirect(w, r, s.cfg.Origin+r.URL.RequestURI(), http.StatusFound)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		w.Header().Set("Cache-Control", "no-store")
		h(w, r)
	}
}

// --- helpers -----------------------------------------------------------

func jsonError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// protocolError answers a verification failure with go-webauthn's reason.
func (s *Server) protocolError(w http.ResponseWriter, what string, err error) {
	msg := err.Error()
	var pe *protocol.Error
	if errors.As(err, &pe) {
		if pe.Details != "" {
			msg = pe.Details
		}
		s.log.Warn("demo-rp: "+what+" rejected", "err", pe.Error(), "details", pe.Details, "info", pe.DevInfo)
	} else {
		s.log.Warn("demo-rp: "+what+" rejected", "err", err)
	}
	jsonError(w, http.StatusBadRequest, what+" failed: "+msg)
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func setCookie(w http.ResponseWriter, name, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(ttl / time.Second),
	})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// readUsername decodes {"username": "..."}; an empty body is no username.
func readUsername(r *http.Request) (string, error) {
	var req struct {
		Username string `json:"username"`
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", errors.New("request too large")
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return "", errors.New("request body must be JSON {\"username\": ...}")
		}
	}
	name := strings.TrimSpace(req.Username)
	if !utf8.ValidString(name) || len(name) > maxUsername || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("a username is at most %d printable characters", maxUsername)
	}
	return name, nil
}

// expire drops finished ceremonies and sessions; s.mu is held.
func (s *Server) expire() {
	now := s.now()
	for k, c := range s.ceremonies {
		if now.After(c.expires) {
			delete(s.ceremonies, k)
		}
	}
	for k, se := range s.sessions {
		if now.After(se.expires) {
			delete(s.sessions, k)
		}
	}
}

// startCeremony stores c under a fresh cookie; s.mu is held.
func (s *Server) startCeremony(w http.ResponseWriter, c *ceremony) {
	s.expire()
	c.expires = s.now().Add(ceremonyTTL)
	tok := randomToken()
	s.ceremonies[tok] = c
	setCookie(w, ceremonyCookie, tok, ceremonyTTL)
}

// takeCeremony removes and returns the request's ceremony (challenges are
// used once, whatever the outcome); s.mu is held.
func (s *Server) takeCeremony(w http.ResponseWriter, r *http.Request, register bool) *ceremony {
	ck, err := r.Cookie(ceremonyCookie)
	if err != nil {
		return nil
	}
	clearCookie(w, ceremonyCookie)
	c := s.ceremonies[ck.Value]
	delete(s.ceremonies, ck.Value)
	if c == nil || c.register != register || s.now().After(c.expires) {
		return nil
	}
	return c
}

// signedIn returns the session's user name, or ""; s.mu is held.
func (s *Server) signedIn(r *http.Request) string {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	se := s.sessions[ck.Value]
	if se == nil || s.now().After(se.expires) {
		return ""
	}
	if s.users[se.user] == nil {
		return ""
	}
	return se.user
}

func (s *Server) startSession(w http.ResponseWriter, r *http.Request, name string) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		delete(s.sessions, ck.Value) // a new session id on every sign-in
	}
	s.expire()
	tok := randomToken()
	s.sessions[tok] = &session{user: name, expires: s.now().Add(sessionTTL)}
	setCookie(w, sessionCookie, tok, sessionTTL)
}

// --- registration ------------------------------------------------------

func (s *Server) registerBegin(w http.ResponseWriter, r *http.Request) {
	name, err := readUsername(r)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	if name == "" {
		jsonError(w, http.StatusBadRequest, "enter a username to create a passkey")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[name]
	if u != nil && s.signedIn(r) != name {
		// Adding a passkey to an existing account needs that account.
		jsonError(w, http.StatusConflict, fmt.Sprintf("the username %q is taken; sign in to add another passkey", name))
		return
	}
	if u == nil {
		id := make([]byte, 32)
		rand.Read(id)
		u = &user{id: id, name: name}
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range u.creds {
		exclude = append(exclude, c.Descriptor())
	}
	rk := true
	creation, data, err := s.wa.BeginRegistration(u,
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: &rk,
			UserVerification:   protocol.VerificationPreferred,
		}),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation),
		webauthn.WithExclusions(exclude),
		webauthn.WithExtensions(webauthn.WithExtensionCredProps()),
	)
	if err != nil {
		s.protocolError(w, "registration", err)
		return
	}
	s.startCeremony(w, &ceremony{register: true, user: u, data: *data})
	writeJSON(w, http.StatusOK, creation.Response)
}

func (s *Server) registerFinish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		jsonError(w, http.StatusRequestEntityTooLarge, "request too large")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.takeCeremony(w, r, true)
	if c == nil {
		jsonError(w, http.StatusBadRequest, "no registration in progress (or it expired): start again")
		return
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		s.protocolError(w, "registration", err)
		return
	}
	u := c.user
	if other := s.users[u.name]; other != nil && other != u {
		jsonError(w, http.StatusConflict, fmt.Sprintf("the username %q was taken meanwhile", u.name))
		return
	}
	cred, err := s.wa.CreateCredential(u, c.data, parsed)
	if err != nil {
		s.protocolError(w, "registration", err)
		return
	}
	for _, other := range s.users {
		for _, oc := range other.creds {
			if bytes.Equal(oc.ID, cred.ID) {
				jsonError(w, http.StatusConflict, "this credential is already registered")
				return
			}
		}
	}
	now := s.now()
	u.creds = append(u.creds, &credential{Credential: *cred, Created: now})
	s.users[u.name] = u
	s.byHandle[string(u.id)] = u
	s.log.Info("demo-rp: passkey registered", "user", u.name, "credential", shortID(cred.ID))
	s.startSession(w, r, u.name)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "user": u.name, "credential": shortID(cred.ID)})
}

// --- sign-in -----------------------------------------------------------

func (s *Server) loginBegin(w http.ResponseWriter, r *http.Request) {
	name, err := readUsername(r)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		assertion *protocol.CredentialAssertion
		data      *webauthn.SessionData
	)
	uvOpt := webauthn.WithUserVerification(protocol.VerificationPreferred)
	if name == "" {
		assertion, data, err = s.wa.BeginDiscoverableLogin(uvOpt)
	} else {
		u := s.users[name]
		if u == nil || len(u.creds) == 0 {
			jsonError(w, http.StatusNotFound, fmt.Sprintf("no account named %q", name))
			return
		}
		assertion, data, err = s.wa.BeginLogin(u, uvOpt)
	}
	if err != nil {
		s.protocolError(w, "sign-in", err)
		return
	}
	s.startCeremony(w, &ceremony{data: *data})
	writeJSON(w, http.StatusOK, assertion.Response)
}

func (s *Server) loginFinish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		jsonError(w, http.StatusRequestEntityTooLarge, "request too large")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.takeCeremony(w, r, false)
	if c == nil {
		jsonError(w, http.StatusBadRequest, "no sign-in in progress (or it expired): start again")
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		s.protocolError(w, "sign-in", err)
		return
	}
	var (
		u    *user
		cred *webauthn.Credential
	)
	if len(c.data.UserID) > 0 {
		u = s.byHandle[string(c.data.UserID)]
		if u == nil {
			jsonError(w, http.StatusBadRequest, "the account no longer exists")
			return
		}
		cred, err = s.wa.ValidateLogin(u, c.data, parsed)
	} else {
		var wu webauthn.User
		wu, cred, err = s.wa.ValidatePasskeyLogin(func(rawID, userHandle []byte) (webauthn.User, error) {
			if found := s.byHandle[string(userHandle)]; found != nil {
				return found, nil
			}
			return nil, errors.New("this passkey belongs to no account here (was it deleted?)")
		}, c.data, parsed)
		if err == nil {
			u = wu.(*user)
		}
	}
	if err != nil {
		s.protocolError(w, "sign-in", err)
		return
	}
	stored := u.find(cred.ID)
	if stored == nil {
		jsonError(w, http.StatusBadRequest, "unknown credential")
		return
	}
	// Keep the counter and flags go-webauthn updated (WebAuthn §7.2 step 22).
	stored.Authenticator = cred.Authenticator
	stored.Flags = cred.Flags
	if cred.Authenticator.CloneWarning {
		s.log.Warn("demo-rp: signature counter did not grow: possible cloned authenticator", "user", u.name, "credential", shortID(cred.ID))
		jsonError(w, http.StatusForbidden, "sign-in refused: the passkey's signature counter went backwards, so it may have been cloned")
		return
	}
	stored.LastUsed = s.now()
	s.log.Info("demo-rp: signed in", "user", u.name, "credential", shortID(cred.ID), "sign_count", cred.Authenticator.SignCount)
	s.startSession(w, r, u.name)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "user": u.name, "credential": shortID(cred.ID), "signCount": cred.Authenticator.SignCount})
}

func (u *user) find(id []byte) *credential {
	for _, c := range u.creds {
		if bytes.Equal(c.ID, id) {
			return c
		}
	}
	return nil
}

// --- signed-in page ----------------------------------------------------

type passkeyView struct {
	ID           string `json:"id"`
	SignCount    uint32 `json:"signCount"`
	Created      string `json:"created"`
	LastUsed     string `json:"lastUsed,omitempty"`
	UV           bool   `json:"userVerified"`
	CloneWarning bool   `json:"cloneWarning,omitempty"`
}

type meView struct {
	User     string        `json:"user"`
	Passkeys []passkeyView `json:"passkeys"`
}

func shortID(id []byte) string {
	s := base64.RawURLEncoding.EncodeToString(id)
	if len(s) > 16 {
		s = s[:16] + "…"
	}
	return s
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	name := s.signedIn(r)
	var view meView
	if name != "" {
		view.User = name
		for _, c := range s.users[name].creds {
			pv := passkeyView{
				ID: shortID(c.ID), SignCount: c.Authenticator.SignCount,
				Created: c.Created.UTC().Format(time.RFC3339), UV: c.Flags.UserVerified,
				CloneWarning: c.Authenticator.CloneWarning,
			}
			if !c.LastUsed.IsZero() {
				pv.LastUsed = c.LastUsed.UTC().Format(time.RFC3339)
			}
			view.Passkeys = append(view.Passkeys, pv)
		}
	}
	s.mu.Unlock()
	wantJSON := strings.Contains(r.Header.Get("Accept"), "application/json")
	if name == "" {
		if wantJSON {
			jsonError(w, http.StatusUnauthorized, "not signed in")
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		meTemplate.Execute(w, nil)
		return
	}
	if wantJSON {
		writeJSON(w, http.StatusOK, view)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := meTemplate.Execute(w, view); err != nil {
		s.log.Warn("demo-rp: template", "err", err)
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if ck, err := r.Cookie(sessionCookie); err == nil {
		delete(s.sessions, ck.Value)
	}
	s.mu.Unlock()
	clearCookie(w, sessionCookie)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}
