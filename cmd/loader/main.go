// Command loader fetches the data reghost decides from — MaxMind GeoIP
// databases and the cloud providers' published IP ranges — checks it with
// the server's own code and installs it atomically where the servers read
// it. See README.md.
//
//	loader geoip --data-dir /data --license-key-file /run/secrets/maxmind
//	loader cloud --config /etc/reghost/config.yaml
package main

import (
	"io"
	"os"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is the whole command; it returns the exit status: 0 done (or
// nothing new), 1 failed, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	return cli{stdout: stdout, stderr: stderr, getenv: os.Getenv, terminal: isTerminal(stderr)}.run(args)
}
