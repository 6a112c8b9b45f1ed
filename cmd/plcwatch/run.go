package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/plcwatch/plcwatch/agent"
)

// cmdRun is the daemon: it runs until SIGTERM or SIGINT (ctx), and reloads
// its rules on SIGHUP.
func cmdRun(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/plcwatch/plcwatch.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := agent.LoadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "plcwatch run: the configuration has problems; nothing was started:\n%v\n", err)
		return 1
	}
	log := newLogger(stderr, cfg.Log)
	agent.Version = versionString()
	a, err := agent.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	// Reading a large configuration and the rules leaves megabytes of
	// garbage that a daemon allocating little would otherwise keep until
	// its heap doubles: hand it back to the system before running.
	debug.FreeOSMemory()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading rules")
			_ = a.Reload()
		}
	}()
	if err := a.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, c agent.LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// cmdConfig checks a configuration file: exit 0 and a summary when it is
// valid, 1 and every problem as file:line:col: message when not.
func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: plcwatch config check FILE")
		return 2
	}
	cfg, err := agent.LoadConfig(args[1])
	if err != nil {
		fmt.Fprintln(stdout, err)
		return 1
	}
	broker := "embedded broker on " + cfg.MQTT.Embedded.Listen
	if len(cfg.MQTT.Brokers) > 0 {
		broker = fmt.Sprint(cfg.MQTT.Brokers)
	}
	fmt.Fprintf(stderr, "%s: ok (site %s, gateway %s, interfaces %v, rules %v, mqtt %s)\n",
		args[1], cfg.Site, cfg.Gateway, cfg.Capture.Interfaces, cfg.Rules.Paths, broker)
	return 0
}
