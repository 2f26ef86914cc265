// Package helm_test renders the chart in deploy/helm/gateway with a real helm
// binary and checks that the manifests fit the gateway binary: its flags,
// ports, paths, config file and shutdown.
//
// The helm binary comes from $HELM_BIN, else .cache/tools/helm/helm (built
// by `make helm-check`, see scripts/helm.sh); without one the tests skip.
// The gateway binary comes from $GATEWAY_BIN, else it is built into a
// temporary directory.
package helm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v2"

	"github.com/rwgateway/gateway/config"
)

const (
	chartDir    = "gateway"
	releaseName = "gw"
	namespace   = "monitoring"
	// defaultFlushTimeout is the default of --shutdown.flush-timeout.
	defaultFlushTimeout = 25 * time.Second
)

// chartMode is one way of installing the chart. Keep in sync with modes in
// scripts/helm.sh.
type chartMode struct {
	name string
	args []string // helm template flags
}

var chartModes = []chartMode{
	{"default", nil},
	{"persistence", []string{"--set", "persistence.enabled=true"}},
	{"autoscaling", []string{"--set", "autoscaling.enabled=true"}},
	{"autoscaling-persistence", []string{"--set", "autoscaling.enabled=true", "--set", "persistence.enabled=true"}},
	{"servicemonitor", []string{"--set", "serviceMonitor.enabled=true"}},
	{"servicemonitor-persistence", []string{"--set", "serviceMonitor.enabled=true", "--set", "persistence.enabled=true"}},
	{"no-pdb", []string{"--set", "podDisruptionBudget.enabled=false"}},
	{"route-prefix", []string{"--set", "routePrefix=/gw", "--set", "serviceMonitor.enabled=true"}},
	{"full-config", []string{"-f", "testdata/full-config.yaml"}},
	{"port-and-flush", []string{"--set", "service.port=8080", "--set", "flushTimeoutSeconds=90"}},
}

// helmBin returns the helm binary's path or skips the test.
func helmBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HELM_BIN"); p != "" {
		return p
	}
	p, err := filepath.Abs("../../.cache/tools/helm/helm")
	require.NoError(t, err)
	if _, err := os.Stat(p); err != nil {
		t.Skip("helm is not built: run `make helm-check`, or set HELM_BIN to a helm v3 binary")
	}
	return p
}

// render runs helm template and returns the manifests by kind and name.
func render(t *testing.T, args ...string) manifests {
	t.Helper()
	helm := helmBin(t)
	cmdArgs := append([]string{"template", releaseName, chartDir, "--namespace", namespace}, args...)
	cmd := exec.Command(helm, cmdArgs...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "helm %s: %s", strings.Join(cmdArgs, " "), stderr.String())
	require.Empty(t, stderr.String(), "helm template warnings")
	return parseManifests(t, out)
}

type meta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type header struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
}

type labelSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []struct {
		Key      string   `yaml:"key"`
		Operator string   `yaml:"operator"`
		Values   []string `yaml:"values"`
	} `yaml:"matchExpressions"`
}

// matches reports whether the selector selects labels.
func (s labelSelector) matches(t *testing.T, labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	for _, e := range s.MatchExpressions {
		v, ok := labels[e.Key]
		switch e.Operator {
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		case "In", "NotIn":
			in := ok && contains(e.Values, v)
			if in != (e.Operator == "In") {
				return false
			}
		default:
			t.Fatalf("label selector operator %q", e.Operator)
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type probe struct {
	HTTPGet *struct {
		Path   string `yaml:"path"`
		Port   string `yaml:"port"`
		Scheme string `yaml:"scheme"`
	} `yaml:"httpGet"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe   *probe `yaml:"livenessProbe"`
	ReadinessProbe  *probe `yaml:"readinessProbe"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string `yaml:"name"`
		Items []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"configMap"`
	EmptyDir              map[string]any `yaml:"emptyDir"`
	PersistentVolumeClaim map[string]any `yaml:"persistentVolumeClaim"`
}

type podTemplate struct {
	Metadata meta `yaml:"metadata"`
	Spec     struct {
		ServiceAccountName            string `yaml:"serviceAccountName"`
		AutomountServiceAccountToken  *bool  `yaml:"automountServiceAccountToken"`
		TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               struct {
			RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		} `yaml:"securityContext"`
		Containers []container `yaml:"containers"`
		Volumes    []volume    `yaml:"volumes"`
	} `yaml:"spec"`
}

// workload is a Deployment or a StatefulSet.
type workload struct {
	header `yaml:",inline"`
	Spec   struct {
		Replicas             *int          `yaml:"replicas"`
		ServiceName          string        `yaml:"serviceName"`
		Selector             labelSelector `yaml:"selector"`
		Template             podTemplate   `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata meta `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type service struct {
	header `yaml:",inline"`
	Spec   struct {
		ClusterIP string            `yaml:"clusterIP"`
		Selector  map[string]string `yaml:"selector"`
		Ports     []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type serviceMonitor struct {
	header `yaml:",inline"`
	Spec   struct {
		Selector  labelSelector `yaml:"selector"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	} `yaml:"spec"`
}

type hpa struct {
	header `yaml:",inline"`
	Spec   struct {
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
	} `yaml:"spec"`
}

type pdb struct {
	header `yaml:",inline"`
	Spec   struct {
		Selector labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type configMap struct {
	header `yaml:",inline"`
	Data   map[string]string `yaml:"data"`
}

// manifests holds one rendering of the chart.
type manifests struct {
	workloads       []workload
	services        []service
	configMaps      []configMap
	serviceMonitors []serviceMonitor
	hpas            []hpa
	pdbs            []pdb
	serviceAccounts []header
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func parseManifests(t *testing.T, out []byte) manifests {
	t.Helper()
	var m manifests
	for _, doc := range docSep.Split(string(out), -1) {
		var h header
		require.NoError(t, yaml.Unmarshal([]byte(doc), &h), "manifest:\n%s", doc)
		if h.Kind == "" {
			continue // a comment-only document
		}
		decode := func(v any) {
			require.NoError(t, yaml.Unmarshal([]byte(doc), v), "%s %s", h.Kind, h.Metadata.Name)
		}
		switch h.Kind {
		case "Deployment", "StatefulSet":
			var w workload
			decode(&w)
			m.workloads = append(m.workloads, w)
		case "Service":
			var s service
			decode(&s)
			m.services = append(m.services, s)
		case "ConfigMap":
			var c configMap
			decode(&c)
			m.configMaps = append(m.configMaps, c)
		case "ServiceMonitor":
			var s serviceMonitor
			decode(&s)
			m.serviceMonitors = append(m.serviceMonitors, s)
		case "HorizontalPodAutoscaler":
			var a hpa
			decode(&a)
			m.hpas = append(m.hpas, a)
		case "PodDisruptionBudget":
			var p pdb
			decode(&p)
			m.pdbs = append(m.pdbs, p)
		case "ServiceAccount":
			m.serviceAccounts = append(m.serviceAccounts, h)
		default:
			t.Fatalf("unexpected kind %s %s: add it to the test", h.Kind, h.Metadata.Name)
		}
	}
	return m
}

// parseArgs maps each --flag in args to its value ("" for a bare flag).
func parseArgs(t *testing.T, args []string) map[string]string {
	t.Helper()
	flags := map[string]string{}
	for _, a := range args {
		require.True(t, strings.HasPrefix(a, "--"), "arg %q: want --flag=value", a)
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		_, dup := flags[name]
		require.False(t, dup, "flag --%s given twice", name)
		flags[name] = value
	}
	return flags
}

var (
	gatewayFlagsOnce sync.Once
	gatewayFlags     map[string]bool
	gatewayFlagsErr  error
)

var helpFlagRE = regexp.MustCompile(`(?m)^\s*(?:-\w, )?--(?:\[no-\])?([a-z0-9][a-z0-9.-]*)`)

// binaryFlags returns the flags of `gateway serve`, from its --help.
func binaryFlags(t *testing.T) map[string]bool {
	t.Helper()
	gatewayFlagsOnce.Do(func() {
		bin := os.Getenv("GATEWAY_BIN")
		if bin == "" {
			// Built here rather than taken from bin/, which may be stale.
			bin = filepath.Join(os.TempDir(), fmt.Sprintf("gateway-chart-test-%d", os.Getpid()))
			defer os.Remove(bin)
			out, err := exec.Command("go", "build", "-o", bin, "github.com/rwgateway/gateway/cmd/gateway").CombinedOutput()
			if err != nil {
				gatewayFlagsErr = fmt.Errorf("go build: %v: %s", err, out)
				return
			}
		}
		// Plain --help lists the commands only: the flags are the serve
		// command's.
		out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
		if err != nil {
			gatewayFlagsErr = fmt.Errorf("%s serve --help: %v: %s", bin, err, out)
			return
		}
		gatewayFlags = map[string]bool{}
		for _, m := range helpFlagRE.FindAllStringSubmatch(string(out), -1) {
			gatewayFlags[m[1]] = true
		}
	})
	require.NoError(t, gatewayFlagsErr)
	require.True(t, gatewayFlags["config.file"], "no --config.file in `gateway serve --help`: %v", gatewayFlags)
	return gatewayFlags
}

// gatewayContainer returns the one workload and its gateway container.
func gatewayContainer(t *testing.T, m manifests) (workload, container) {
	t.Helper()
	require.Len(t, m.workloads, 1, "one Deployment or StatefulSet")
	w := m.workloads[0]
	for _, c := range w.Spec.Template.Spec.Containers {
		if c.Name == "gateway" {
			return w, c
		}
	}
	t.Fatalf("%s %s has no container named gateway", w.Kind, w.Metadata.Name)
	return w, container{}
}

func TestChartModes(t *testing.T) {
	helmBin(t)
	for _, mode := range chartModes {
		t.Run(mode.name, func(t *testing.T) {
			m := render(t, mode.args...)
			w, c := gatewayContainer(t, m)
			pod := w.Spec.Template
			flags := parseArgs(t, c.Args)

			t.Run("flags exist", func(t *testing.T) {
				known := binaryFlags(t)
				for name := range flags {
					require.True(t, known[name], "--%s is not a flag of `gateway serve`", name)
				}
			})

			persistent := contains(mode.args, "persistence.enabled=true")
			wantKind := map[bool]string{false: "Deployment", true: "StatefulSet"}[persistent]
			require.Equal(t, wantKind, w.Kind)
			require.True(t, w.Spec.Selector.matches(t, pod.Metadata.Labels), "workload selector does not select its pods")

			t.Run("port and probes", func(t *testing.T) {
				addr, ok := flags["web.listen-address"]
				require.True(t, ok, "no --web.listen-address in args")
				_, port, err := net.SplitHostPort(addr)
				require.NoError(t, err)
				var portName string
				for _, p := range c.Ports {
					if strconv.Itoa(p.ContainerPort) == port {
						portName = p.Name
					}
				}
				require.NotEmpty(t, portName, "no named container port %s (from --web.listen-address=%s)", port, addr)

				prefix := strings.TrimRight(flags["web.route-prefix"], "/")
				for _, tc := range []struct {
					name  string
					probe *probe
					path  string
				}{
					{"liveness", c.LivenessProbe, prefix + "/-/healthy"},
					{"readiness", c.ReadinessProbe, prefix + "/-/ready"},
				} {
					require.NotNil(t, tc.probe, tc.name)
					require.NotNil(t, tc.probe.HTTPGet, tc.name)
					require.Equal(t, tc.path, tc.probe.HTTPGet.Path, tc.name)
					require.Contains(t, []string{portName, port}, tc.probe.HTTPGet.Port, tc.name)
					require.Contains(t, []string{"", "HTTP"}, tc.probe.HTTPGet.Scheme, tc.name)
				}

				var selecting []service
				for _, s := range m.services {
					if (labelSelector{MatchLabels: s.Spec.Selector}).matches(t, pod.Metadata.Labels) {
						selecting = append(selecting, s)
					}
				}
				require.NotEmpty(t, selecting, "no Service selects the pods")
				for _, s := range selecting {
					require.Len(t, s.Spec.Ports, 1, "Service %s", s.Metadata.Name)
					require.Contains(t, []string{portName, port}, s.Spec.Ports[0].TargetPort, "Service %s targetPort", s.Metadata.Name)
				}
				if persistent {
					require.Len(t, selecting, 2, "the Service and the StatefulSet's headless Service")
				} else {
					require.Len(t, selecting, 1)
				}

				for _, sm := range m.serviceMonitors {
					var scraped []service
					var names []string
					for _, s := range m.services {
						if sm.Spec.Selector.matches(t, s.Metadata.Labels) {
							scraped = append(scraped, s)
							names = append(names, s.Metadata.Name)
						}
					}
					// Two Services over the same pods would scrape each pod twice.
					require.Len(t, names, 1, "ServiceMonitor %s must select one Service", sm.Metadata.Name)
					require.Len(t, sm.Spec.Endpoints, 1)
					require.Equal(t, scraped[0].Spec.Ports[0].Name, sm.Spec.Endpoints[0].Port)
					require.Equal(t, prefix+"/metrics", sm.Spec.Endpoints[0].Path)
				}
			})

			t.Run("config", func(t *testing.T) {
				file, ok := flags["config.file"]
				require.True(t, ok, "no --config.file in args")
				require.True(t, path.IsAbs(file), "--config.file=%s", file)
				require.Len(t, m.configMaps, 1)
				cm := m.configMaps[0]

				var mount string
				for _, vm := range c.VolumeMounts {
					if vm.MountPath != path.Dir(file) {
						continue
					}
					require.Empty(t, vm.SubPath, "a subPath mount does not see ConfigMap updates")
					for _, v := range pod.Spec.Volumes {
						if v.Name == vm.Name {
							require.NotNil(t, v.ConfigMap, "volume %s mounted at %s", v.Name, vm.MountPath)
							require.Equal(t, cm.Metadata.Name, v.ConfigMap.Name)
							require.Empty(t, v.ConfigMap.Items, "keys are mounted under their own names")
							mount = vm.Name
						}
					}
				}
				require.NotEmpty(t, mount, "no ConfigMap volume mounted at %s (the directory of --config.file)", path.Dir(file))

				body, ok := cm.Data[path.Base(file)]
				require.True(t, ok, "ConfigMap %s has no key %s; keys: %v", cm.Metadata.Name, path.Base(file), cm.Data)
				_, err := config.Load([]byte(body))
				require.NoError(t, err, "gateway.yml:\n%s", body)
			})

			t.Run("storage", func(t *testing.T) {
				storage, ok := flags["storage.path"]
				require.True(t, ok, "no --storage.path in args")
				var mount string
				for _, vm := range c.VolumeMounts {
					if path.Clean(vm.MountPath) == path.Clean(storage) {
						require.False(t, vm.ReadOnly, "the data mount must be writable")
						mount = vm.Name
					}
				}
				require.NotEmpty(t, mount, "--storage.path=%s is not a volume mount", storage)

				var podVolume *volume
				for i, v := range pod.Spec.Volumes {
					if v.Name == mount {
						podVolume = &pod.Spec.Volumes[i]
					}
				}
				var claims []string
				for _, vct := range w.Spec.VolumeClaimTemplates {
					claims = append(claims, vct.Metadata.Name)
				}
				if persistent {
					require.Equal(t, []string{mount}, claims, "volumeClaimTemplates")
					require.Nil(t, podVolume, "pod volume %s would shadow the claim", mount)
					for _, v := range pod.Spec.Volumes {
						require.Nil(t, v.EmptyDir, "emptyDir %s in persistence mode", v.Name)
					}
					require.Equal(t, releaseName+"-gateway-headless", w.Spec.ServiceName)
				} else {
					require.Empty(t, claims)
					require.NotNil(t, podVolume, "no volume %s", mount)
					require.NotNil(t, podVolume.EmptyDir, "volume %s", mount)
				}
			})

			t.Run("shutdown", func(t *testing.T) {
				flush := defaultFlushTimeout
				if v, ok := flags["shutdown.flush-timeout"]; ok {
					var err error
					flush, err = time.ParseDuration(v)
					require.NoError(t, err)
				}
				grace := pod.Spec.TerminationGracePeriodSeconds
				require.NotNil(t, grace, "terminationGracePeriodSeconds")
				require.Greater(t, time.Duration(*grace)*time.Second, flush,
					"terminationGracePeriodSeconds must leave time after --shutdown.flush-timeout")
			})

			t.Run("security", func(t *testing.T) {
				nonRoot := pod.Spec.SecurityContext.RunAsNonRoot
				if c.SecurityContext.RunAsNonRoot != nil {
					nonRoot = c.SecurityContext.RunAsNonRoot
				}
				require.NotNil(t, nonRoot, "runAsNonRoot")
				require.True(t, *nonRoot, "runAsNonRoot")
				require.NotNil(t, c.SecurityContext.ReadOnlyRootFilesystem, "readOnlyRootFilesystem")
				require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, "readOnlyRootFilesystem")
				require.NotNil(t, c.SecurityContext.AllowPrivilegeEscalation, "allowPrivilegeEscalation")
				require.False(t, *c.SecurityContext.AllowPrivilegeEscalation, "allowPrivilegeEscalation")
				require.NotNil(t, pod.Spec.AutomountServiceAccountToken, "automountServiceAccountToken")
				require.False(t, *pod.Spec.AutomountServiceAccountToken, "the gateway does not talk to the API server")
			})

			t.Run("objects", func(t *testing.T) {
				require.Len(t, m.serviceAccounts, 1)
				require.Equal(t, m.serviceAccounts[0].Metadata.Name, pod.Spec.ServiceAccountName)

				autoscaling := contains(mode.args, "autoscaling.enabled=true")
				if autoscaling {
					require.Len(t, m.hpas, 1)
					require.Equal(t, w.Kind, m.hpas[0].Spec.ScaleTargetRef.Kind)
					require.Equal(t, w.Metadata.Name, m.hpas[0].Spec.ScaleTargetRef.Name)
					require.Nil(t, w.Spec.Replicas, "replicas is the HPA's to set")
				} else {
					require.Empty(t, m.hpas)
					require.NotNil(t, w.Spec.Replicas)
				}

				if contains(mode.args, "podDisruptionBudget.enabled=false") {
					require.Empty(t, m.pdbs)
				} else {
					require.Len(t, m.pdbs, 1)
					require.True(t, m.pdbs[0].Spec.Selector.matches(t, pod.Metadata.Labels), "PodDisruptionBudget selector")
				}

				wantMonitors := 0
				if contains(mode.args, "serviceMonitor.enabled=true") {
					wantMonitors = 1
				}
				require.Len(t, m.serviceMonitors, wantMonitors)
			})
		})
	}
}

// TestConfigChecksum checks that a change of the gateway's configuration,
// and only that, rolls the pods.
func TestConfigChecksum(t *testing.T) {
	checksum := func(t *testing.T, args ...string) string {
		w, _ := gatewayContainer(t, render(t, args...))
		sum := w.Spec.Template.Metadata.Annotations["checksum/config"]
		require.Regexp(t, `^[0-9a-f]{64}$`, sum)
		return sum
	}
	for _, persistence := range []string{"false", "true"} {
		t.Run("persistence="+persistence, func(t *testing.T) {
			base := []string{"--set", "persistence.enabled=" + persistence}
			def := checksum(t, base...)
			require.NotEqual(t, def, checksum(t, append(base, "-f", "testdata/full-config.yaml")...), "a new config file")
			require.NotEqual(t, def, checksum(t, append(base, "--set", "config.global.external_labels.env=prod")...), "a new external label")
			require.Equal(t, def, checksum(t, append(base, "--set", "replicaCount=3", "--set", "podAnnotations.a=b", "--set", "service.type=NodePort")...), "no config change")
		})
	}
}

// TestChartRejects checks values that the chart must refuse.
func TestChartRejects(t *testing.T) {
	helm := helmBin(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"extraArgs sets a chart flag", []string{"--set", "extraArgs={--storage.path=/tmp}"}, "--storage.path"},
		{"extraArgs sets the route prefix", []string{"--set", "extraArgs={--web.route-prefix=/x}"}, "routePrefix"},
		{"no upstreams", []string{"--set", "config.upstreams=null"}, "upstreams"},
		{"bad upstream URL", []string{"--set", "config.upstreams[0].url=ftp://x"}, "url"},
		{"unknown value", []string{"--set", "persistance.enabled=true"}, "persistance"},
		{"route prefix without slash", []string{"--set", "routePrefix=gw"}, "routePrefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"template", releaseName, chartDir}, tc.args...)
			out, err := exec.Command(helm, args...).CombinedOutput()
			require.Error(t, err, "helm %s:\n%s", strings.Join(args, " "), out)
			require.Contains(t, string(out), tc.want)
		})
	}
}

// TestSchemaConfigKeys checks that values.schema.json, which refuses
// unknown keys under config, knows every top-level key of the gateway's
// configuration file.
func TestSchemaConfigKeys(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	require.NoError(t, err)
	var schema struct {
		Properties struct {
			Config struct {
				Properties map[string]any `json:"properties"`
			} `json:"config"`
		} `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(b, &schema))
	var got []string
	for k := range schema.Properties.Config.Properties {
		got = append(got, k)
	}
	var want []string
	ct := reflect.TypeFor[config.Config]()
	for i := range ct.NumField() {
		name, _, _ := strings.Cut(ct.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			want = append(want, name)
		}
	}
	require.ElementsMatch(t, want, got, "config keys in values.schema.json (properties.config.properties) and config.Config")
}
