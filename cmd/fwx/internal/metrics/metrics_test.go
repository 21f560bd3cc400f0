package metrics_test

import (
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fwx-dev/fwx"
	"github.com/fwx-dev/fwx/cmd/fwx/internal/metrics"
	"github.com/fwx-dev/fwx/netstack/lab"
	"github.com/fwx-dev/fwx/netstack/lab/fwxlab"
)

const policy = `
protocols:
  - {name: blocked, transport: tcp, ports: [81]}
rules:
  - {name: no-81, action: deny, from: [internal], to: [any], protocols: [blocked]}
  - {name: out, action: allow, from: [internal], to: [external], protocols: [any]}
`

// value returns the value of the metric name with labels, or fails.
func value(t *testing.T, families []*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func echo(t *testing.T, l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

// TestCollector: the metrics add up the firewall's flows and counters.
func TestCollector(t *testing.T) {
	l := fwxlab.New(t, fwxlab.Options{Policy: policy})
	ln, err := l.Server.ListenTCP(8000)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	echo(t, ln)
	ctx := lab.Context(t, 5*time.Second)
	c, err := l.Client.DialTCP(ctx, netip.AddrPortFrom(fwxlab.ServerAddr, 8000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := strings.Repeat("x", 1000)
	c.Write([]byte(msg))
	if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	if d, err := l.Client.DialTCP(ctx, netip.AddrPortFrom(fwxlab.ServerAddr, 81)); err == nil {
		d.Close()
		t.Fatal("port 81 went through")
	}

	col := metrics.New(l.FW, metrics.Options{
		Version: "test",
		Reloads: func() metrics.Reloads {
			return metrics.Reloads{OK: 2, Refused: 1, Last: fwxlab.Start, LastOK: false}
		},
		Log: func() fwx.LogQueueStats { return fwx.LogQueueStats{Written: 10, Dropped: 3} },
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"fwx_flows", map[string]string{"protocol": "tcp", "path": "fast"}, 1},
		{"fwx_flows", map[string]string{"protocol": "udp", "path": "fast"}, 0},
		{"fwx_flow_states", map[string]string{"state": "established"}, 1},
		{"fwx_flows_created_total", map[string]string{"rule": "out"}, 1},
		{"fwx_flow_attempts_denied_total", map[string]string{"rule": "no-81"}, 1},
		{"fwx_drops_total", map[string]string{"reason": "policy"}, 1},
		{"fwx_drops_total", map[string]string{"reason": "spoofed-source"}, 0},
		{"fwx_ports_in_use", map[string]string{"protocol": "tcp"}, 1},
		{"fwx_ports", map[string]string{"protocol": "tcp"}, 65535},
		{"fwx_reloads_total", map[string]string{"result": "ok"}, 2},
		{"fwx_reloads_total", map[string]string{"result": "refused"}, 1},
		{"fwx_reload_last_success", nil, 0},
		{"fwx_log_records_total", map[string]string{"outcome": "dropped"}, 3},
		{"fwx_build_info", map[string]string{"version": "test"}, 1},
		{"fwx_start_time_seconds", nil, float64(fwxlab.Start.Unix())},
	} {
		if got := value(t, families, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	sent := value(t, families, "fwx_bytes_total", map[string]string{"direction": "sent"})
	if sent < 1000+40*3 {
		t.Errorf("bytes sent %v, want the 1000-byte message and the handshake at least", sent)
	}

	// Served over HTTP with the Go runtime's metrics.
	srv := httptest.NewServer(metrics.Handler(col))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`fwx_flows{path="fast",protocol="tcp"} 1`, "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the page lacks %q", want)
		}
	}

	// Bytes stay counted once the flow is over.
	c.Close()
	l.Log.WaitRecords(t, 1, map[string]string{"event": "ended", "protocol": "tcp"})
	families, _ = reg.Gather()
	if after := value(t, families, "fwx_bytes_total", map[string]string{"direction": "sent"}); after < sent {
		t.Errorf("bytes sent went from %v to %v when the flow ended", sent, after)
	}
}
