// promql-selectors parses PromQL expressions with Prometheus' own parser
// (github.com/prometheus/prometheus/promql/parser) and names the metrics they select.
//
// Usage: promql-selectors < exprs.json, where exprs.json is a JSON array of expression
// strings. For each, one JSON line goes to stdout: {"expr": "...", "error": "..." (empty
// when it parses), "metrics": ["name", ...] (the metric name of every vector and matrix
// selector, in order of appearance; "" for a selector without one)}.
//
// Built by e2e/cluster/build.py (build_promql) in a wrapper module that requires the
// Prometheus version pinned in e2e/cluster/versions.yaml.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Expr    string   `json:"expr"`
	Error   string   `json:"error"`
	Metrics []string `json:"metrics"`
}

func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

func inspect(expr string) result {
	out := result{Expr: expr, Metrics: []string{}}
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out.Metrics = append(out.Metrics, selectorName(vs))
		}
		return nil
	})
	return out
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintln(os.Stderr, "stdin must be a JSON array of strings:", err)
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, expr := range exprs {
		if err := enc.Encode(inspect(expr)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
