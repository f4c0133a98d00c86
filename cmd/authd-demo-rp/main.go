// Command authd-demo-rp is a small WebAuthn relying party for trying authd
// in a browser and for authd's end-to-end test: create a passkey, sign in
// with it (discoverable or with a username), and look at a signed-in page.
//
// Everything is kept in memory; restarting the server forgets all accounts.
//
//	authd-demo-rp --listen 127.0.0.1:8080
//
// then open http://localhost:8080 (http is allowed by browsers only on
// localhost, so the origin and RP ID default to localhost).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	origin := flag.String("origin", "", "the site's origin (default http://localhost:PORT, PORT from --listen)")
	rpID := flag.String("rp-id", "localhost", "relying party ID")
	rpName := flag.String("rp-name", "authd demo", "relying party display name")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log, *listen, *origin, *rpID, *rpName); err != nil {
		fmt.Fprintln(os.Stderr, "authd-demo-rp:", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, listen, origin, rpID, rpName string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if origin == "" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		origin = "http://localhost:" + port
	}
	s, err := NewServer(Config{RPID: rpID, RPName: rpName, Origin: origin, Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("authd-demo-rp: serving", "listen", ln.Addr().String(), "origin", origin, "rp_id", rpID)
	fmt.Fprintf(os.Stderr, "Open %s in your browser.\n", origin)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
