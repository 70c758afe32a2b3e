package bench

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// The cluster fragments of TestBenchCluster* are merged (failover runs by
// TTL, the placement figures) and rendered; the bus's fragment reader
// leaves them alone.
func TestClusterFragmentsMergeAndRender(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvBenchDir, dir)
	if err := WriteClusterFragment("failover", &ClusterResult{Failover: []ClusterFailover{
		{TTLMS: 10000, Hosts: 3, Workers: 30, Moved: []int{10, 10}, TookMS: []int64{11200, 11900}},
		{TTLMS: 3000, Hosts: 3, Workers: 30, Moved: []int{10, 10, 10}, TookMS: []int64{3500, 3900, 9100}},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := WriteClusterFragment("placement", &ClusterResult{Placement: &ClusterPlacement{
		Hosts: 3, Starts: 100, ElapsedMS: 2000, PerSecond: 50, SequentialUS: []int64{9000, 10000, 12000},
		Revisions: 700, WritesPerStart: 7, IdleRevisions: 0, IdleMS: 3000,
	}}); err != nil {
		t.Fatal(err)
	}
	c, err := ReadClusterFragments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Failover) != 2 || c.Failover[0].TTLMS != 3000 || c.Placement == nil || c.Placement.Revisions != 700 {
		t.Fatalf("merged %+v", c)
	}
	var bus BusResult
	if err := ReadFragments(dir, &bus); err != nil {
		t.Fatalf("the bus fragments' reader on a directory with cluster fragments: %v", err)
	}
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	RenderClusterSummary(p, c)
	RenderClusterSection(p, c)
	out := b.String()
	for _, want := range []string{
		"lease TTL 3 s, worst of 3 | ≤ TTL + 5 s = 8 s | 9.10 s | **no** |",
		"lease TTL 10 s, worst of 2 | ≤ TTL + 5 s = 15 s | 11.90 s | yes |",
		"**50.0 starts/s**", "**7.0 writes per start**", "| 3 s | 3 | [10 10 10] | 3.50 s | 3.90 s | 9.10 s | 8 s |", "## 10. Cluster mode",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	// No directory, no fragments: nothing.
	if c, err := ReadClusterFragments(filepath.Join(dir, "none")); c != nil || err != nil {
		t.Errorf("ReadClusterFragments of an empty place: %v, %v", c, err)
	}
}
