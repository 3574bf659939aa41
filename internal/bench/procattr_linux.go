package bench

import "syscall"

// childAttr makes the kernel stop a child server if the bench dies
// without stopping it (killed, or a crash), so no load-test server is
// left running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
