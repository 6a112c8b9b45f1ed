package capture_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/collectors/capture"
)

// vethPeer is a veth pair the test creates: one end (Host) in this network
// namespace, where capture runs, the other in a namespace of its own with a
// TCP echo server (socat) on Port. A Modbus FC6 write echoed is its own
// normal response, so each write sent to Peer is one Modbus event.
type vethPeer struct {
	Host, NS, Peer string
	Port           int
	hostAddr       string
}

func ipRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newVeth creates the pair (names unique to the process: other tests and
// engineers share the machine) and a private /30 between its ends.
func newVeth(t *testing.T) *vethPeer {
	t.Helper()
	needRoot(t)
	if _, err := exec.LookPath("socat"); err != nil {
		t.Fatal("socat is needed for the echo server in the namespace: apt-get install socat")
	}
	id := os.Getpid() % 10000
	v := &vethPeer{Host: fmt.Sprintf("pwc%da", id), NS: fmt.Sprintf("pwc%d", id), Port: 5020,
		Peer: fmt.Sprintf("10.%d.%d.2", 200+id/256%50, id%256), hostAddr: fmt.Sprintf("10.%d.%d.1/30", 200+id/256%50, id%256)}
	exec.Command("ip", "netns", "del", v.NS).Run()
	exec.Command("ip", "link", "del", v.Host).Run()
	ipRun(t, "ip", "netns", "add", v.NS)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", v.Host).Run()
		exec.Command("ip", "netns", "pids", v.NS).Run()
		if out, _ := exec.Command("ip", "netns", "pids", v.NS).Output(); len(out) > 0 {
			for _, pid := range strings.Fields(string(out)) {
				exec.Command("kill", pid).Run()
			}
		}
		exec.Command("ip", "netns", "del", v.NS).Run()
	})
	v.link(t)
	srv := exec.Command("ip", "netns", "exec", v.NS, "socat", fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr", v.Port), "EXEC:cat")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	return v
}

// link creates (or creates again) the pair and its addresses.
func (v *vethPeer) link(t *testing.T) {
	t.Helper()
	ipRun(t, "ip", "link", "add", v.Host, "type", "veth", "peer", "name", "eth0", "netns", v.NS)
	ipRun(t, "ip", "addr", "add", v.hostAddr, "dev", v.Host)
	ipRun(t, "ip", "link", "set", v.Host, "up")
	ipRun(t, "ip", "netns", "exec", v.NS, "ip", "addr", "add", v.Peer+"/30", "dev", "eth0")
	ipRun(t, "ip", "netns", "exec", v.NS, "ip", "link", "set", "eth0", "up")
	ipRun(t, "ip", "netns", "exec", v.NS, "ip", "link", "set", "lo", "up")
}

// writes sends n Modbus FC6 writes over one connection and reads their
// echoes, retrying the connection while the link comes up.
func (v *vethPeer) writes(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := v.try(n)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("modbus writes to %s:%d: %v", v.Peer, v.Port, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (v *vethPeer) try(n int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", v.Peer, v.Port), 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range n {
		adu := []byte{0, 0, 0, 0, 0, 6, 1, 6, 0, 10, 0, 0}
		binary.BigEndian.PutUint16(adu, uint16(i+1))
		binary.BigEndian.PutUint16(adu[10:], uint16(i))
		if _, err := c.Write(adu); err != nil {
			return err
		}
		got := make([]byte, len(adu))
		if _, err := readFull(c, got); err != nil {
			return err
		}
	}
	return nil
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// waitUp waits (generously) until capture reports the interface up or
// down.
func waitUp(t *testing.T, live *capture.Live, up bool) capture.InterfaceStats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := live.Stats()[0]
		if st.Up == up {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("interface up=%v after 30 s, want %v: %+v", st.Up, !up, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLiveInterfaceDownAndBack: a capture interface that goes down, or is
// deleted and created again (a USB NIC, a veth of a container), is that
// interface's problem: Run goes on, Stats says it is down, and capture
// reopens it when it returns (issue 8: the whole agent used to exit with
// "packet poll failed").
func TestLiveInterfaceDownAndBack(t *testing.T) {
	v := newVeth(t)
	live, stop := startLive(t, capture.Config{Interfaces: []string{v.Host}, ModbusPorts: []uint16{uint16(v.Port)}, Fanout: 2})
	v.writes(t, 3)
	waitEvents(t, live, 3)

	ipRun(t, "ip", "link", "set", v.Host, "down")
	st := waitUp(t, live, false)
	if st.Error == "" {
		t.Errorf("down without a reason: %+v", st)
	}
	time.Sleep(time.Second) // a few failed reopens while it stays down
	ipRun(t, "ip", "link", "set", v.Host, "up")
	st = waitUp(t, live, true)
	v.writes(t, 3)
	waitEvents(t, live, 6)
	if st.Reopens != 1 {
		t.Errorf("reopens after one down/up = %d, want 1", st.Reopens)
	}

	ipRun(t, "ip", "link", "del", v.Host)
	waitUp(t, live, false)
	time.Sleep(time.Second)
	v.link(t)
	st = waitUp(t, live, true)
	v.writes(t, 3)
	waitEvents(t, live, 9)
	if st.Reopens != 2 {
		t.Errorf("reopens after down/up and delete/create = %d, want 2", st.Reopens)
	}
	evs := stop()
	writes := 0
	for _, ev := range evs {
		if ev.Function == 6 {
			writes++
		}
	}
	if writes < 9 {
		t.Errorf("%d FC 6 (Write Single Register) events, want at least 9: every write of each period is seen", writes)
	}
}

// TestLiveInterfaceDownAtStart: started while its link is down (a cable
// out at boot), capture does not end within a second (a crash loop under
// systemd): it waits for the link.
func TestLiveInterfaceDownAtStart(t *testing.T) {
	v := newVeth(t)
	ipRun(t, "ip", "link", "set", v.Host, "down")
	live, stop := startLive(t, capture.Config{Interfaces: []string{v.Host}, ModbusPorts: []uint16{uint16(v.Port)}})
	waitUp(t, live, false)
	time.Sleep(time.Second)
	ipRun(t, "ip", "link", "set", v.Host, "up")
	waitUp(t, live, true)
	v.writes(t, 2)
	waitEvents(t, live, 2)
	stop()
}
