package main

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestConfigExampleClusterKeys: configs/wsd.yaml shows every NATS setting
// (nats_prefix and nats_cluster_name commented out, since wsd refuses them
// alone), and its cluster block, filled in as its comments say, loads for
// each way of running a cluster and reaches natsbroker.Options; the two
// commented keys uncommented without nats_url or nats_listen are refused,
// as the file says.
func TestConfigExampleClusterKeys(t *testing.T) {
	data, err := os.ReadFile("../../configs/wsd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example := string(data)
	fs := newFlagSet(&config{from: map[string]source{}})
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "nats-") {
			names = append(names, f.Name)
		}
	})
	if len(names) < 8 {
		t.Fatalf("NATS flags %q: fewer than the eight of the cluster", names)
	}
	for _, name := range names {
		key := strings.ReplaceAll(name, "-", "_")
		if !regexp.MustCompile(`(?m)^(# )?` + key + `:`).MatchString(example) {
			t.Errorf("configs/wsd.yaml does not show %s", key)
		}
	}

	uncomment := strings.NewReplacer("# nats_prefix: wsd", "nats_prefix: wsd", "# nats_cluster_name: wsd", "nats_cluster_name: wsd")
	for _, tc := range []struct {
		name    string
		edit    func(string) string
		want    string // the error, or "" to load
		options func(o *natsOptionsView)
	}{
		{"embedded", func(s string) string {
			s = uncomment.Replace(s)
			s = strings.Replace(s, `nats_listen: ""`, `nats_listen: 127.0.0.1:6248`, 1)
			s = strings.Replace(s, `nats_routes: []`, "nats_routes:\n  - nats://127.0.0.1:6248\n  - nats://127.0.0.1:6249", 1)
			return strings.Replace(s, `nats_node: ""`, `nats_node: ws1`, 1)
		}, "", func(o *natsOptionsView) {
			*o = natsOptionsView{Node: "ws1", Prefix: "wsd", Listen: "127.0.0.1:6248", Routes: []string{"nats://127.0.0.1:6248", "nats://127.0.0.1:6249"}, ClusterName: "wsd"}
		}},
		{"deployment", func(s string) string {
			s = strings.Replace(s, "# nats_prefix: wsd", "nats_prefix: wsd", 1)
			return strings.Replace(s, `nats_url: []`, "nats_url:\n  - nats://10.0.0.1:4222\n  - tls://10.0.0.2:4222", 1)
		}, "", func(o *natsOptionsView) {
			*o = natsOptionsView{Prefix: "wsd", URLs: []string{"nats://10.0.0.1:4222", "tls://10.0.0.2:4222"}}
		}},
		{"prefix alone", func(s string) string { return uncomment.Replace(s) }, "needs -nats-url or -nats-listen", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "wsd.yaml")
			edited := tc.edit(example)
			if edited == example {
				t.Fatal("the edit changed nothing: the cluster block of configs/wsd.yaml changed")
			}
			if err := os.WriteFile(file, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			c, _, err := loadConfig([]string{"-config", file}, nil)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one saying %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !c.clustered() {
				t.Fatal("not a cluster node")
			}
			o := natsOptions(c, zap.NewNop())
			got := natsOptionsView{Node: o.Node, Prefix: o.Prefix, URLs: o.URLs, Listen: o.Listen, Routes: o.Routes, ClusterName: o.ClusterName}
			var want natsOptionsView
			tc.options(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("options %+v, want %+v", got, want)
			}
		})
	}
}

// natsOptionsView is the part of natsbroker.Options the example sets.
type natsOptionsView struct {
	Node, Prefix string
	URLs         []string
	Listen       string
	Routes       []string
	ClusterName  string
}
