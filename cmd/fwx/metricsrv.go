package main

import (
	_ "embed"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/cmd/fwx/internal/metrics"
)

// metricsServer serves --metrics: Prometheus metrics on /metrics, and a
// small read-only live page of the status on / (its data: /status.json).
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
}

// listenMetrics opens --metrics's address before anything else starts, so
// that a port in use stops fwx run at once.
func listenMetrics(addr string) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &metricsServer{ln: ln}, nil
}

//go:embed page.html
var page []byte

// serve answers until close.
func (m *metricsServer) serve(fw *fwx.Firewall, rl *reloader, fwq *fwx.LogQueue, info func() runInfo, log zerolog.Logger) {
	col := metrics.New(fw, metrics.Options{
		Version: shortVersion(),
		Reloads: func() metrics.Reloads {
			s := rl.snapshot()
			return metrics.Reloads{OK: s.Count - s.Failures, Refused: s.Failures, Last: s.Last, LastOK: s.LastOK}
		},
		Log: fwq.Stats,
	})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(col))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
		w.Write(page)
	})
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, statusReply{Status: fw.Status(fwx.StatusFilter{}), Run: info()})
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("--metrics")
		}
	}()
}

func (m *metricsServer) close() {
	if m.srv != nil {
		m.srv.Close()
	} else {
		m.ln.Close()
	}
}
