package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/hush-chat/hush/internal/bench"
)

// bench is "hush bench": a load test of a server on this machine.
//
//	hush bench [--server URL] [--users N] [--rate R] [--duration D]
//	           [--peers K] [--json]
//
// Without --server it starts "hush serve" (this executable) on a free
// loopback port with a temporary data directory and its abuse limits
// off, and stops it at the end. $HUSH_SERVER is ignored: a load test
// must be aimed on purpose. It exits 1 if a message was lost or doubled
// or anything failed, after printing the report.
func (c *cmd) bench(ctx context.Context, args []string) error {
	fs := newFlags("bench")
	target := fs.String("server", "", "URL of a running server on this machine (default: start one)")
	users := fs.Int("users", bench.DefaultUsers, "virtual users, each with one device and one connection")
	rate := fs.Float64("rate", bench.DefaultRate, "messages per second, all users together")
	duration := fs.Duration("duration", bench.DefaultDuration, "how long to send")
	peers := fs.Int("peers", 0, "contacts per user, each with its own session (default min(8, users-1))")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("bench takes only flags")
	}
	cfg := bench.Config{Users: *users, Rate: *rate, Duration: *duration, Peers: *peers}
	if err := cfg.Validate(); err != nil {
		return usagef("bench: %v", err)
	}
	// "hush --server URL bench" aims it too; the environment does not.
	if *target == "" && c.server != "" && c.server != c.env.Getenv("HUSH_SERVER") {
		*target = c.server
	}
	if c.env.Interactive {
		cfg.Progress = c.env.Stderr
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline())
	defer cancel()

	label := *target
	var child *bench.Child
	crashed := false
	if *target != "" {
		if err := bench.CheckLoopback(*target); err != nil {
			return usagef("bench: %v", err)
		}
		cfg.Server = *target
	} else {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: cannot find the hush executable to start a server: %w", err)
		}
		child, err = bench.StartServer(ctx, exe)
		if err != nil {
			return err
		}
		defer func() {
			if err := child.Stop(); err != nil && !crashed {
				c.warn(err)
			}
		}()
		cfg.Server = child.URL
		cfg.RSS = child.RSS
		label = fmt.Sprintf("started at %s (pid %d)", child.URL, child.PID())
	}

	rep, err := bench.Run(ctx, cfg)
	if child != nil && ctx.Err() == nil {
		select {
		case <-child.Exited():
			// The server died under the load: that is the finding.
			crashed = true
			return fmt.Errorf("bench: the server exited during the run: %s", child.Log())
		default:
		}
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("bench: did not finish within %v", cfg.Deadline())
		}
		return fmt.Errorf("bench: %w", err)
	}
	rep.Server = label
	if *asJSON {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s\n", b)
	} else if err := rep.WriteText(c.stdout); err != nil {
		return err
	}
	if !rep.OK() {
		c.errorf("bench: %d lost, %d duplicated, %d errors", rep.Lost, rep.Duplicated, rep.Errors)
		return errReported
	}
	return nil
}
