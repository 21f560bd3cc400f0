package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/fwx-dev/fwx"
)

// The control socket: fwx run answers fwx status and fwx reload over a
// unix socket that only its owner (and root) may use, with JSON over HTTP.
// There is no network listener: a status page for browsers and Prometheus
// metrics are served only with --metrics.
//
//	GET  /v1/status?addr=A&port=P&rule=R   statusReply
//	POST /v1/reload                        reloadReply

// statusReply is fwx status's JSON: the firewall's snapshot and what the
// command knows about its run.
type statusReply struct {
	fwx.Status
	Run runInfo `json:"run"`
}

// runInfo describes fwx run itself.
type runInfo struct {
	Version string      `json:"version"`
	PID     int         `json:"pid"`
	InTun   string      `json:"in_tun"`
	Out     string      `json:"out"`
	Policy  string      `json:"policy"`
	Reloads reloadStats `json:"reloads"`
	Log     logStats    `json:"log"`
}

// logStats are the firewall log's counts (fwx.LogQueueStats).
type logStats struct {
	Written    uint64 `json:"written"`
	Dropped    uint64 `json:"dropped"`
	Suppressed uint64 `json:"suppressed"`
	Lost       uint64 `json:"lost"`
	Failed     string `json:"failed,omitempty"`
}

// controlDir is where control sockets go when --control is not given:
// /run/fwx for root, else the user's runtime directory.
func controlDir() string {
	if os.Geteuid() == 0 {
		return "/run/fwx"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "fwx")
	}
	return filepath.Join(os.TempDir(), "fwx-"+strconv.Itoa(os.Getuid()))
}

// controlPath is the default control socket of the fwx whose inside TUN is
// inTun.
func controlPath(inTun string) string { return filepath.Join(controlDir(), inTun+".sock") }

// controlServer serves the control socket of a running fwx.
type controlServer struct {
	path string
	ln   *net.UnixListener
	srv  *http.Server
}

// listenControl creates the control socket at path, mode 0600 in a
// directory of mode 0700 when it makes it. A socket left by an fwx that
// died is replaced; one that a running fwx answers on is not, nor is
// anything that is not a socket.
func listenControl(path string) (*controlServer, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("run: --control: %w", err)
	}
	if err := safeDir(dir, true); err != nil {
		return nil, fmt.Errorf("run: --control %s: %w; pass --control PATH in a directory of your own", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("run: --control %s: another fwx answers on it; give this one its own with --control PATH", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("run: --control %s: not a socket; pass a path where fwx may make its control socket", path)
		}
		os.Remove(path) // a stale socket
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("run: --control: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("run: --control: %w", err)
	}
	return &controlServer{path: path, ln: ln}, nil
}

// safeDir checks that nobody but fwx's user (and root) can put a file in
// dir, the control socket's directory: whoever can could replace the
// socket with their own and answer fwx status and fwx reload in fwx's
// name. fwx run (owned) also refuses a directory another user made (say
// /tmp/fwx-UID, made before fwx ran); a client need not, since the
// directory's owner is the user fwx runs as or could answer anyway.
func safeDir(dir string, owned bool) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && owned && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("directory %s belongs to user %d: another user could replace the control socket", dir, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
		return fmt.Errorf("directory %s is writable by others (mode %#o, no sticky bit): anyone could replace the control socket", dir, fi.Mode().Perm())
	}
	return nil
}

// serve answers requests with h until close.
func (s *controlServer) serve(h http.Handler, log zerolog.Logger) {
	s.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		err := s.srv.Serve(ownerOnly{s.ln, log})
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("control socket")
		}
	}()
}

func (s *controlServer) close() {
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.srv.Shutdown(ctx)
		cancel()
	} else {
		s.ln.Close()
	}
	os.Remove(s.path)
}

// ownerOnly accepts connections from processes of fwx's own user or root
// only, whatever the socket's mode: the kernel tells who connected
// (SO_PEERCRED).
type ownerOnly struct {
	*net.UnixListener
	log zerolog.Logger
}

func (l ownerOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == 0 || uid == os.Geteuid()) {
			return c, nil
		}
		l.log.Warn().Err(err).Int("uid", uid).Msg("control socket: refused a connection from another user")
		c.Close()
	}
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}

// controlHandler answers the control socket's requests.
func controlHandler(fw *fwx.Firewall, info func() runInfo, rl *reloader) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		sf, err := parseStatusFilter(r.URL.Query().Get("addr"), r.URL.Query().Get("port"), r.URL.Query().Get("rule"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, statusReply{Status: fw.Status(sf), Run: info()})
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, rl.reload("fwx reload"))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// parseStatusFilter reads fwx status's filters.
func parseStatusFilter(addr, port, rule string) (fwx.StatusFilter, error) {
	sf := fwx.StatusFilter{Rule: rule}
	if addr != "" {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return sf, fmt.Errorf("--addr %q: not an IP address", addr)
		}
		sf.Addr = a
	}
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return sf, fmt.Errorf("--port %q: want a port from 1 to 65535", port)
		}
		sf.Port = uint16(n)
	}
	return sf, nil
}

// controlClient talks to a running fwx.
type controlClient struct {
	path string
	http *http.Client
}

// dialControl finds the control socket: --control, else the default one
// of --in-tun, else the only one in the default directory.
func dialControl(path, inTun string) (*controlClient, error) {
	switch {
	case path != "":
	case inTun != "":
		path = controlPath(inTun)
	default:
		dir := controlDir()
		socks, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
		switch len(socks) {
		case 0:
			return nil, fmt.Errorf("no running fwx found: no control socket in %s (name one with --control PATH, or --in-tun NAME)", dir)
		case 1:
			path = socks[0]
		default:
			return nil, fmt.Errorf("several fwx run here (%v): name one with --in-tun NAME or --control PATH", socks)
		}
	}
	if err := safeDir(filepath.Dir(path), false); err != nil {
		return nil, fmt.Errorf("%s: %w; not asking it (restart fwx with --control PATH in a directory only its user may write to)", path, err)
	}
	c := &controlClient{path: path}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	return c, nil
}

// call makes a request and decodes the JSON reply into v.
func (c *controlClient) call(ctx context.Context, method, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://fwx"+url, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.ENOENT || errno == syscall.ECONNREFUSED) {
			return fmt.Errorf("no fwx answers on %s: is it running? (%w)", c.path, err)
		}
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("%s: permission denied: only the user fwx runs as (and root) may use its control socket", c.path)
		}
		return fmt.Errorf("%s: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b [512]byte
		n, _ := resp.Body.Read(b[:])
		return fmt.Errorf("fwx: %s", string(b[:n]))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
