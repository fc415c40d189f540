//! The Grafana dashboard in `deploy/grafana/raftgres.json` against the
//! agent's real `/metrics`: every series a panel or a variable queries is
//! one the router exports (by its `# TYPE` family, a counter by its
//! `_total` sample), every label it filters, groups or names a legend by is
//! one those series carry (or one Prometheus adds to every target), every
//! panel reads the templated Prometheus data source, and the dashboard has
//! a stable `uid` and a title.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use raftgres_api::{
    ApiContext, HealthSnapshot, HealthSource, Histogram, LiveFacts, MemberReport, NodeHealth,
    RaftFacts, ReadOps, ServerFacts, router,
};
use raftgres_state::{ClusterState, Epoch, HistoryEntry, Lease, Member, PendingRestart};
use serde_json::Value;
use tower::ServiceExt;

const DASHBOARD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/grafana");
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/grafana/raftgres.json"
);

/// Series names the dashboard may read: the agent's own and Patroni's.
const PREFIXES: [&str; 2] = ["patroni_", "raftgres_"];

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// What the brief and issue 15 ask the dashboard to show, by `# TYPE` family.
const ESSENTIAL: [&str; 16] = [
    "patroni_primary",
    "raftgres_lease_holder",
    "patroni_postgres_running",
    "raftgres_replication_lag_bytes",
    "patroni_postgres_timeline",
    "patroni_pending_restart",
    "patroni_is_paused",
    "raftgres_lease_epoch",
    "raftgres_failovers",
    "raftgres_lease_remaining_seconds",
    "raftgres_raft_term",
    "raftgres_raft_leader",
    "raftgres_raft_commit_index",
    "raftgres_raft_applied_index",
    "raftgres_raft_proposal_duration_seconds",
    "patroni_dcs_last_seen",
];

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD)
        .unwrap_or_else(|e| panic!("cannot read {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is no JSON: {e}"))
}

/// Every panel, rows' nested panels (a collapsed row keeps them) included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dash["panels"].as_array().expect("`panels` is an array") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

fn title(panel: &Value) -> String {
    panel["title"].as_str().unwrap_or("<untitled>").to_owned()
}

fn variables(dash: &Value) -> &[Value] {
    dash["templating"]["list"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

/// The ways a panel may name the templated Prometheus data source: a
/// `datasource` variable over Prometheus, or a `__inputs` entry filled in on
/// import.
fn datasource_refs(dash: &Value) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for var in variables(dash) {
        if var["type"] == "datasource" && var["query"] == "prometheus" {
            let name = var["name"].as_str().expect("a variable has a name");
            refs.insert(format!("${{{name}}}"));
            refs.insert(format!("${name}"));
        }
    }
    for input in dash["__inputs"].as_array().map_or(&[][..], Vec::as_slice) {
        if input["type"] == "datasource" && input["pluginId"] == "prometheus" {
            let name = input["name"].as_str().expect("an input has a name");
            refs.insert(format!("${{{name}}}"));
        }
    }
    refs
}

fn assert_templated(what: &str, datasource: &Value, refs: &BTreeSet<String>) {
    assert_eq!(
        datasource["type"], "prometheus",
        "{what}: datasource {datasource} is not Prometheus"
    );
    let uid = datasource["uid"].as_str().unwrap_or_default();
    assert!(
        refs.contains(uid),
        "{what}: datasource uid {uid:?} is not the templated data source (one of {refs:?})"
    );
}

/// Every query of the dashboard, named by where it is: each panel target's
/// `expr` with its `legendFormat`, and each query variable's query.
fn queries(dash: &Value) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for panel in panels(dash) {
        for target in panel["targets"].as_array().map_or(&[][..], Vec::as_slice) {
            if let Some(expr) = target["expr"].as_str() {
                let legend = target["legendFormat"].as_str().unwrap_or_default();
                all.push((
                    format!("panel {:?}", title(panel)),
                    expr.to_owned(),
                    legend.to_owned(),
                ));
            }
        }
    }
    for var in variables(dash).iter().filter(|v| v["type"] == "query") {
        let name = var["name"].as_str().unwrap_or_default();
        let query = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .or_else(|| var["definition"].as_str())
            .unwrap_or_default();
        all.push((
            format!("variable {name:?}"),
            query.to_owned(),
            String::new(),
        ));
    }
    all
}

/// `text` with every quoted string emptied (`"a,b"` becomes `""`): label
/// values are no names.
fn strip_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quote = None;
    let mut escaped = false;
    for c in text.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
            None => {
                if matches!(c, '"' | '\'' | '`') {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The identifiers of `text` (`[a-zA-Z_:][a-zA-Z0-9_:]*`) with the byte
/// offset just past each.
fn identifiers(text: &str) -> Vec<(&str, usize)> {
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (start, is_part(c)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let word = &text[s..i];
                if !word.starts_with(|c: char| c.is_ascii_digit()) {
                    out.push((word, i));
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Each series name in the expression (an identifier with one of
/// [`PREFIXES`]), with the label names of its `{...}` matcher if it has one.
fn selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let expr = strip_strings(expr);
    identifiers(&expr)
        .into_iter()
        .filter(|(word, _)| PREFIXES.iter().any(|p| word.starts_with(p)))
        .map(|(word, end)| {
            let rest = expr[end..].trim_start();
            let labels = match rest.strip_prefix('{') {
                Some(inner) => {
                    let inner = &inner[..inner.find('}').unwrap_or(inner.len())];
                    inner
                        .split(',')
                        .filter_map(|m| {
                            let name = m.split(['=', '!']).next().unwrap_or_default().trim();
                            (!name.is_empty()).then(|| name.to_owned())
                        })
                        .collect()
                }
                None => Vec::new(),
            };
            (word.to_owned(), labels)
        })
        .collect()
}

/// The labels of `by`, `without`, `on`, `ignoring`, `group_left` and
/// `group_right` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    const CLAUSES: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let expr = strip_strings(expr);
    let mut labels = Vec::new();
    for (word, end) in identifiers(&expr) {
        if !CLAUSES.contains(&word) {
            continue;
        }
        if let Some(inner) = expr[end..].trim_start().strip_prefix('(') {
            let inner = &inner[..inner.find(')').unwrap_or(inner.len())];
            labels.extend(
                inner
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    labels
}

/// The `{{label}}` names of a legend format.
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}"))
        .map(|(name, _)| name.trim().to_owned())
        .collect()
}

/// One `/metrics` text, parsed: each `# TYPE` family with its type, and
/// each sample name with the label names its samples carry.
#[derive(Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, BTreeSet<String>>,
}

impl Exposition {
    fn add(&mut self, text: &str) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("`# TYPE name type`");
                self.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let line = strip_strings(line);
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = self.samples.entry(line[..name_end].to_owned()).or_default();
            if let Some(inner) = line[name_end..].strip_prefix('{') {
                let inner = &inner[..inner.find('}').expect("a closing brace")];
                labels.extend(
                    inner
                        .split(',')
                        .filter_map(|pair| pair.split_once('='))
                        .map(|(name, _)| name.trim().to_owned()),
                );
            }
        }
    }

    /// The `# TYPE` family a sample name belongs to: itself, or a counter,
    /// histogram or summary by its suffix.
    fn family(&self, name: &str) -> Option<&str> {
        if let Some((family, _)) = self.types.get_key_value(name) {
            return Some(family);
        }
        const SUFFIXES: [(&str, &[&str]); 5] = [
            ("_total", &["counter"]),
            ("_bucket", &["histogram", "gaugehistogram"]),
            ("_sum", &["histogram", "summary"]),
            ("_count", &["histogram", "summary"]),
            ("_created", &["counter", "histogram", "summary"]),
        ];
        SUFFIXES.iter().find_map(|(suffix, kinds)| {
            let base = name.strip_suffix(suffix)?;
            let (family, kind) = self.types.get_key_value(base)?;
            kinds.contains(&kind.as_str()).then_some(family.as_str())
        })
    }
}

/// A state to render: pg1 holds the lease at epoch 3 after one failover,
/// pg2 follows it, the cluster is paused.
struct Fixture {
    state: ClusterState,
}

impl ReadOps for Fixture {
    fn state(&self) -> ClusterState {
        self.state.clone()
    }
    fn member_reports(&self) -> BTreeMap<String, MemberReport> {
        self.state
            .members
            .keys()
            .map(|name| {
                let report = MemberReport {
                    age: Duration::from_millis(400),
                    age_is_lower_bound: false,
                    stale: false,
                };
                (name.clone(), report)
            })
            .collect()
    }
}

const READ_ONLY: &str = "/metrics must not call a mutating operation";

common::refuse_writes!(Fixture, READ_ONLY);

fn cluster_state() -> ClusterState {
    let entry = |epoch, previous: Option<&str>, new: &str, reason: &str| HistoryEntry {
        epoch: Epoch(epoch),
        previous_holder: previous.map(Into::into),
        new_holder: new.into(),
        timeline: Some(u32::try_from(epoch).expect("a small epoch")),
        lsn: None,
        reason: reason.into(),
        at_unix_ms: 1_795_341_600_000 + epoch * 1000,
    };
    ClusterState {
        lease: Lease {
            holder: Some("pg1".into()),
            epoch: Epoch(3),
            revision: 12,
            ttl_ms: 3000,
            ..Lease::default()
        },
        members: [
            Member::new("pg1", 1, "10.0.0.1:7000"),
            Member::new("pg2", 2, "10.0.0.2:7000"),
        ]
        .into_iter()
        .map(|m| (m.name.clone(), m))
        .collect(),
        history: vec![
            entry(1, None, "pg2", "bootstrap"),
            entry(3, Some("pg2"), "pg1", "failover"),
        ],
        ..ClusterState::default()
    }
}

/// A running primary whose every optional value is known.
fn primary() -> NodeHealth {
    NodeHealth {
        paused: true,
        timeline: Some(3),
        pending_restart: [(
            "max_connections".to_owned(),
            PendingRestart {
                old_value: "100".into(),
                new_value: Some("200".into()),
            },
        )]
        .into(),
        server: ServerFacts {
            server_version: Some(170_002),
            postmaster_start_unix_ms: Some(1_795_341_600_000),
            ..ServerFacts::default()
        },
        ..common::running_primary()
    }
}

/// A streaming replica whose every optional value is known.
fn replica() -> NodeHealth {
    NodeHealth {
        sync_standby: true,
        lag_bytes: Some(4096),
        server: ServerFacts {
            server_version: Some(170_002),
            postmaster_start_unix_ms: Some(1_795_341_600_000),
            received_lsn: Some(50_331_744),
            replayed_lsn: Some(50_327_648),
            replayed_unix_ms: Some(1_795_341_700_000),
            replay_paused: true,
            ..ServerFacts::default()
        },
        pending_restart: BTreeMap::new(),
        ..common::streaming_replica(primary())
    }
}

/// A member's health with the live figures the agent reads per scrape:
/// pg2 (node 2) leads Raft, the lease has time left, a few proposals were
/// timed.
struct Source(NodeHealth);

impl HealthSource for Source {
    fn snapshot(&self) -> (Arc<HealthSnapshot>, Duration) {
        (
            Arc::new(HealthSnapshot::fixed(self.0.clone())),
            Duration::ZERO,
        )
    }

    fn live(&self) -> LiveFacts {
        LiveFacts {
            lease_left: Some(Duration::from_millis(2400)),
            last_current_unix_ms: Some(1_795_341_700_000),
            raft: Some(RaftFacts {
                term: 4,
                leader: Some(2),
                commit_index: 310,
                applied_index: 310,
                proposal_latency: Histogram {
                    buckets: vec![(0.005, 9), (0.05, 1), (f64::INFINITY, 0)],
                    count: 10,
                    sum_seconds: 0.061,
                },
            }),
        }
    }
}

/// `GET /metrics` through the crate's router, as `health`'s member.
async fn scrape(health: NodeHealth) -> String {
    let app = router(ApiContext {
        health: Arc::new(Source(health)),
        ops: Arc::new(Fixture {
            state: cluster_state(),
        }),
        auth: tokio::sync::watch::channel(None).1,
        logins: Default::default(),
        allowlist: Default::default(),
        authenticate_reads: false,
    });
    let request = Request::get("/metrics").body(Body::empty()).unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    String::from_utf8(body.to_vec()).expect("/metrics is UTF-8")
}

/// A primary's and a replica's exposition together: some series only one
/// of them exports.
async fn exported() -> Exposition {
    let mut exposition = Exposition::default();
    for health in [primary(), replica()] {
        exposition.add(&scrape(health).await);
    }
    exposition
}

#[tokio::test]
async fn dashboard_reads_only_series_the_agent_exports() {
    let dash = dashboard();
    let exposition = exported().await;
    let families = exposition.types.keys().cloned().collect::<Vec<_>>();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let target_labels = TARGET_LABELS.map(str::to_owned);
    for (place, expr, legend) in queries(&dash) {
        let selectors = selectors(&expr);
        // Labels a grouping or a legend may name: those of this query's series.
        let mut reachable: BTreeSet<String> = target_labels.iter().cloned().collect();
        for (name, matched) in &selectors {
            let Some(family) = exposition.family(name) else {
                problems.push(format!("{place}: {name} has no `# TYPE` line in /metrics"));
                continue;
            };
            used.insert(family.to_owned());
            let Some(labels) = exposition.samples.get(name) else {
                problems.push(format!(
                    "{place}: {name} is no sample name in /metrics (family {family} is a {}: \
                     query its samples, e.g. {family}_total)",
                    exposition.types[family]
                ));
                continue;
            };
            reachable.extend(labels.iter().cloned());
            for label in matched {
                if !labels.contains(label) && !target_labels.contains(label) {
                    problems.push(format!(
                        "{place}: {name} has no label {label:?} (it has {labels:?})"
                    ));
                }
            }
        }
        if selectors.is_empty() {
            problems.push(format!(
                "{place}: `{expr}` reads no patroni_/raftgres_ series"
            ));
        }
        for label in grouping_labels(&expr)
            .into_iter()
            .chain(legend_labels(&legend))
        {
            if !reachable.contains(&label) {
                problems.push(format!(
                    "{place}: label {label:?} is on none of its series (they have {reachable:?})"
                ));
            }
        }
    }
    for family in ESSENTIAL {
        if !used.contains(family) {
            problems.push(format!("no panel shows {family}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{DASHBOARD} does not match the agent's /metrics:\n  {}\nexported families: {families:?}",
        problems.join("\n  ")
    );
}

#[test]
fn dashboard_has_a_stable_uid_and_a_title() {
    let dash = dashboard();
    let uid = dash["uid"]
        .as_str()
        .expect("the dashboard has a string uid");
    assert!(
        !uid.is_empty()
            && uid.len() <= 40
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "Grafana wants a uid of at most 40 letters, digits, `-` and `_`: {uid:?}"
    );
    let title = dash["title"].as_str().unwrap_or_default();
    assert!(!title.trim().is_empty(), "the dashboard has no title");
    let schema = dash["schemaVersion"].as_u64().unwrap_or_default();
    assert!(
        schema >= 38,
        "schemaVersion {schema} predates Grafana 10's dashboard model"
    );

    // No other dashboard shipped beside it may take its uid or title.
    let mut seen = BTreeMap::new();
    for entry in std::fs::read_dir(DASHBOARD_DIR).expect("deploy/grafana is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a readable dashboard");
        let other: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is no JSON: {e}", path.display()));
        for key in ["uid", "title"] {
            let value = other[key].to_string();
            if let Some(first) = seen.insert((key, value.clone()), path.clone()) {
                panic!(
                    "{} and {} share the {key} {value}",
                    first.display(),
                    path.display()
                );
            }
        }
    }
}

#[test]
fn every_panel_reads_the_templated_prometheus() {
    let dash = dashboard();
    let refs = datasource_refs(&dash);
    assert!(
        !refs.is_empty(),
        "no `datasource` variable of type prometheus and no Prometheus `__inputs` entry"
    );
    let mut ids = BTreeSet::new();
    let mut queried = 0;
    for panel in panels(&dash) {
        let name = title(panel);
        let id = panel["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel {name:?}: id {id} is taken");
        if is_row(panel) {
            continue;
        }
        assert_templated(&format!("panel {name:?}"), &panel["datasource"], &refs);
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "panel {name:?} has no query");
        for target in targets {
            let ref_id = target["refId"].as_str().unwrap_or("?");
            if !target["datasource"].is_null() {
                assert_templated(
                    &format!("panel {name:?} query {ref_id}"),
                    &target["datasource"],
                    &refs,
                );
            }
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "panel {name:?} query {ref_id} has no expr"
            );
            queried += 1;
        }
    }
    assert!(queried > 0, "the dashboard queries nothing");
}

#[test]
fn scope_variable_lists_the_clusters() {
    let dash = dashboard();
    let refs = datasource_refs(&dash);
    let scope = variables(&dash)
        .iter()
        .find(|v| v["name"] == "scope")
        .expect("a `scope` variable");
    assert_eq!(scope["type"], "query", "{scope}");
    assert_templated("variable \"scope\"", &scope["datasource"], &refs);
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    let want = squeeze("label_values(patroni_version, scope)");
    for query in [
        scope["definition"].as_str(),
        scope["query"]["query"].as_str(),
    ]
    .into_iter()
    .chain([scope["query"].as_str()])
    .flatten()
    {
        assert_eq!(squeeze(query), want, "{scope}");
    }
}

/// A collapsed row's panels keep the places they had when it was open, so
/// only the top level is checked for overlap.
#[test]
fn panels_fit_the_grid_without_overlap() {
    let dash = dashboard();
    let top = dash["panels"].as_array().expect("`panels` is an array");
    let mut placed: Vec<(String, [u64; 4])> = Vec::new();
    for panel in panels(&dash) {
        let name = title(panel);
        let pos = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
            pos[k]
                .as_u64()
                .unwrap_or_else(|| panic!("panel {name:?}: gridPos.{k} is not a number: {pos}"))
        });
        assert!(
            w > 0 && h > 0 && x + w <= 24,
            "panel {name:?} leaves the 24 columns: {pos}"
        );
        if !top.iter().any(|t| std::ptr::eq(t, panel)) {
            continue;
        }
        for (other, [ox, oy, ow, oh]) in &placed {
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "panels {other:?} and {name:?} overlap");
        }
        placed.push((name, [x, y, w, h]));
    }
}
