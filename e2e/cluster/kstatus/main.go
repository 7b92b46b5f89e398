// kstatus-check prints what the kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status,
// the status computation of kpt, Flux, cli-utils' apply) says of Kubernetes objects.
//
// Usage: kstatus-check FILE...  Each FILE holds one object as JSON. For each, one JSON line
// goes to stdout: {"file": FILE, "status": "InProgress|Current|Failed|Terminating|Unknown",
// "message": "..."}. Exit status 1 when a file cannot be read or computed.
//
// Built by e2e/cluster/build.py (build_kstatus) in a wrapper module that requires the
// cli-utils version pinned in e2e/cluster/versions.yaml.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	File    string `json:"file"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func compute(path string) (verdict, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return verdict{}, err
	}
	// As client-go decodes objects: whole numbers become int64, as kstatus expects.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		return verdict{}, fmt.Errorf("%s: %w", path, err)
	}
	result, err := status.Compute(obj)
	if err != nil {
		return verdict{}, fmt.Errorf("%s: %w", path, err)
	}
	return verdict{File: path, Status: result.Status.String(), Message: result.Message}, nil
}

func main() {
	out := json.NewEncoder(os.Stdout)
	failed := false
	for _, path := range os.Args[1:] {
		v, err := compute(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed = true
			continue
		}
		if err := out.Encode(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
