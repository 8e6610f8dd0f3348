// Command chart-render renders a Helm chart the way `helm template` does, without helm: Go's
// text/template with the sprig function library (the version Helm 3 links) and Helm's own
// functions, values coalesced like Helm's chartutil and validated against values.schema.json
// with gojsonschema (the validator Helm 3 up to 3.17 uses). docs/kubernetes.md says where it
// differs from helm.
//
//	chart-render [-f values.yaml]... [--release NAME] [--namespace NS] [--kube-version 1.30.0] CHART_DIR
//
// Prints the manifests as `helm template` does ("---\n# Source: CHART/templates/FILE\n...") and
// exits 1 with the reason when the values break the schema or a template fails.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"github.com/ghodss/yaml"
	"github.com/xeipuuv/gojsonschema"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Chart mirrors the fields of Helm's chart.Metadata that templates read as .Chart.
type Chart struct {
	Name         string            `json:"name"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion"`
	Condition    string            `json:"condition,omitempty"`
	Tags         string            `json:"tags,omitempty"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Type         string            `json:"type,omitempty"`
	Dependencies []interface{}     `json:"dependencies,omitempty"`
}

// KubeVersion mirrors Helm's chartutil.KubeVersion.
type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (k KubeVersion) String() string { return k.Version }

// GitVersion is the deprecated alias Helm keeps.
func (k KubeVersion) GitVersion() string { return k.Version }

// VersionSet mirrors Helm's chartutil.VersionSet.
type VersionSet []string

// Has is true if the set holds apiVersion (a group/version, or group/version/Kind).
func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// Capabilities mirrors Helm's chartutil.Capabilities for an offline `helm template`.
type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

// Files mirrors the part of Helm's engine.files that needs no glob library.
type Files map[string][]byte

// Get returns a chart file's content as a string ("" if absent).
func (f Files) Get(name string) string { return string(f[name]) }

// GetBytes returns a chart file's content.
func (f Files) GetBytes(name string) []byte { return f[name] }

// Lines returns a chart file's lines.
func (f Files) Lines(name string) []string {
	if f[name] == nil {
		return []string{}
	}
	return strings.Split(string(f[name]), "\n")
}

// The group/versions a Kubernetes API server serves by default (what `helm template` assumes
// without --api-versions), for the resources this renderer is used with.
var builtinAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1",
	"rbac.authorization.k8s.io/v1", "storage.k8s.io/v1", "coordination.k8s.io/v1",
	"discovery.k8s.io/v1", "admissionregistration.k8s.io/v1", "apiextensions.k8s.io/v1",
	"scheduling.k8s.io/v1", "node.k8s.io/v1", "certificates.k8s.io/v1", "events.k8s.io/v1",
}

func main() {
	var files valueFiles
	var apiVersions valueFiles
	release := flag.String("release", "troupe", "release name (.Release.Name)")
	namespace := flag.String("namespace", "default", "namespace (.Release.Namespace)")
	kubeVersion := flag.String("kube-version", "1.29.0", "Kubernetes version (.Capabilities.KubeVersion)")
	flag.Var(&files, "f", "values file, may be repeated; later files win")
	flag.Var(&apiVersions, "a", "extra API version for .Capabilities.APIVersions, may be repeated")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: chart-render [-f values.yaml]... [--release NAME] [--namespace NS] CHART_DIR")
		os.Exit(2)
	}
	out, err := render(flag.Arg(0), files, *release, *namespace, *kubeVersion, apiVersions)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	fmt.Print(out)
}

func render(dir string, files []string, release, namespace, kubeVersion string, extraAPIs []string) (string, error) {
	var chart Chart
	if err := readYAML(filepath.Join(dir, "Chart.yaml"), &chart); err != nil {
		return "", err
	}
	if chart.APIVersion != "v2" || chart.Name == "" || chart.Version == "" {
		return "", fmt.Errorf("Chart.yaml: apiVersion must be v2 and name and version set")
	}
	values := map[string]interface{}{}
	if err := readYAML(filepath.Join(dir, "values.yaml"), &values); err != nil {
		return "", err
	}
	for _, file := range files {
		user := map[string]interface{}{}
		if err := readYAML(file, &user); err != nil {
			return "", err
		}
		values = coalesce(user, values)
	}
	if err := validateSchema(dir, values); err != nil {
		return "", err
	}

	kv := strings.TrimPrefix(kubeVersion, "v")
	parts := strings.SplitN(kv, ".", 3)
	if len(parts) < 2 {
		return "", fmt.Errorf("--kube-version %q is not MAJOR.MINOR[.PATCH]", kubeVersion)
	}
	if chart.KubeVersion != "" {
		// As Helm: the chart's kubeVersion range must admit the target version.
		constraint, err := semver.NewConstraint(chart.KubeVersion)
		if err != nil {
			return "", fmt.Errorf("Chart.yaml kubeVersion %q: %w", chart.KubeVersion, err)
		}
		v, err := semver.NewVersion(kv)
		if err != nil {
			return "", fmt.Errorf("--kube-version %q: %w", kubeVersion, err)
		}
		if !constraint.Check(v) {
			return "", fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes v%s", chart.KubeVersion, kv)
		}
	}
	chartFiles, templates, err := readChartFiles(dir, chart.Name)
	if err != nil {
		return "", err
	}
	top := map[string]interface{}{
		"Values": values,
		"Chart":  chart,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "IsInstall": true, "IsUpgrade": false,
			"Revision": 1, "Service": "Helm",
		},
		"Capabilities": Capabilities{
			KubeVersion: KubeVersion{Version: "v" + kv, Major: parts[0], Minor: parts[1]},
			APIVersions: append(append(VersionSet{}, builtinAPIVersions...), extraAPIs...),
			HelmVersion: map[string]string{"Version": "chart-render"},
		},
		"Files": chartFiles,
	}
	return renderTemplates(chart.Name, templates, top)
}

func readYAML(file string, into interface{}) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	// ghodss/yaml (the code sigs.k8s.io/yaml was forked from) goes through JSON exactly as Helm's
	// values reader does, so numbers become float64 here as they do in Helm.
	if err := yaml.Unmarshal(data, into); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// coalesce merges user values over defaults as Helm's chartutil.CoalesceValues does: maps merge
// key by key, anything else is replaced, and a user null deletes the default.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range user {
		if v == nil {
			delete(out, k)
			continue
		}
		um, uok := v.(map[string]interface{})
		dm, dok := out[k].(map[string]interface{})
		if uok && dok {
			out[k] = coalesce(um, dm)
		} else {
			out[k] = v
		}
	}
	return out
}

func validateSchema(dir string, values map[string]interface{}) error {
	schema, err := os.ReadFile(filepath.Join(dir, "values.schema.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	doc, err := json.Marshal(values)
	if err != nil {
		return err
	}
	result, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewBytesLoader(doc))
	if err != nil {
		return fmt.Errorf("values.schema.json: %w", err)
	}
	if result.Valid() {
		return nil
	}
	var b strings.Builder
	b.WriteString("values don't meet the specifications of the schema(s) in the following chart(s):\n")
	for _, e := range result.Errors() {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	return errors.New(strings.TrimSuffix(b.String(), "\n"))
}

// readChartFiles returns every file of the chart (for .Files) and the templates by their Helm
// name, CHART/templates/PATH.
func readChartFiles(dir, chartName string) (Files, map[string]string, error) {
	files := Files{}
	templates := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			templates[path.Join(chartName, rel)] = string(data)
		} else {
			files[rel] = data
		}
		return nil
	})
	return files, templates, err
}

// funcMap is Helm's: sprig's text functions without env and expandenv, and Helm's own.
func funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	extra := template.FuncMap{
		"toYaml":        toYAML,
		"fromYaml":      fromYAML,
		"fromYamlArray": fromYAMLArray,
		"toJson":        toJSON,
		"fromJson":      fromJSON,
		"fromJsonArray": fromJSONArray,
		"required": func(warn string, val interface{}) (interface{}, error) {
			if val == nil {
				return val, errors.New(warn)
			} else if s, ok := val.(string); ok && s == "" {
				return val, errors.New(warn)
			}
			return val, nil
		},
		// Not connected to a cluster, as in `helm template`: lookup finds nothing.
		"lookup": func(string, string, string, string) (map[string]interface{}, error) {
			return map[string]interface{}{}, nil
		},
		"include": func(string, interface{}) string { return "not implemented" },
		"tpl":     func(string, interface{}) string { return "not implemented" },
	}
	for k, v := range extra {
		f[k] = v
	}
	return f
}

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func unmarshalYAML(data []byte, into interface{}) error { return yaml.Unmarshal(data, into) }

// decodeMap and decodeArray are Helm's fromYaml/fromJson and fromYamlArray/fromJsonArray: a
// decoding error is returned inside the result, not raised.
func decodeMap(unmarshal func([]byte, interface{}) error, s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func decodeArray(unmarshal func([]byte, interface{}) error, s string) []interface{} {
	a := []interface{}{}
	if err := unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func fromYAML(s string) map[string]interface{} { return decodeMap(unmarshalYAML, s) }
func fromYAMLArray(s string) []interface{}     { return decodeArray(unmarshalYAML, s) }
func fromJSON(s string) map[string]interface{} { return decodeMap(json.Unmarshal, s) }
func fromJSONArray(s string) []interface{}     { return decodeArray(json.Unmarshal, s) }

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

const recursionMax = 1000

func includeFun(t *template.Template, included map[string]int) func(string, interface{}) (string, error) {
	return func(name string, data interface{}) (string, error) {
		if included[name] > recursionMax {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		included[name]++
		defer func() { included[name]-- }()
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
}

func tplFun(parent *template.Template, included map[string]int) func(string, interface{}) (string, error) {
	return func(text string, vals interface{}) (string, error) {
		t, err := parent.Clone()
		if err != nil {
			return "", fmt.Errorf("cannot clone template: %w", err)
		}
		t.Option("missingkey=zero")
		// As in Helm: include and tpl close over the clone so defines inside the text are found.
		t.Funcs(template.FuncMap{"include": includeFun(t, included), "tpl": tplFun(t, included)})
		t, err = t.New(parent.Name()).Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %w", text, err)
		}
		var buf strings.Builder
		if err := t.Execute(&buf, vals); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
}

func renderTemplates(chartName string, templates map[string]string, top map[string]interface{}) (string, error) {
	t := template.New("gotpl")
	t.Option("missingkey=zero")
	included := map[string]int{}
	t.Funcs(funcMap())
	t.Funcs(template.FuncMap{"include": includeFun(t, included), "tpl": tplFun(t, included)})
	names := make([]string, 0, len(templates))
	for name := range templates {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := t.New(name).Parse(templates[name]); err != nil {
			return "", fmt.Errorf("parse error in %s: %w", name, err)
		}
	}
	var out bytes.Buffer
	for _, name := range names {
		base := path.Base(name)
		// Partials (_*.tpl) only define; NOTES.txt is shown after install, not part of the manifests.
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": name, "BasePath": path.Join(chartName, "templates")}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, data); err != nil {
			return "", fmt.Errorf("template: %w", err)
		}
		rendered := strings.ReplaceAll(buf.String(), "<no value>", "")
		for i, doc := range splitManifests(rendered) {
			var head map[string]interface{}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				return "", fmt.Errorf("YAML parse error on %s (document %s): %w\n%s", name, strconv.Itoa(i+1), err, numbered(doc))
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, doc)
		}
	}
	return out.String(), nil
}

// splitManifests splits rendered output on YAML document separators and drops empty documents,
// as Helm's releaseutil.SplitManifests does.
func splitManifests(s string) []string {
	var docs []string
	for _, part := range strings.Split("\n"+s, "\n---") {
		// a separator line may carry trailing text such as a comment; it belongs to no document
		if i := strings.Index(part, "\n"); i >= 0 && !strings.HasPrefix(part, "\n") {
			part = part[i:]
		} else if i < 0 && !strings.HasPrefix(part, "\n") {
			continue
		}
		trimmed := strings.TrimSpace(part)
		if trimmed == "" {
			continue
		}
		docs = append(docs, trimmed)
	}
	return docs
}

// numbered prefixes each line with its number, to find the line a YAML error names.
func numbered(doc string) string {
	lines := strings.Split(doc, "\n")
	for i := range lines {
		lines[i] = fmt.Sprintf("%4d  %s", i+1, lines[i])
	}
	return strings.Join(lines, "\n")
}
