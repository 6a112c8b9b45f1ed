package runner

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/plcwatch/plcwatch/sim/actors"
)

// stuckListener returns the address of a socket listening with a backlog
// of 0 that never accepts: once its queue holds one connection, Linux
// drops further SYNs and a dial to it hangs.
func stuckListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	// Fill the queue (backlog 0 admits one; be generous).
	for i := 0; i < 2; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return addr
}

// close while serve is dialling the plant must return at once, with the
// client's connection closed; it used to wait for the client to hang up.
func TestProxyCloseDuringDial(t *testing.T) {
	to := stuckListener(t)
	if c, err := net.DialTimeout("tcp", to, 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("the stuck listener accepted another connection: cannot hold a dial")
	}
	p, err := startProxy("127.0.0.1:0", to, &actors.Recorder{})
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.Dial("tcp", p.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	time.Sleep(200 * time.Millisecond) // serve is in its dial
	closed := make(chan struct{})
	go func() { p.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(actors.Timeout / 2):
		t.Fatal("close blocked while serve was dialling")
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("the client's connection is still open after close")
	}
}
