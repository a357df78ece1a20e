//go:build test_performance

// Copied by bench/karpenter/run (DUMP_WORKLOAD=1) into Karpenter's
// pkg/controllers/provisioning/scheduling, beside scheduling_benchmark_test.go,
// to write the exact pods that benchmark's makeDiversePods(N) builds from a
// fresh rand.NewSource(42) stream: the pod set a lone
// `-bench='^BenchmarkSchedulingN$' -benchtime=1x -count=1` measures. A generator
// that mirrors WORKLOAD.md can be checked against it pod for pod.
//
// Output: one JSON object per line, in makeDiversePods order.

package scheduling_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
)

type dumpedPod struct {
	Class         string            `json:"class"`
	CPUMilli      int64             `json:"cpu_m"`
	MemoryMiB     int64             `json:"memory_mi"`
	Labels        map[string]string `json:"labels"`
	SpreadKey     string            `json:"spread_key,omitempty"`
	SpreadMatch   map[string]string `json:"spread_match,omitempty"`
	AffinityKey   string            `json:"affinity_key,omitempty"`
	AffinityMatch map[string]string `json:"affinity_match,omitempty"`
	AntiKey       string            `json:"anti_affinity_key,omitempty"`
	AntiMatch     map[string]string `json:"anti_affinity_match,omitempty"`
}

func TestDumpWorkload(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("DUMP_WORKLOAD_PODS"))
	out := os.Getenv("DUMP_WORKLOAD_OUT")
	if err != nil || out == "" {
		t.Skip("set DUMP_WORKLOAD_PODS and DUMP_WORKLOAD_OUT")
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, p := range makeDiversePods(n) {
		c := p.Spec.Containers[0].Resources.Requests
		d := dumpedPod{
			Class:     "generic",
			CPUMilli:  c.Cpu().MilliValue(),
			MemoryMiB: c.Memory().Value() / (1 << 20),
			Labels:    p.Labels,
		}
		if tsc := p.Spec.TopologySpreadConstraints; len(tsc) > 0 {
			d.SpreadKey, d.SpreadMatch = tsc[0].TopologyKey, tsc[0].LabelSelector.MatchLabels
			d.Class = "spread:" + tsc[0].TopologyKey
		}
		if a := p.Spec.Affinity; a != nil && a.PodAffinity != nil {
			term := a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
			d.AffinityKey, d.AffinityMatch = term.TopologyKey, term.LabelSelector.MatchLabels
			d.Class = "affinity:" + term.TopologyKey
		}
		if a := p.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
			term := a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
			d.AntiKey, d.AntiMatch = term.TopologyKey, term.LabelSelector.MatchLabels
			d.Class = "anti-affinity:" + term.TopologyKey
		}
		if err := enc.Encode(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("wrote %d pods to %s\n", n, out)
}
