package deploy

// Tests of the monitoring files: the alert rules (promtool, and a real
// Prometheus loading them), the Grafana dashboard, and that both name only
// metrics the gateway exports. Helpers are prefixed mon so as not to meet
// the other tests of the package.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushgate/pushgate/internal/proctest"
	"github.com/pushgate/pushgate/internal/wstest"
	"github.com/pushgate/pushgate/metrics"
)

const (
	monRulesFile     = "prometheus/pushgate-alerts.yml"
	monRulesTestFile = "prometheus/pushgate-alerts_test.yml"
	monDashboardFile = "grafana/pushgate-dashboard.json"

	// monWait bounds every wait on a process or on Prometheus.
	monWait = 30 * time.Second
)

// monRun runs a program to completion, bounded, and returns its exit code
// and combined output.
func monRun(t *testing.T, dir string, name string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("run %s %v: %v", name, args, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestMonitoringRulesCheck: promtool accepts the rule file.
func TestMonitoringRulesCheck(t *testing.T) {
	promtool := proctest.Program(t, "promtool")
	code, out := monRun(t, ".", promtool, "check", "rules", "--lint-fatal", monRulesFile)
	if code != 0 || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules: exit %d\n%s", code, out)
	}
	want := len(monAlertNames(t)) + len(monRecordNames(t))
	if !strings.Contains(out, fmt.Sprintf("SUCCESS: %d rules found", want)) {
		t.Fatalf("promtool check rules found a different number of rules than the %d in %s:\n%s", want, monRulesFile, out)
	}
}

// TestMonitoringRulesUnitTests runs the rules' unit tests, and checks that
// every alert has a case where it fires and one where it must not.
func TestMonitoringRulesUnitTests(t *testing.T) {
	promtool := proctest.Program(t, "promtool")
	code, out := monRun(t, filepath.Dir(monRulesTestFile), promtool, "test", "rules", filepath.Base(monRulesTestFile))
	if code != 0 || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules: exit %d\n%s", code, out)
	}

	src, err := os.ReadFile(monRulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, m := range regexp.MustCompile(`alertname:\s*(\w+)\s*\n\s*exp_alerts:(.*)`).FindAllStringSubmatch(string(src), -1) {
		if strings.TrimSpace(m[2]) == "[]" {
			quiet[m[1]] = true
		} else {
			fires[m[1]] = true
		}
	}
	for _, a := range monAlertNames(t) {
		if !fires[a] || !quiet[a] {
			t.Errorf("alert %s: %s needs a case where it fires (%v) and one where it does not (%v)", a, monRulesTestFile, fires[a], quiet[a])
		}
	}
}

// monAlertNames returns the alerts the rule file defines.
func monAlertNames(t *testing.T) []string { return monRuleNames(t, "alert") }

// monRecordNames returns the recording rules the rule file defines.
func monRecordNames(t *testing.T) []string { return monRuleNames(t, "record") }

func monRuleNames(t *testing.T, kind string) []string {
	t.Helper()
	src, err := os.ReadFile(monRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^\s*- `+kind+`:\s*(\S+)\s*$`).FindAllStringSubmatch(string(src), -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 && kind == "alert" {
		t.Fatalf("no alerts in %s", monRulesFile)
	}
	return names
}

// monRuleExprs returns the PromQL expressions of the rule file: the value of
// every expr key, with the lines indented below it (block or plain scalar).
func monRuleExprs(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile(monRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`^(\s*)(?:- )?expr:\s*(.*)$`)
	lines := strings.Split(string(src), "\n")
	var exprs []string
	for i := 0; i < len(lines); i++ {
		m := key.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		expr := strings.TrimLeft(m[2], "|>-")
		for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || monIndent(lines[i+1]) > len(m[1])) {
			i++
			expr += "\n" + lines[i]
		}
		exprs = append(exprs, strings.TrimSpace(expr))
	}
	if len(exprs) != len(monAlertNames(t))+len(monRecordNames(t)) {
		t.Fatalf("found %d expressions in %s, want one per rule", len(exprs), monRulesFile)
	}
	return exprs
}

func monIndent(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }

// monDashboard is the part of a Grafana dashboard the tests read.
type monDashboard struct {
	Title         string        `json:"title"`
	UID           string        `json:"uid"`
	SchemaVersion int           `json:"schemaVersion"`
	Panels        []monPanel    `json:"panels"`
	Templating    monTemplating `json:"templating"`
}

type monPanel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *monDatasource           `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
		Datasource *monDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []monPanel `json:"panels"` // a collapsed row's
}

type monDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type monTemplating struct {
	List []struct {
		Name       string          `json:"name"`
		Type       string          `json:"type"`
		Query      json.RawMessage `json:"query"`
		Datasource *monDatasource  `json:"datasource"`
	} `json:"list"`
}

func monLoadDashboard(t *testing.T) monDashboard {
	t.Helper()
	src, err := os.ReadFile(monDashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d monDashboard
	if err := json.Unmarshal(src, &d); err != nil {
		t.Fatalf("%s: %v", monDashboardFile, err)
	}
	return d
}

// monAllPanels returns the panels, those inside collapsed rows included.
func (d monDashboard) monAllPanels() []monPanel {
	var all []monPanel
	var walk func([]monPanel)
	walk = func(ps []monPanel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return all
}

// monExprs returns the dashboard's PromQL: panel targets and variable
// queries.
func (d monDashboard) monExprs(t *testing.T) []string {
	t.Helper()
	var exprs []string
	for _, p := range d.monAllPanels() {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if err := json.Unmarshal(v.Query, &s); err != nil {
				t.Fatalf("variable %s: query is neither a string nor an object: %s", v.Name, v.Query)
			}
			q.Query = s
		}
		exprs = append(exprs, q.Query)
	}
	return exprs
}

// monMetricRef matches a metric name in PromQL: what the gateway exports
// (pushgate_), its Go and process collectors, and Prometheus's up.
var monMetricRef = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)

func monIsMetric(tok string) bool {
	return tok == "up" || strings.HasPrefix(tok, "pushgate_") || strings.HasPrefix(tok, "go_") || strings.HasPrefix(tok, "process_")
}

// TestMonitoringDashboard checks the dashboard's structure: it parses,
// panel ids are unique, panels do not overlap, everything queries the
// ${datasource} variable, and every selector is filtered by $job and
// $instance.
func TestMonitoringDashboard(t *testing.T) {
	d := monLoadDashboard(t)
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 36 {
		t.Errorf("title %q uid %q schemaVersion %d: want a title, a uid and schemaVersion >= 36", d.Title, d.UID, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "datasource" && string(v.Query) != `"prometheus"` {
			t.Errorf("variable %s: query %s, want \"prometheus\"", v.Name, v.Query)
		}
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s does not query ${datasource}", v.Name)
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "job": "query", "instance": "query"} {
		if vars[name] != typ {
			t.Errorf("variable %s: type %q, want %q", name, vars[name], typ)
		}
	}

	ids := map[int]string{}
	var cells = map[[2]int]string{}
	for _, p := range d.monAllPanels() {
		if p.ID <= 0 {
			t.Errorf("panel %q has no id", p.Title)
		}
		if other, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, taken := cells[[2]int{x, y}]; taken {
					t.Errorf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				cells[[2]int{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use ${datasource}", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q, query %s does not use ${datasource}", p.Title, tg.RefID)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q missing or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			for _, loc := range monMetricRef.FindAllStringIndex(tg.Expr, -1) {
				if tok := tg.Expr[loc[0]:loc[1]]; !monIsMetric(tok) {
					continue
				}
				rest := tg.Expr[loc[1]:]
				end := strings.IndexByte(rest, '}')
				if !strings.HasPrefix(rest, "{") || end < 0 ||
					!strings.Contains(rest[:end], `job=~"$job"`) || !strings.Contains(rest[:end], `instance=~"$instance"`) {
					t.Errorf("panel %q: %s is not filtered by $job and $instance in %s", p.Title, tg.Expr[loc[0]:loc[1]], tg.Expr)
				}
			}
		}
	}
	if len(ids) < 20 {
		t.Errorf("only %d panels", len(ids))
	}
}

// monFamilies maps exported metric family names to their type (counter,
// gauge, histogram, summary, untyped).
type monFamilies map[string]string

// monSeriesName reports whether name is a series that families export: a
// counter, gauge or summary by its name, a histogram's _bucket, _sum or
// _count, a summary's _sum or _count.
func (f monFamilies) monSeriesName(name string) bool {
	switch f[name] {
	case "counter", "gauge", "untyped", "summary":
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if ok && (f[base] == "histogram" || (f[base] == "summary" && suffix != "_bucket")) {
			return true
		}
	}
	return false
}

// monBrokerFamilies returns the broker's collectors, which a gateway
// exports only with --broker.
func monBrokerFamilies(t *testing.T) monFamilies {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics.NewBroker(reg).Observe(func() bool { return true }, func() int { return 0 })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	f := monFamilies{}
	for _, mf := range mfs {
		f[mf.GetName()] = strings.ToLower(mf.GetType().String())
	}
	if len(f) == 0 {
		t.Fatal("metrics.NewBroker registered nothing")
	}
	return f
}

// TestMonitoringMetricNames checks that the alert rules and the dashboard
// name only metrics the gateway exports (read from a running gateway's
// /metrics; the broker's from metrics.NewBroker), and that the dashboard
// shows every pushgate metric.
func TestMonitoringMetricNames(t *testing.T) {
	gw := monStartGateway(t, proctest.Gateway(t))
	families := gw.families(t)
	for name := range families {
		if strings.HasPrefix(name, "pushgate_broker_") {
			t.Errorf("a gateway without --broker exports %s; the rules say broker metrics exist only with a broker", name)
		}
	}
	if len(families) < 20 {
		t.Fatalf("the gateway exports only %d families", len(families))
	}
	for name, typ := range monBrokerFamilies(t) {
		families[name] = typ
	}

	records := monRecordNames(t)
	check := func(where, expr string) {
		for _, tok := range monMetricRef.FindAllString(expr, -1) {
			switch {
			case strings.Contains(tok, ":"):
				if !slices.Contains(records, tok) {
					t.Errorf("%s: %s is not a recording rule of %s", where, tok, monRulesFile)
				}
			case tok == "up":
			case monIsMetric(tok) && !families.monSeriesName(tok):
				t.Errorf("%s: the gateway exports no series %s (in %q)", where, tok, expr)
			}
		}
	}
	for _, expr := range monRuleExprs(t) {
		check(monRulesFile, expr)
	}
	// Names in the annotations' prose may name a histogram by its family.
	src, err := os.ReadFile(monRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range monMetricRef.FindAllString(string(src), -1) {
		if strings.HasPrefix(tok, "pushgate_") && families[tok] == "" && !families.monSeriesName(tok) {
			t.Errorf("%s names %s, which the gateway does not export", monRulesFile, tok)
		}
	}

	used := map[string]bool{}
	for _, expr := range monLoadDashboard(t).monExprs(t) {
		check(monDashboardFile, expr)
		for _, tok := range monMetricRef.FindAllString(expr, -1) {
			used[tok] = true
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				used[strings.TrimSuffix(tok, suffix)] = true
			}
		}
	}
	for name := range families {
		if strings.HasPrefix(name, "pushgate_") && !used[name] {
			t.Errorf("the dashboard has no panel showing %s", name)
		}
	}
}

var monHTTP = &http.Client{Timeout: 5 * time.Second}

// monPoll calls cond every 200ms until it holds, failing the test after
// timeout with what cond last said was missing.
func monPoll(t *testing.T, p *proctest.Process, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, status := cond()
		if ok {
			return
		}
		select {
		case <-p.Exited:
			t.Fatalf("%s exited while waiting for %s (%s)", p.Name, what, status)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v: %s", what, timeout, status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// monGet fetches a URL and returns its status and body.
func monGet(u string) (int, []byte, error) {
	resp, err := monHTTP.Get(u)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// monGateway is a running gateway binary.
type monGateway struct {
	*proctest.Process
	addr, admin string
}

// monStartGateway runs the gateway on free loopback ports and waits until
// its admin listener says it is ready.
func monStartGateway(t *testing.T, bin string, args ...string) *monGateway {
	t.Helper()
	g := &monGateway{addr: proctest.FreeAddr(t), admin: proctest.FreeAddr(t)}
	args = append([]string{"--addr", g.addr, "--admin-addr", g.admin}, args...)
	g.Process = proctest.Start(t, filepath.Dir(bin), bin, args...)
	monPoll(t, g.Process, "ready gateway", monWait, func() (bool, string) {
		code, _, err := monGet("http://" + g.admin + "/readyz")
		return code == http.StatusOK, fmt.Sprintf("/readyz: %d %v", code, err)
	})
	return g
}

// families reads the gateway's /metrics and returns its families.
func (g *monGateway) families(t *testing.T) monFamilies {
	t.Helper()
	code, body, err := monGet("http://" + g.admin + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	f := monFamilies{}
	for _, line := range strings.Split(string(body), "\n") {
		if fields := strings.Fields(line); len(fields) == 4 && fields[0] == "#" && fields[1] == "TYPE" {
			f[fields[2]] = fields[3]
		}
	}
	return f
}

// publish publishes one message through the admin API.
func (g *monGateway) publish(t *testing.T, body string) {
	t.Helper()
	resp, err := monHTTP.Post("http://"+g.admin+"/api/publish", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish %s: %d %s", body, resp.StatusCode, b)
	}
}

// monProm is a Prometheus server under test.
type monProm struct {
	*proctest.Process
	base string
}

// monStartPrometheus runs Prometheus scraping the gateway's admin listener
// every second (job pushgate), a target nobody listens on (job
// pushgate-gone), and evaluating the rule file.
func monStartPrometheus(t *testing.T, bin, gatewayAdmin string) *monProm {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(monRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: pushgate
    static_configs:
      - targets: [%q]
  - job_name: pushgate-gone
    static_configs:
      - targets: [%q]
`, rules, gatewayAdmin, proctest.FreeAddr(t))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := proctest.FreeAddr(t)
	p := &monProm{base: "http://" + addr}
	p.Process = proctest.Start(t, dir, bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	monPoll(t, p.Process, "ready Prometheus", monWait, func() (bool, string) {
		code, _, err := monGet(p.base + "/-/ready")
		return code == http.StatusOK, fmt.Sprintf("/-/ready: %d %v", code, err)
	})
	return p
}

// api calls a Prometheus API endpoint and decodes its data into v.
func (p *monProm) api(path string, v any) error {
	code, body, err := monGet(p.base + path)
	if err != nil {
		return err
	}
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: %d %.200s: %v", path, code, body, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, r.Status, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

// monSample is one series of an instant vector.
type monSample struct {
	Metric map[string]string `json:"metric"`
	Value  float64
}

// query evaluates an instant query now.
func (p *monProm) query(q string) ([]monSample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.api("/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("%s: result type %s, want vector", q, data.ResultType)
	}
	var out []monSample
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %v: %v", q, r.Value[1], err)
		}
		out = append(out, monSample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// TestMonitoringPrometheusEndToEnd runs the gateway and a real Prometheus
// scraping it with the rule file loaded, drives connections and publishes,
// and checks what Prometheus sees: the gateway's metrics with the values
// the traffic implies, the rules loaded and healthy, the dashboard's
// queries valid and answered, and no alert but the one for the target
// that is down.
func TestMonitoringPrometheusEndToEnd(t *testing.T) {
	promBin := proctest.Program(t, "prometheus")
	gw := monStartGateway(t, proctest.Gateway(t))
	prom := monStartPrometheus(t, promBin, gw.admin)

	const (
		conns    = 3
		messages = 120 // over the default --history-size of 100
		history  = 100
	)
	clients := make([]*wstest.Client, conns)
	for i := range clients {
		clients[i], _ = wstest.Dial(t, gw.addr, "/ws?channels=news", "Sec-WebSocket-Protocol: pushgate.v1")
		clients[i].ExpectMsg("subscribed", "")
	}
	for n := 1; n <= messages; n++ {
		gw.publish(t, fmt.Sprintf(`{"channel":"news","data":{"n":%d}}`, n))
	}
	for i, c := range clients {
		for n := 1; n <= messages; n++ {
			if m := c.ReadMsg(); m.Type != "message" || m.Offset != uint64(n) {
				t.Fatalf("client %d, message %d: got %s", i, n, m.Raw)
			}
		}
	}

	type expect struct {
		query string
		op    string // ==, >=, >
		want  float64
	}
	expects := []expect{
		{`up{job="pushgate"}`, "==", 1},
		{`pushgate_connections{job="pushgate"}`, "==", conns},
		{`pushgate_connections_accepted_total{job="pushgate"}`, "==", conns},
		{`pushgate_handshakes_total{job="pushgate",result="ok"}`, "==", conns},
		{`sum(pushgate_handshakes_total{job="pushgate",result!="ok"})`, "==", 0},
		{`sum(pushgate_connections_closed_total{job="pushgate"})`, "==", 0},
		{`pushgate_publishes_total{job="pushgate",source="api"}`, "==", messages},
		{`pushgate_publishes_total{job="pushgate",source="client"}`, "==", 0},
		{`sum(pushgate_publishes_refused_total{job="pushgate"})`, "==", 0},
		{`pushgate_fanout_duration_seconds_count{job="pushgate"}`, "==", messages},
		{`pushgate_fanout_duration_seconds_bucket{job="pushgate",le="+Inf"}`, "==", messages},
		{`pushgate_messages_sent_total{job="pushgate"}`, ">=", messages * conns},
		{`pushgate_sent_bytes_total{job="pushgate"}`, ">", 0},
		{`pushgate_channels{job="pushgate"}`, "==", 1},
		{`pushgate_subscriptions{job="pushgate"}`, "==", conns},
		{`pushgate_history_entries{job="pushgate"}`, "==", min(messages, history)},
		{`pushgate_slow_consumers_total{job="pushgate"}`, "==", 0},
		{`go_goroutines{job="pushgate"}`, ">", 0},
		{`process_open_fds{job="pushgate"}`, ">", 0},
	}
	monPoll(t, prom.Process, "expected values in Prometheus", monWait, func() (bool, string) {
		var wrong []string
		for _, e := range expects {
			got, err := prom.query(e.query)
			switch {
			case err != nil:
				wrong = append(wrong, err.Error())
			case len(got) != 1:
				wrong = append(wrong, fmt.Sprintf("%s: %d series, want 1", e.query, len(got)))
			case e.op == "==" && got[0].Value != e.want,
				e.op == ">=" && got[0].Value < e.want,
				e.op == ">" && got[0].Value <= e.want:
				wrong = append(wrong, fmt.Sprintf("%s = %v, want %s %v", e.query, got[0].Value, e.op, e.want))
			}
		}
		return len(wrong) == 0, "\n\t" + strings.Join(wrong, "\n\t")
	})

	t.Run("rules", func(t *testing.T) { monCheckRules(t, prom) })
	t.Run("dashboard", func(t *testing.T) { monCheckDashboardQueries(t, prom) })
	// The dashboard's rates have data now: rules evaluated from now on
	// see at least two samples of every counter.
	t.Run("alerts", func(t *testing.T) { monCheckAlerts(t, prom, time.Now()) })
}

// monCheckRules checks that Prometheus loaded every group and rule of the
// file, evaluates them without error, and that every alert has a for
// duration, a severity and annotations saying what to do.
func monCheckRules(t *testing.T, prom *monProm) {
	type rule struct {
		Name        string            `json:"name"`
		Type        string            `json:"type"`
		Health      string            `json:"health"`
		LastError   string            `json:"lastError"`
		Duration    float64           `json:"duration"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	}
	var data struct {
		Groups []struct {
			Name  string `json:"name"`
			File  string `json:"file"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	var rules []rule
	monPoll(t, prom.Process, "every rule evaluated", monWait, func() (bool, string) {
		if err := prom.api("/api/v1/rules", &data); err != nil {
			return false, err.Error()
		}
		rules = rules[:0]
		var bad []string
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				rules = append(rules, r)
				if r.Health != "ok" {
					bad = append(bad, fmt.Sprintf("%s/%s: health %q %s", g.Name, r.Name, r.Health, r.LastError))
				}
			}
		}
		return len(bad) == 0 && len(rules) > 0, fmt.Sprintf("%d groups: %v", len(data.Groups), bad)
	})

	var alerts, records []string
	for _, r := range rules {
		switch r.Type {
		case "alerting":
			alerts = append(alerts, r.Name)
			if r.Duration <= 0 {
				t.Errorf("alert %s has no for duration", r.Name)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("alert %s: severity %q, want critical or warning", r.Name, s)
			}
			for _, a := range []string{"summary", "description"} {
				if len(r.Annotations[a]) < 20 {
					t.Errorf("alert %s: annotation %s %q says too little", r.Name, a, r.Annotations[a])
				}
			}
		case "recording":
			records = append(records, r.Name)
		}
	}
	sort.Strings(alerts)
	sort.Strings(records)
	wantAlerts, wantRecords := monAlertNames(t), monRecordNames(t)
	sort.Strings(wantAlerts)
	sort.Strings(wantRecords)
	if !slices.Equal(alerts, wantAlerts) || !slices.Equal(records, wantRecords) {
		t.Errorf("Prometheus loaded alerts %v and recording rules %v, want %v and %v", alerts, records, wantAlerts, wantRecords)
	}
}

// monCheckDashboardQueries evaluates every dashboard query, with its
// variables set to match everything: each must be valid PromQL, and each
// but the broker's (no broker here) must return data.
func monCheckDashboardQueries(t *testing.T, prom *monProm) {
	vars := strings.NewReplacer("$__rate_interval", "1m", "$job", ".*", "$instance", ".*")
	var queries []string
	for _, expr := range monLoadDashboard(t).monExprs(t) {
		q := vars.Replace(expr)
		if rest, ok := strings.CutPrefix(q, "label_values("); ok {
			// A Grafana function: query the series it reads.
			q = strings.SplitN(rest, ",", 2)[0]
		}
		if _, err := prom.query(q); err != nil {
			t.Errorf("dashboard query %s: %v", expr, err)
		}
		queries = append(queries, q)
	}
	if t.Failed() {
		return
	}
	monPoll(t, prom.Process, "data for every dashboard query", monWait, func() (bool, string) {
		var bad []string
		for _, q := range queries {
			got, err := prom.query(q)
			if err != nil || len(got) == 0 && !strings.Contains(q, "pushgate_broker_") {
				bad = append(bad, fmt.Sprintf("%s (%v)", q, err))
			}
		}
		return len(bad) == 0, fmt.Sprintf("no data for %q", bad)
	})
}

// monCheckAlerts waits until every rule has been evaluated after since,
// then checks the alerts Prometheus holds: none for the gateway, which is
// healthy, and PushgateTargetDown pending (its for is 2m) for the target
// nobody listens on, which shows that the rules are evaluated against what
// is scraped.
func monCheckAlerts(t *testing.T, prom *monProm, since time.Time) {
	monPoll(t, prom.Process, "every rule evaluated after "+since.Format(time.RFC3339Nano), monWait, func() (bool, string) {
		var rules struct {
			Groups []struct {
				Rules []struct {
					Name           string    `json:"name"`
					LastEvaluation time.Time `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := prom.api("/api/v1/rules", &rules); err != nil {
			return false, err.Error()
		}
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				if !r.LastEvaluation.After(since) {
					return false, fmt.Sprintf("%s last evaluated at %v", r.Name, r.LastEvaluation)
				}
			}
		}
		return len(rules.Groups) > 0, "no rule groups"
	})
	type alert struct {
		Labels map[string]string `json:"labels"`
		State  string            `json:"state"`
	}
	var data struct {
		Alerts []alert `json:"alerts"`
	}
	monPoll(t, prom.Process, "PushgateTargetDown pending for job pushgate-gone", monWait, func() (bool, string) {
		if err := prom.api("/api/v1/alerts", &data); err != nil {
			return false, err.Error()
		}
		for _, a := range data.Alerts {
			if a.Labels["alertname"] == "PushgateTargetDown" && a.Labels["job"] == "pushgate-gone" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("alerts: %v", data.Alerts)
	})
	for _, a := range data.Alerts {
		if a.Labels["alertname"] == "PushgateTargetDown" && a.Labels["job"] == "pushgate-gone" {
			if a.State != "pending" {
				t.Errorf("PushgateTargetDown for the absent target is %s, want pending (for: 2m)", a.State)
			}
			continue
		}
		t.Errorf("unexpected alert %s: %v", a.State, a.Labels)
	}
}
