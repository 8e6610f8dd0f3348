package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeChart makes a chart in a temporary directory from file name -> content.
func writeChart(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files["Chart.yaml"] = "apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: \"4.5\"\nkubeVersion: \">=1.29.0-0\"\n"
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustRender(t *testing.T, dir string, values ...string) string {
	t.Helper()
	out, err := render(dir, values, "rel", "ns", "1.30.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertContains(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestLargeIntegersPrintAsFloatsLikeHelm(t *testing.T) {
	dir := writeChart(t, map[string]string{
		"values.yaml":          "big: 4194304\n",
		"templates/cm.yaml":    "a: {{ .Values.big }}\nb: {{ .Values.big | int64 }}\nc: {{ toYaml .Values.big }}\n",
		"templates/empty.yaml": "{{- if false }}x: 1{{ end }}\n",
	})
	out := mustRender(t, dir)
	assertContains(t, out, "a: 4.194304e+06", "b: 4194304", "c: 4194304")
	if strings.Contains(out, "empty.yaml") {
		t.Errorf("an empty template must produce no document:\n%s", out)
	}
}

func TestIncludeTplAndDefinesInPartials(t *testing.T) {
	dir := writeChart(t, map[string]string{
		"values.yaml":         "greeting: \"hello {{ .Release.Name }}\"\n",
		"templates/_h.tpl":    "{{- define \"demo.name\" -}}{{ .Chart.Name }}-{{ .Release.Namespace }}{{- end }}",
		"templates/cm.yaml":   "name: {{ include \"demo.name\" . }}\ngreeting: {{ tpl .Values.greeting . }}\ntemplate: {{ .Template.Name }}\n",
		"templates/NOTES.txt": "not a manifest {{ .Release.Name }}\n",
	})
	out := mustRender(t, dir)
	assertContains(t, out, "name: demo-ns", "greeting: hello rel", "template: demo/templates/cm.yaml", "# Source: demo/templates/cm.yaml")
	if strings.Contains(out, "not a manifest") || strings.Contains(out, "_h.tpl") {
		t.Errorf("NOTES.txt and partials must not be rendered:\n%s", out)
	}
}

func TestMissingValuesRenderEmptyAndLookupFindsNothing(t *testing.T) {
	dir := writeChart(t, map[string]string{
		"values.yaml":       "{}\n",
		"templates/cm.yaml": "a: \"{{ .Values.nothing }}\"\nb: {{ len (lookup \"v1\" \"Secret\" \"ns\" \"x\") }}\nc: {{ .Capabilities.KubeVersion.Minor }}\n",
	})
	out := mustRender(t, dir)
	assertContains(t, out, "a: \"\"", "b: 0", "c: 30")
}

func TestUserValuesMergeAndNullDeletesADefault(t *testing.T) {
	dir := writeChart(t, map[string]string{
		"values.yaml":       "m:\n  keep: 1\n  drop: 2\n  over: 3\n",
		"templates/cm.yaml": "m: {{ toJson .Values.m }}\n",
		"user.yaml":         "m:\n  drop: null\n  over: 30\n",
	})
	out := mustRender(t, dir, filepath.Join(dir, "user.yaml"))
	if !strings.Contains(out, `m: {"keep":1,"over":30}`) {
		t.Errorf("coalesced values wrong:\n%s", out)
	}
}

func TestRequiredFailsOnEmptyValue(t *testing.T) {
	dir := writeChart(t, map[string]string{
		"values.yaml":       "image: \"\"\n",
		"templates/cm.yaml": "image: {{ required \"image is required\" .Values.image }}\n",
	})
	if _, err := render(dir, nil, "rel", "ns", "1.30.0", nil); err == nil || !strings.Contains(err.Error(), "image is required") {
		t.Fatalf("want the required message, got %v", err)
	}
}

func TestSchemaRefusesWrongValues(t *testing.T) {
	dir := writeChart(t, map[string]string{
		"values.yaml":        "replicas: 1\n",
		"values.schema.json": `{"type":"object","properties":{"replicas":{"type":"integer","minimum":1}}}`,
		"templates/cm.yaml":  "r: {{ .Values.replicas }}\n",
		"bad.yaml":           "replicas: 0\n",
	})
	mustRender(t, dir)
	_, err := render(dir, []string{filepath.Join(dir, "bad.yaml")}, "rel", "ns", "1.30.0", nil)
	if err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("want a schema error naming replicas, got %v", err)
	}
}

func TestKubeVersionOutsideTheChartsRangeIsRefused(t *testing.T) {
	dir := writeChart(t, map[string]string{"values.yaml": "{}\n", "templates/cm.yaml": "a: 1\n"})
	if _, err := render(dir, nil, "rel", "ns", "1.28.9", nil); err == nil || !strings.Contains(err.Error(), "kubeVersion") {
		t.Fatalf("want a kubeVersion error, got %v", err)
	}
}

func TestInvalidYAMLOutputIsAnError(t *testing.T) {
	dir := writeChart(t, map[string]string{"values.yaml": "{}\n", "templates/cm.yaml": "a: b: c\n"})
	if _, err := render(dir, nil, "rel", "ns", "1.30.0", nil); err == nil || !strings.Contains(err.Error(), "YAML parse error") {
		t.Fatalf("want a YAML parse error, got %v", err)
	}
}
