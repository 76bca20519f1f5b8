package config

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// problems collects what is wrong with a file, so that one run reports
// all of it, each problem located as "name:line: key.path: problem".
type problems struct {
	name string     // the file, first in every message
	root *yaml.Node // the document, to find lines by key path
	errs []error
}

// add records a problem at path. n is the node it concerns, for its
// line; when nil, the node is looked up by path.
func (p *problems) add(n *yaml.Node, path, format string, args ...any) {
	if n == nil && p.root != nil {
		n = lookup(p.root, path)
	}
	loc := p.name
	if n != nil && n.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.name, n.Line)
	}
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	p.errs = append(p.errs, errors.New(loc+": "+msg))
}

// at records a problem at path, located by looking path up.
func (p *problems) at(path, format string, args ...any) {
	p.add(nil, path, format, args...)
}

// err returns the problems found, one per line, or nil.
func (p *problems) err() error { return errors.Join(p.errs...) }
