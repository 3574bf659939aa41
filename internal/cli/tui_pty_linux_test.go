package cli_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"unsafe"
)

// TestCommandsDoNotQueryTheTerminal runs commands on a pseudo-terminal
// that never answers. A query there (Bubble Tea v1 asked for the
// background colour at package init) makes every command wait for its
// timeout, so nothing but the chat screen itself may ask anything.
func TestCommandsDoNotQueryTheTerminal(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--home", t.TempDir(), "whoami"}} {
		out := runOnPTY(t, args...)
		if i := bytes.Index(out, []byte("\x1b")); i >= 0 {
			t.Errorf("hush %q wrote an escape sequence to the terminal: %q", args, out[i:min(len(out), i+20)])
		}
		if len(out) == 0 {
			t.Errorf("hush %q wrote nothing to the terminal", args)
		}
	}
}

// runOnPTY runs hush with stdin, stdout and stderr on a new
// pseudo-terminal and returns everything it wrote there.
func runOnPTY(t *testing.T, args ...string) []byte {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer master.Close()
	var n uint32
	if err := ioctl(master, syscall.TIOCSPTLCK, unsafe.Pointer(&n)); err != nil { // unlock
		t.Fatal(err)
	}
	if err := ioctl(master, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hushBin, args...)
	// termenv never queries a TERM of dumb, screen or tmux; an xterm is
	// the terminal that waited.
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	err = cmd.Start()
	tty.Close() // the child holds it now: the master sees EIO once it exits
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(master)
	var errno syscall.Errno
	if err != nil && !(errors.As(err, &errno) && errno == syscall.EIO) {
		t.Errorf("reading the terminal: %v", err)
	}
	cmd.Wait() // help and whoami without an account exit 0 and 1: either is fine here
	return out
}

func ioctl(f *os.File, req uint, arg unsafe.Pointer) error {
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(req), uintptr(arg)); e != 0 {
		return e
	}
	return nil
}
