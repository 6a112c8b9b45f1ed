// Command plcwatch is the edge monitoring agent for industrial sites: it
// watches Modbus/TCP and OPC UA traffic and devices and raises alerts.
//
// main stays thin: the command tree is in cli.go, each command's work in a
// package it calls.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
