//! The load generator's output.

use super::*;
use preau_benches::verdict::{self, Gate, Row, DRIFT_LIMIT};

pub(crate) fn fmt(v: &Value) -> String {
    match v {
        Value::Null => "–".to_owned(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if n.is_u64() || n.is_i64() {
                format!("{}", n)
            } else if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else if x.abs() >= 10.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.2}")
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The headline figures of one result, as `(name, value, lower is better)`.
pub(crate) fn headline(scenario: &str, result: &Value) -> Vec<(String, Value, Option<bool>)> {
    let r = &result["result"];
    let mut rows: Vec<(String, Value, Option<bool>)> = Vec::new();
    let mut push = |name: &str, v: &Value, lower: Option<bool>| {
        rows.push((name.to_owned(), v.clone(), lower));
    };
    push("connections set up", &r["setup"]["connected"], None);
    push("setup failures", &r["setup"]["failed"], Some(true));
    push(
        "connection setup rate (/s)",
        &r["setup"]["per_second"],
        Some(false),
    );
    push(
        "setup latency p99 (ms)",
        &r["setup"]["setup_latency"]["p99_ms"],
        Some(true),
    );
    match scenario {
        "idle" => {
            push(
                "server RSS per connection (KiB)",
                &r["server_rss_kib_per_connection"],
                Some(true),
            );
            push("server RSS (MiB)", &r["server_rss_mib"], Some(true));
            push(
                "server CPU while idle (%)",
                &r["server_cpu_percent_while_idle"],
                Some(true),
            );
            push(
                "frames other than events received (presence…)",
                &r["presence_and_other_frames"],
                None,
            );
        }
        "revision" | "cluster" => {
            if scenario == "cluster" {
                push("nodes", &r["nodes"], None);
            }
            let steps = r["steps"].as_array().cloned().unwrap_or_default();
            for step in &steps {
                let label = format!("@ {} posts/s/member", fmt(&step["rate_per_member"]));
                push(
                    &format!("{label}: deliveries/s"),
                    &step["deliveries_per_s"],
                    Some(false),
                );
                push(
                    &format!("{label}: latency p50 (ms)"),
                    &step["latency"]["p50_ms"],
                    Some(true),
                );
                push(
                    &format!("{label}: latency p99 (ms)"),
                    &step["latency"]["p99_ms"],
                    Some(true),
                );
                push(
                    &format!("{label}: latency steady p99, median of per-second p99s (ms)"),
                    &step["latency"]["steady_p99_ms"],
                    Some(true),
                );
                push(
                    &format!("{label}: latency max (ms)"),
                    &step["latency"]["max_ms"],
                    Some(true),
                );
                if step.get("latency_cross_node").is_some() {
                    push(
                        &format!("{label}: cross-node deliveries/s"),
                        &step["cross_node_deliveries_per_s"],
                        Some(false),
                    );
                    push(
                        &format!("{label}: cross-node latency p50 (ms)"),
                        &step["latency_cross_node"]["p50_ms"],
                        Some(true),
                    );
                    push(
                        &format!("{label}: cross-node latency p99 (ms)"),
                        &step["latency_cross_node"]["p99_ms"],
                        Some(true),
                    );
                    push(
                        &format!("{label}: cross-node latency steady p99 (ms)"),
                        &step["latency_cross_node"]["steady_p99_ms"],
                        Some(true),
                    );
                    push(
                        &format!("{label}: same-node latency p50 (ms)"),
                        &step["latency_same_node"]["p50_ms"],
                        Some(true),
                    );
                    push(
                        &format!("{label}: same-node latency p99 (ms)"),
                        &step["latency_same_node"]["p99_ms"],
                        Some(true),
                    );
                }
                push(
                    &format!("{label}: server CPU µs per delivery"),
                    &step["server_cpu_us_per_delivery"],
                    Some(true),
                );
                push(
                    &format!("{label}: server CPU (%)"),
                    &step["server_cpu_percent"],
                    Some(true),
                );
                push(
                    &format!("{label}: server RSS (MiB)"),
                    &step["server_rss_mib"],
                    Some(true),
                );
                if step.get("redis_cpu_percent").is_some() {
                    push(
                        &format!("{label}: Redis CPU (%)"),
                        &step["redis_cpu_percent"],
                        Some(true),
                    );
                    push(
                        &format!("{label}: servers + Redis CPU µs per delivery"),
                        &step["server_and_redis_cpu_us_per_delivery"],
                        Some(true),
                    );
                }
                push(
                    &format!("{label}: generator CPU (%)"),
                    &step["generator_cpu_percent"],
                    None,
                );
                push(
                    &format!("{label}: server run-queue wait (ms)"),
                    &step["server_runqueue_wait_ms"],
                    None,
                );
                push(
                    &format!("{label}: generator run-queue wait (ms)"),
                    &step["generator_runqueue_wait_ms"],
                    None,
                );
            }
            if r["sweep"].as_bool() == Some(true) {
                push(
                    "sweep: best deliveries/s with p99 under limit",
                    &r["best"]["deliveries_per_s"],
                    Some(false),
                );
            }
            push("posts acked", &r["posts_acked"], None);
            push(
                "deliveries expected (acks × room size)",
                &r["deliveries_expected_from_acks"],
                None,
            );
            push("deliveries received", &r["deliveries"], None);
        }
        "notes" => {
            push("editors", &r["editors"], None);
            let w = &r["steps"][0];
            push("updates sent /s", &w["posts_per_s"], None);
            push("awareness updates sent in all", &r["awareness_sent"], None);
            push(
                "deliveries to other editors /s (updates + awareness)",
                &w["deliveries_per_s"],
                Some(false),
            );
            push(
                "awareness delivery p99 (ms)",
                &w["awareness_latency"]["p99_ms"],
                Some(true),
            );
            push(
                "propagation to every other editor p50 (ms)",
                &w["propagation_to_all_others"]["p50_ms"],
                Some(true),
            );
            push(
                "propagation to every other editor p99 (ms)",
                &w["propagation_to_all_others"]["p99_ms"],
                Some(true),
            );
            push(
                "propagation steady p99, median of per-second p99s (ms)",
                &w["propagation_to_all_others"]["steady_p99_ms"],
                Some(true),
            );
            push(
                "propagation to every other editor max (ms)",
                &w["propagation_to_all_others"]["max_ms"],
                Some(true),
            );
            push(
                "per-delivery latency p50 (ms)",
                &w["latency"]["p50_ms"],
                Some(true),
            );
            push(
                "per-delivery latency p99 (ms)",
                &w["latency"]["p99_ms"],
                Some(true),
            );
            push(
                "server CPU µs per delivered message",
                &w["server_cpu_us_per_delivery"],
                Some(true),
            );
            push(
                "server CPU µs per update sent",
                &w["server_cpu_us_per_post"],
                Some(true),
            );
            push("server CPU (%)", &w["server_cpu_percent"], Some(true));
            push("server RSS (MiB)", &w["server_rss_mib"], Some(true));
            push("generator CPU (%)", &w["generator_cpu_percent"], None);
            push(
                "server run-queue wait (ms)",
                &w["server_runqueue_wait_ms"],
                None,
            );
            push(
                "generator run-queue wait (ms)",
                &w["generator_runqueue_wait_ms"],
                None,
            );
            push("updates sent in all", &r["updates_sent"], None);
            push(
                "updates not received by every other editor",
                &r["updates_not_received_by_every_other_editor"],
                Some(true),
            );
            push(
                "unknown updates received",
                &r["unknown_updates"],
                Some(true),
            );
            push("distinct final texts", &r["final_texts_distinct"], None);
            push("converged", &r["converged"], None);
        }
        "announce" => {
            push("members", &r["members"], None);
            push(
                "time until the last member has it, median (ms)",
                &r["last_member_ms_median"],
                Some(true),
            );
            push(
                "time until the last member has it, max (ms)",
                &r["last_member_ms_max"],
                Some(true),
            );
            push(
                "per-member latency p50 (ms)",
                &r["per_member_latency"]["p50_ms"],
                Some(true),
            );
            push(
                "per-member latency p99 (ms)",
                &r["per_member_latency"]["p99_ms"],
                Some(true),
            );
            push("complete announces", &r["complete_repeats"], None);
            push(
                "server CPU during announces (s)",
                &r["server_cpu_seconds_during_announces"],
                Some(true),
            );
            push(
                "frames other than events during setup (presence…)",
                &r["presence_and_other_frames_during_setup"],
                None,
            );
            push(
                "settle time after setup (s)",
                &r["settle_seconds"],
                Some(true),
            );
            push("server RSS (MiB)", &r["server_rss_mib"], Some(true));
        }
        "reconnect-storm" => {
            push(
                "time until all recovered (s)",
                &r["seconds_until_all_recovered"],
                Some(true),
            );
            push("recovered", &r["recovered"], None);
            push("not recovered", &r["not_recovered"], Some(true));
            push("messages missed", &r["messages_missed"], Some(true));
            push("events replayed", &r["events_replayed"], None);
            push(
                "server CPU during storm (s)",
                &r["server_cpu_seconds_during_storm"],
                Some(true),
            );
        }
        _ => {}
    }
    push(
        "gaps seen (offsets skipped)",
        &r["common"]["gaps"],
        Some(true),
    );
    push("duplicates seen", &r["common"]["duplicates"], Some(true));
    push(
        "connections dropped by the server",
        &r["common"]["dropped_connections"],
        Some(true),
    );
    rows
}

pub(crate) fn summary_md(doc: &Value) -> String {
    let scenario = doc["scenario"].as_str().unwrap_or("?");
    let mut md = format!(
        "# {scenario} — {}\n\n{} · target `{}` at `{}` · server {}\n\n| figure | value |\n|---|---|\n",
        doc["label"].as_str().unwrap_or("?"),
        doc["finished"].as_str().unwrap_or(""),
        doc["target"].as_str().unwrap_or("?"),
        doc["url"].as_str().unwrap_or("?"),
        doc["server"]["cmdline"].as_str().unwrap_or("(not sampled)"),
    );
    for (name, value, _) in headline(scenario, doc) {
        md.push_str(&format!("| {name} | {} |\n", fmt(&value)));
    }
    let errors = &doc["result"]["common"]["errors"];
    if errors.as_object().is_some_and(|e| !e.is_empty()) {
        md.push_str(&format!("\nErrors: `{errors}`\n"));
    }
    md.push_str(&format!("\nParameters: `{}`\n", doc["parameters"]));
    md
}

/// `report <scenario>`: one table of every `<scenario>-*.json` in `--out`,
/// with préau/peer ratios.
pub(crate) fn report(args: &Args) -> anyhow::Result<()> {
    let scenario = args.of.clone().context("report needs a scenario")?;
    let mut docs: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(&args.out)
        .with_context(|| format!("cannot read {}", args.out.display()))?
    {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&format!("{scenario}-")) && name.ends_with(".json") {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            if doc["scenario"] == scenario {
                docs.push(doc);
            }
        }
    }
    if docs.is_empty() {
        bail!("no {scenario}-*.json in {}", args.out.display());
    }
    let order = |d: &Value| {
        let label = d["label"].as_str().unwrap_or("?");
        LABELS
            .iter()
            .position(|l| *l == label)
            .unwrap_or(LABELS.len())
    };
    docs.sort_by_key(order);
    // préau as the run labelled so, else the first run of préau.
    let preau = docs
        .iter()
        .position(|d| d["label"] == "preau")
        .or_else(|| docs.iter().position(|d| d["target"] == "preau"));
    let labels: Vec<String> = docs
        .iter()
        .map(|d| d["label"].as_str().unwrap_or("?").to_owned())
        .collect();
    let tables: Vec<Vec<(String, Value, Option<bool>)>> =
        docs.iter().map(|d| headline(&scenario, d)).collect();
    let mut md = format!("# `{scenario}`: préau side by side\n\n");
    let first = &docs[0];
    md.push_str(&format!(
        "Machine: {} · {} cores online · {} GiB · Linux {}. Written {}.\n\n",
        first["machine"]["cpu"].as_str().unwrap_or("?"),
        first["machine"]["cores_online"],
        first["machine"]["memory_gib"],
        first["machine"]["kernel"].as_str().unwrap_or("?"),
        first["finished"].as_str().unwrap_or("?"),
    ));
    md.push_str(
        "| run | server process | CPUs allowed (server) | generator CPUs |\n|---|---|---|---|\n",
    );
    for d in &docs {
        for process in measured_processes(d) {
            md.push_str(&format!(
                "| {} | `{}` | {} | {} |\n",
                d["label"].as_str().unwrap_or("?"),
                process["cmdline"].as_str().unwrap_or("?"),
                process["cpus_allowed"].as_str().unwrap_or("?"),
                d["generator"]["cpus_allowed"].as_str().unwrap_or("?"),
            ));
        }
    }
    md.push_str(&format!(
        "\nParameters ({}): `{}`\n\n",
        labels[0], first["parameters"]
    ));
    let mut header = String::from("| figure |");
    let mut rule = String::from("|---|");
    for label in &labels {
        header.push_str(&format!(" {label} |"));
        rule.push_str("---:|");
    }
    if let Some(p) = preau {
        for (i, label) in labels.iter().enumerate() {
            if i != p {
                header.push_str(&format!(" préau / {label} |"));
                rule.push_str("---:|");
            }
        }
    }
    md.push_str(&format!("{header}\n{rule}\n"));
    // Rows by name, in the order of the first table, then any extra.
    let mut names: Vec<String> = Vec::new();
    for table in &tables {
        for (name, _, _) in table {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    for name in &names {
        let cell = |t: &Vec<(String, Value, Option<bool>)>| {
            t.iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, v, lower)| (v.clone(), *lower))
        };
        let mut row = format!("| {name} |");
        for table in &tables {
            row.push_str(&format!(
                " {} |",
                cell(table).map_or("–".to_owned(), |(v, _)| fmt(&v))
            ));
        }
        if let Some(p) = preau {
            let mine = cell(&tables[p]);
            for (i, table) in tables.iter().enumerate() {
                if i == p {
                    continue;
                }
                let ratio = match (&mine, cell(table)) {
                    (Some((a, Some(_))), Some((b, _))) => match (a.as_f64(), b.as_f64()) {
                        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                        _ => "–".to_owned(),
                    },
                    _ => "".to_owned(),
                };
                row.push_str(&format!(" {ratio} |"));
            }
        }
        md.push_str(&format!("{row}\n"));
    }
    md.push_str(
        "\nRatios are préau's figure divided by the peer's, for figures where lower or higher \
         is better (for latency, CPU and memory, above 1 means préau costs more; for rates, \
         above 1 means préau does more). Absolute figures drift on this shared machine; \
         compare ratios from one run.\n",
    );
    for d in &docs {
        let errors = &d["result"]["common"]["errors"];
        if errors.as_object().is_some_and(|e| !e.is_empty()) {
            md.push_str(&format!(
                "\nErrors seen by the generator against {}: `{errors}`\n",
                d["label"].as_str().unwrap_or("?")
            ));
        }
    }
    let to = args
        .to
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("benches/results/{scenario}.md")));
    std::fs::write(&to, md).with_context(|| format!("cannot write {}", to.display()))?;
    eprintln!("wrote {}", to.display());
    Ok(())
}

/// The server processes a result measured: every node of a cluster, then
/// its Redis.
pub(crate) fn measured_processes(doc: &Value) -> Vec<&Value> {
    let mut processes: Vec<&Value> = match doc["servers"].as_array() {
        Some(all) if !all.is_empty() => all.iter().collect(),
        _ => vec![&doc["server"]],
    };
    if !doc["redis"].is_null() {
        processes.push(&doc["redis"]);
    }
    processes
}

/// A figure `compare` puts side by side: the scenario (`revision` also
/// covers its other loads, `revision-18k`…: see [`scenario_keys`]), the
/// figure, a JSON pointer into a result, the peers, how it enters the
/// verdict ([`Gate`]: CPU per delivery and memory are gated; latency is
/// reported with its spread over rounds and not gated; the rest is
/// information) and the issue's goals ([`Goal`]). All are "lower is
/// better".
pub(crate) struct ComparedFigure {
    pub(crate) scenario: &'static str,
    pub(crate) figure: &'static str,
    pub(crate) pointer: &'static str,
    pub(crate) peers: &'static [&'static str],
    pub(crate) gate: Gate,
    pub(crate) goals: &'static [Goal],
}

/// One of issue 19's goals: préau/`peer` at most `at_most`, at every load
/// of the scenario or only at its higher load (`revision-18k`).
pub(crate) struct Goal {
    pub(crate) peer: &'static str,
    pub(crate) at_most: f64,
    pub(crate) high_load_only: bool,
}

const fn goal(peer: &'static str, at_most: f64) -> Goal {
    Goal {
        peer,
        at_most,
        high_load_only: false,
    }
}

pub(crate) const COMPARED: &[ComparedFigure] = &[
    ComparedFigure {
        scenario: "idle",
        figure: "server RSS per idle connection (KiB)",
        pointer: "/result/server_rss_kib_per_connection",
        peers: &["bare", "socketio"],
        gate: Gate::Gated,
        goals: &[goal("bare", 1.0)],
    },
    ComparedFigure {
        scenario: "revision",
        figure: "server CPU per delivery (µs)",
        pointer: "/result/steps/0/server_cpu_us_per_delivery",
        peers: &["bare", "socketio"],
        gate: Gate::Gated,
        goals: &[goal("bare", 0.8), goal("socketio", 0.5)],
    },
    ComparedFigure {
        scenario: "revision",
        figure: "server RSS under load (MiB)",
        pointer: "/result/steps/0/server_rss_mib",
        peers: &["bare", "socketio"],
        gate: Gate::Gated,
        goals: &[goal("bare", 1.2)],
    },
    ComparedFigure {
        scenario: "revision",
        figure: "delivery latency, steady p99 (ms)",
        pointer: "/result/steps/0/latency/steady_p99_ms",
        peers: &["bare", "socketio"],
        gate: Gate::Latency,
        goals: &[Goal {
            peer: "bare",
            at_most: 1.0,
            high_load_only: true,
        }],
    },
    ComparedFigure {
        scenario: "revision",
        figure: "delivery latency p99 over each window (ms)",
        pointer: "/result/steps/0/latency/p99_ms",
        peers: &["bare", "socketio"],
        gate: Gate::Latency,
        goals: &[],
    },
    // préau's data on tmpfs ÷ on the VM's disk, in the same round: what
    // durable writes cost on this disk, that minute (out of the verdict:
    // it measures the disk's other tenants as much as préau).
    ComparedFigure {
        scenario: "revision",
        figure: "durability: server CPU per delivery, préau on tmpfs vs on disk (µs)",
        pointer: "/result/steps/0/server_cpu_us_per_delivery",
        peers: &["preau-disk"],
        gate: Gate::Information,
        goals: &[],
    },
    ComparedFigure {
        scenario: "revision",
        figure: "durability: steady p99, préau on tmpfs vs on disk (ms)",
        pointer: "/result/steps/0/latency/steady_p99_ms",
        peers: &["preau-disk"],
        gate: Gate::Information,
        goals: &[],
    },
    ComparedFigure {
        scenario: "notes",
        figure: "server CPU per delivered message, updates + awareness (µs)",
        pointer: "/result/steps/0/server_cpu_us_per_delivery",
        peers: &["hocuspocus"],
        gate: Gate::Gated,
        goals: &[goal("hocuspocus", 0.3)],
    },
    ComparedFigure {
        scenario: "notes",
        figure: "server RSS (MiB)",
        pointer: "/result/steps/0/server_rss_mib",
        peers: &["hocuspocus"],
        gate: Gate::Gated,
        goals: &[],
    },
    ComparedFigure {
        scenario: "notes",
        figure: "propagation to all editors, steady p99 (ms)",
        pointer: "/result/steps/0/propagation_to_all_others/steady_p99_ms",
        peers: &["hocuspocus"],
        gate: Gate::Latency,
        goals: &[],
    },
    ComparedFigure {
        scenario: "notes",
        figure: "propagation to all editors p99 over each window (ms)",
        pointer: "/result/steps/0/propagation_to_all_others/p99_ms",
        peers: &["hocuspocus"],
        gate: Gate::Latency,
        goals: &[],
    },
    ComparedFigure {
        scenario: "cluster",
        figure: "CPU per delivery, 2 nodes + Redis (µs)",
        pointer: "/result/steps/0/server_and_redis_cpu_us_per_delivery",
        peers: &["socketio"],
        gate: Gate::Gated,
        goals: &[],
    },
    ComparedFigure {
        scenario: "cluster",
        figure: "server RSS, both nodes (MiB)",
        pointer: "/result/steps/0/server_rss_mib",
        peers: &["socketio"],
        gate: Gate::Gated,
        goals: &[],
    },
    ComparedFigure {
        scenario: "cluster",
        figure: "cross-node latency, steady p99 (ms)",
        pointer: "/result/steps/0/latency_cross_node/steady_p99_ms",
        peers: &["socketio"],
        gate: Gate::Latency,
        goals: &[],
    },
    ComparedFigure {
        scenario: "cluster",
        figure: "cross-node latency p99 over each window (ms)",
        pointer: "/result/steps/0/latency_cross_node/p99_ms",
        peers: &["socketio"],
        gate: Gate::Latency,
        goals: &[],
    },
];

/// The scenarios of the comparison, in report order.
pub(crate) const COMPARED_SCENARIOS: [&str; 4] = ["idle", "revision", "notes", "cluster"];

/// The keys under which `runs` hold `scenario`: the scenario itself (the
/// results of `run<N>/raw` and `run<N>/round<K>`), then the other loads
/// `run.sh compare` runs it at, each from its own folder
/// `run<N>/<scenario>-<load>/round<K>` (`revision-18k`), in name order.
pub(crate) fn scenario_keys(runs: &[RunRounds], scenario: &str) -> Vec<String> {
    let variant = format!("{scenario}-");
    let mut keys: Vec<String> = runs
        .iter()
        .flat_map(|run| run.rounds.iter())
        .flat_map(|round| round.keys())
        .map(|(key, _)| key)
        .filter(|key| key.as_str() == scenario || key.starts_with(&variant))
        .cloned()
        .collect();
    keys.sort_by_key(|key| (key.as_str() != scenario, key.clone()));
    keys.dedup();
    keys
}

/// A run whose generator waited for its core more than this share of the
/// measured time is flagged as noisy (quiet runs: about 1%).
pub(crate) const NOISY_WAIT: f64 = 0.10;

/// The runs `run.sh` labels, in the order reports show them: the target's
/// name, or `preau-disk` for préau with its data folder on the disk where
/// `preau` has it on tmpfs (`run.sh compare`).
pub(crate) const LABELS: [&str; 5] = ["preau", "preau-disk", "bare", "socketio", "hocuspocus"];

/// One round's results, by (scenario, label).
pub(crate) type RoundDocs = HashMap<(String, String), Value>;

/// One repeat of `run.sh compare`: its number and its rounds (`raw/` of the
/// run folder, then each `round<K>/raw/`).
pub(crate) struct RunRounds {
    pub(crate) n: u32,
    pub(crate) rounds: Vec<RoundDocs>,
}

impl RunRounds {
    /// The docs of `scenario` for `target`, one per round that has it.
    pub(crate) fn docs<'a>(
        &'a self,
        scenario: &'a str,
        target: &'a str,
    ) -> impl Iterator<Item = &'a Value> {
        let key = (scenario.to_owned(), target.to_owned());
        self.rounds.iter().filter_map(move |round| round.get(&key))
    }

    pub(crate) fn has(&self, scenario: &str, target: &str) -> bool {
        self.docs(scenario, target).next().is_some()
    }

    /// The median over rounds of `pointer` for `target`.
    pub(crate) fn median(&self, scenario: &str, target: &str, pointer: &str) -> Option<f64> {
        median(
            self.docs(scenario, target)
                .filter_map(|d| d.pointer(pointer).and_then(Value::as_f64))
                .collect(),
        )
    }

    /// Per round, préau's figure ÷ the peer's figure in the same round
    /// (rounds where either is missing are skipped).
    pub(crate) fn round_ratios(&self, scenario: &str, peer: &str, pointer: &str) -> Vec<f64> {
        let key = |target: &str| (scenario.to_owned(), target.to_owned());
        self.rounds
            .iter()
            .filter_map(|round| {
                let a = round.get(&key("preau"))?.pointer(pointer)?.as_f64()?;
                let b = round.get(&key(peer))?.pointer(pointer)?.as_f64()?;
                (b > 0.0).then(|| a / b)
            })
            .collect()
    }

    /// The median over rounds of préau's figure ÷ the peer's figure in the
    /// same round.
    pub(crate) fn ratio(&self, scenario: &str, peer: &str, pointer: &str) -> Option<f64> {
        median(self.round_ratios(scenario, peer, pointer))
    }

    /// Rounds in which both préau and `peer` ran `scenario`.
    pub(crate) fn paired_rounds(&self, scenario: &str, peer: &str) -> usize {
        let key = |target: &str| (scenario.to_owned(), target.to_owned());
        self.rounds
            .iter()
            .filter(|round| round.contains_key(&key("preau")) && round.contains_key(&key(peer)))
            .count()
    }
}

/// The median (the mean of the middle two for an even count).
pub(crate) fn median(values: Vec<f64>) -> Option<f64> {
    verdict::median(values)
}

/// Every `*.json` result in `raw`, by (scenario, target); None when the
/// folder does not exist.
pub(crate) fn read_round(raw: &Path) -> anyhow::Result<Option<RoundDocs>> {
    let Ok(files) = std::fs::read_dir(raw) else {
        return Ok(None);
    };
    let mut docs = HashMap::new();
    for file in files {
        let file = file?.path();
        if file.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .with_context(|| format!("cannot parse {}", file.display()))?;
        let key = (
            doc["scenario"].as_str().unwrap_or("?").to_owned(),
            doc["label"]
                .as_str()
                .or(doc["target"].as_str())
                .unwrap_or("?")
                .to_owned(),
        );
        docs.insert(key, doc);
    }
    Ok(Some(docs))
}

/// `compare`: reads `<out>/run<N>/raw/*.json`, `<out>/run<N>/round<K>/raw/*.json`
/// and `<out>/run<N>/<scenario>-<load>/round<K>/raw/*.json` (one folder per
/// repeat, per round, and per other load of a scenario, as `run.sh compare`
/// writes them; results in a `<scenario>-<load>` folder are filed under
/// that name, e.g. `revision-18k`, and paired with the same round number)
/// and writes one table of préau/peer ratios per run (each the median over
/// the run's rounds of the same-round ratio, with its interquartile range),
/// the drift of each ratio between runs, the verdict (CPU and memory ratios
/// only) and the goals, each run's generator run-queue wait and stalls.
pub(crate) fn compare(args: &Args) -> anyhow::Result<()> {
    let numbered = |path: &Path, prefix: &str| -> Option<u32> {
        path.file_name()?
            .to_str()?
            .strip_prefix(prefix)?
            .parse::<u32>()
            .ok()
    };
    let mut runs: Vec<RunRounds> = Vec::new();
    for entry in std::fs::read_dir(&args.out)
        .with_context(|| format!("cannot read {}", args.out.display()))?
    {
        let path = entry?.path();
        let Some(n) = numbered(&path, "run") else {
            continue;
        };
        let mut rounds: BTreeMap<u32, RoundDocs> = BTreeMap::new();
        if let Some(docs) = read_round(&path.join("raw"))? {
            rounds.insert(0, docs);
        }
        for sub in std::fs::read_dir(&path)? {
            let sub = sub?.path();
            if let Some(k) = numbered(&sub, "round") {
                if let Some(docs) = read_round(&sub.join("raw"))? {
                    rounds.entry(k).or_default().extend(docs);
                }
                continue;
            }
            // Another load of a scenario: `revision-18k/round<K>/`.
            let Some(name) = sub.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some((base, _)) = name.split_once('-') else {
                continue;
            };
            if !sub.is_dir() || !COMPARED_SCENARIOS.contains(&base) {
                continue;
            }
            for round in std::fs::read_dir(&sub)? {
                let round = round?.path();
                let Some(k) = numbered(&round, "round") else {
                    continue;
                };
                if let Some(docs) = read_round(&round.join("raw"))? {
                    let renamed = docs
                        .into_iter()
                        .filter(|((scenario, _), _)| scenario == base)
                        .map(|((_, label), doc)| ((name.to_owned(), label), doc));
                    rounds.entry(k).or_default().extend(renamed);
                }
            }
        }
        runs.push(RunRounds {
            n,
            rounds: rounds.into_values().collect(),
        });
    }
    if runs.iter().all(|run| run.rounds.is_empty()) {
        bail!(
            "no run*/raw/*.json nor run*/round*/raw/*.json under {}",
            args.out.display()
        );
    }
    runs.sort_by_key(|run| run.n);
    let mut md = String::from("# préau against its peers: one-command comparison\n\n");
    // Machine and pinning, from the results themselves.
    let all_docs = || {
        runs.iter()
            .flat_map(|run| run.rounds.iter())
            .flat_map(|round| round.values())
    };
    if let Some(d) = all_docs().next() {
        md.push_str(&format!(
            "Machine: {} · {} cores online · {} GiB · Linux {}.\n\n",
            d["machine"]["cpu"].as_str().unwrap_or("?"),
            d["machine"]["cores_online"],
            d["machine"]["memory_gib"],
            d["machine"]["kernel"].as_str().unwrap_or("?"),
        ));
    }
    let mut server_cpus: Vec<String> = Vec::new();
    let mut generator_cpus: Vec<String> = Vec::new();
    for doc in all_docs() {
        for p in measured_processes(doc) {
            let cpus = p["cpus_allowed"].as_str().unwrap_or("?").to_owned();
            if !server_cpus.contains(&cpus) {
                server_cpus.push(cpus);
            }
        }
        let cpus = doc["generator"]["cpus_allowed"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        if !generator_cpus.contains(&cpus) {
            generator_cpus.push(cpus);
        }
    }
    let mut slot_ms: BTreeMap<String, u64> = BTreeMap::new();
    for d in all_docs() {
        if let (Some(scenario), Some(ms)) =
            (d["scenario"].as_str(), d["parameters"]["slot_ms"].as_u64())
        {
            slot_ms.insert(scenario.to_owned(), ms);
        }
    }
    let turns = if slot_ms.is_empty() {
        "One server at a time.".to_owned()
    } else {
        format!(
            "In each round of {}, every target of the scenario is up at once, each with its \
             own generator, and the targets take turns ({}) through one window \
             (`--interleave`), in reverse order every other round: one target is loaded at a \
             time, and every target meets the same minutes of this shared machine. A \
             target's figures are over its own turns (CPU read until {} s after each turn \
             ends; latencies filed by send time). Other scenarios: one server at a time.",
            slot_ms
                .keys()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
            slot_ms
                .iter()
                .map(|(s, ms)| format!("{} s in `{s}`", *ms as f64 / 1000.0))
                .collect::<Vec<_>>()
                .join(", "),
            SLOT_DRAIN_NS as f64 / 1e9
        )
    };
    md.push_str(&format!(
        "Pinning (read back from `/proc/<pid>/status` `Cpus_allowed_list` of every process \
         measured): server processes (every node, and Redis in `cluster`) on CPU {}, \
         load generator on CPU {}, set with `taskset -c` by `benches/run.sh`. {turns}\n\n",
        server_cpus.join(", "),
        generator_cpus.join(", ")
    ));
    md.push_str(&loads_line(&runs));
    let mut header =
        String::from("| scenario | figure | préau (run 1) | peer (run 1) | peer | rounds |");
    let mut rule = String::from("|---|---|---:|---:|---|---:|");
    for run in &runs {
        header.push_str(&format!(" préau/peer run {} |", run.n));
        rule.push_str("---:|");
    }
    header.push_str(" IQR over rounds |");
    rule.push_str("---|");
    if runs.len() > 1 {
        header.push_str(" drift |");
        rule.push_str("---:|");
    }
    header.push_str(" goal |");
    rule.push_str("---|");
    md.push_str(&format!("{header}\n{rule}\n"));
    let mut rows: Vec<Row> = Vec::new();
    let mut informational = Vec::new();
    // Grouped by scenario, then by its loads (`revision`, `revision-18k`),
    // then in the order of COMPARED.
    let keys = COMPARED_SCENARIOS.iter().flat_map(|base| {
        scenario_keys(&runs, base)
            .into_iter()
            .map(move |key| (*base, key))
    });
    for (base, scenario) in keys {
        let scenario = scenario.as_str();
        for compared in COMPARED.iter().filter(|c| c.scenario == base) {
            for peer in compared.peers {
                let pointer = compared.pointer;
                let ratios: Vec<Option<f64>> = runs
                    .iter()
                    .map(|run| run.ratio(scenario, peer, pointer))
                    .collect();
                if ratios.iter().all(Option::is_none) {
                    continue; // this peer or scenario was not run
                }
                // A goal "at the higher load" applies to `revision-18k`,
                // not to `revision`.
                let goal = compared
                    .goals
                    .iter()
                    .find(|g| {
                        g.peer == *peer && (!g.high_load_only || scenario != compared.scenario)
                    })
                    .map(|g| g.at_most);
                let row = Row {
                    name: format!("{scenario} {} vs {peer}", compared.figure),
                    gate: compared.gate,
                    ratios: ratios.clone(),
                    goal,
                };
                let cell = |v: Option<f64>| v.map_or("–".to_owned(), |x| fmt(&json!(x)));
                let rounds: Vec<String> = runs
                    .iter()
                    .map(|run| run.paired_rounds(scenario, peer).to_string())
                    .collect();
                let mark = match compared.gate {
                    Gate::Gated => "",
                    Gate::Latency => " *(not gated)*",
                    Gate::Information => " *(information)*",
                };
                let mut line = format!(
                    "| {scenario} | {}{mark} | {} | {} | {peer} | {} |",
                    compared.figure,
                    cell(runs[0].median(scenario, "preau", pointer)),
                    cell(runs[0].median(scenario, peer, pointer)),
                    rounds.join(", "),
                );
                for r in &ratios {
                    line.push_str(&format!(
                        " {} |",
                        r.map_or("–".to_owned(), |x| format!("{x:.2}"))
                    ));
                }
                let iqrs: Vec<String> = runs
                    .iter()
                    .map(|run| {
                        verdict::iqr(&run.round_ratios(scenario, peer, pointer))
                            .map_or("–".to_owned(), |(q1, q3)| format!("{q1:.2}–{q3:.2}"))
                    })
                    .collect();
                line.push_str(&format!(" {} |", iqrs.join(" · ")));
                if runs.len() > 1 {
                    match verdict::drift(&ratios) {
                        Some(d) if compared.gate == Gate::Gated => {
                            let flag = if d > DRIFT_LIMIT { " **⚠ >15%**" } else { "" };
                            line.push_str(&format!(" {:.0}%{flag} |", d * 100.0));
                        }
                        Some(d) => {
                            informational.push(format!(
                                "{scenario} {} vs {peer}: {:.0}%",
                                compared.figure,
                                d * 100.0
                            ));
                            line.push_str(&format!(" {:.0}% |", d * 100.0));
                        }
                        None => line.push_str(" – |"),
                    }
                }
                match (row.goal, row.goal_met()) {
                    (Some(g), Some(met)) => {
                        let runs_met = ratios.iter().flatten().filter(|r| **r <= g).count();
                        let detail = if runs.len() > 1 && !met {
                            format!(" ({runs_met} of {} runs)", ratios.iter().flatten().count())
                        } else {
                            String::new()
                        };
                        let tick = if met { "✓" } else { "✗" };
                        line.push_str(&format!(" ≤ {g:.1} {tick}{detail} |"));
                    }
                    _ => line.push_str(" |"),
                }
                md.push_str(&format!("{line}\n"));
                rows.push(row);
            }
        }
    }
    md.push_str(
        "\nRatios: préau's figure ÷ the peer's; every figure here is lower-is-better, so \
         above 1 means préau costs more. A run's ratio is the median, over its rounds, of \
         the ratio of préau's and the peer's figures in the same round; `rounds` says how \
         many rounds paired them in each run; the figures of run 1 are medians over its \
         rounds. *IQR over rounds*: the interquartile range (first–third quartile) of the \
         per-round ratio, one per run. Drift: the largest |ratio in run k ÷ ratio in run 1 \
         − 1| over the runs. `revision-18k` (or another `revision-<load>`) is `revision` \
         at the higher load, in rounds of its own.\n\n\
         Verdict (issue 19): only **CPU per delivery and memory** ratios are gated — each \
         must hold within ±15% across runs. **Latency ratios are not gated**: on this \
         shared machine they moved by more than 15% between reruns whatever the rounds \
         (`benches/README.md`), so they are reported with their median and IQR over \
         rounds and their drift. A *steady p99* is the median, over the seconds of a \
         window, of each second's p99 (seconds with fewer than 20 samples left out): the \
         tail a user meets in an ordinary second. The p99 over each whole window is set \
         by whether one stall (Socket.IO's garbage collector, préau's slow disk flushes) \
         falls in it; the stalls are counted on their own below.\n\n\
         Goal: issue 19's target for the ratio (CPU per delivery ≤ 0.8× bare and ≤ 0.5× \
         Socket.IO at both loads; idle RSS per connection ≤ 1.0× bare; RSS under load ≤ \
         1.2× bare; steady p99 ≤ 1.0× bare at the higher load, information only; `notes` \
         CPU per delivered message ≤ 0.3× Hocuspocus), ✓ when every run's median meets \
         it. Goals are not part of the verdict.\n",
    );
    let data_folder = |label: &str| {
        runs.iter()
            .flat_map(|run| run.rounds.iter())
            .flat_map(|round| round.values())
            .filter(|d| d["label"] == label && d["scenario"] != "idle")
            .find_map(|d| {
                let cmdline = d["server"]["cmdline"].as_str()?;
                let (_, rest) = cmdline.split_once("--data ")?;
                rest.split_whitespace().next().map(str::to_owned)
            })
    };
    if let (Some(tmpfs), Some(disk)) = (data_folder("preau"), data_folder("preau-disk")) {
        md.push_str(&format!(
            "\npréau's data: the peers keep nothing, and préau flushes every event to its \
             sled folder before delivering it. In the runs labelled `preau`, that folder is \
             on tmpfs (`{tmpfs}`), so the ratios compare the servers' own work; `preau-disk` \
             is the same préau with its folder on this VM's disk (`{disk}`), run in the same \
             rounds of `revision`, and its rows (préau on tmpfs ÷ préau on disk, out of the \
             verdict) show what durable writes cost on this disk. That disk is shared: how \
             long a flush takes depends on the other tenants' writes that minute, which is \
             why the verdict leaves it out.\n"
        ));
    }
    let judged = verdict::judge(&rows, runs.len());
    let (verdict_line, goals_line) = (judged.line(), judged.goals_line());
    md.push_str(&format!(
        "\n**Verdict: {verdict_line}.**\n\n{goals_line}.\n"
    ));
    if !informational.is_empty() {
        md.push_str(&format!(
            "\nNot gated, drift of the latency and information rows: {}.\n",
            informational.join("; ")
        ));
    }
    md.push_str(&noise_table(&runs));
    md.push_str(&stall_table(&runs));
    // Loss checks: every scenario must deliver everything, whatever the speed.
    let mut lost = Vec::new();
    for run in &runs {
        for (k, round) in run.rounds.iter().enumerate() {
            for ((scenario, target), d) in round {
                let c = &d["result"]["common"];
                let bad = ["gaps", "duplicates", "dropped_connections"]
                    .iter()
                    .any(|key| c[key].as_u64().unwrap_or(0) > 0)
                    || d["result"]["deliveries"] != d["result"]["deliveries_expected_from_acks"]
                    || d["result"]["updates_not_received_by_every_other_editor"]
                        .as_u64()
                        .unwrap_or(0)
                        > 0;
                if bad {
                    lost.push(format!("run {} folder {k} {scenario} {target}", run.n));
                }
            }
        }
    }
    lost.sort();
    md.push_str(&if lost.is_empty() {
        "\nNo gap, duplicate, dropped connection or missing delivery in any run or round.\n"
            .to_owned()
    } else {
        format!("\nLoss or disorder seen in: {}.\n", lost.join(", "))
    });
    let to = args
        .to
        .clone()
        .unwrap_or_else(|| PathBuf::from("benches/results/comparison.md"));
    std::fs::write(&to, md).with_context(|| format!("cannot write {}", to.display()))?;
    println!("{verdict_line}");
    println!("{goals_line}");
    eprintln!("wrote {}", to.display());
    Ok(())
}

/// `compare`: the load of each `revision` and `cluster` scenario, from
/// préau's parameters (rooms × members, post rate, deliveries/s).
pub(crate) fn loads_line(runs: &[RunRounds]) -> String {
    let mut parts = Vec::new();
    for base in ["revision", "cluster"] {
        for key in scenario_keys(runs, base) {
            let Some(p) = runs
                .iter()
                .find_map(|run| run.docs(&key, "preau").next())
                .map(|d| &d["parameters"])
            else {
                continue;
            };
            let (Some(rooms), Some(size), Some(rate)) = (
                p["rooms"].as_f64(),
                p["room_size"].as_f64(),
                p["rate"].as_f64(),
            ) else {
                continue;
            };
            parts.push(format!(
                "`{key}`: {rooms} rooms × {size}, {rate} post/s per member (≈ {:.0} \
                 deliveries/s)",
                rooms * size * rate * size
            ));
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("Loads: {}.\n\n", parts.join("; "))
}

/// `compare`: the generator's run-queue wait per run, scenario and target,
/// summed over the rounds.
pub(crate) fn noise_table(runs: &[RunRounds]) -> String {
    let mut md = String::from(
        "\n## Generator run-queue wait (noise)\n\nTime the load generator's threads were \
         runnable but waiting for their core (`/proc/<pid>/task/*/schedstat`), in ms, over \
         the measured windows of all rounds (idle: over the whole run), with the windows' \
         total length. Above 10% of the windows (**noisy**), other work shared the \
         generator's core and latencies from that run mean little.\n\n",
    );
    md.push_str(&per_run_header(runs, "---:"));
    let mut noisy = Vec::new();
    for scenario in COMPARED_SCENARIOS
        .iter()
        .flat_map(|base| scenario_keys(runs, base))
    {
        let scenario = scenario.as_str();
        for target in LABELS {
            if !runs.iter().any(|run| run.has(scenario, target)) {
                continue;
            }
            let (wait_ptr, secs_ptr) = if scenario == "idle" {
                (
                    "/result/generator_runqueue_wait_ms",
                    "/result/generator_runqueue_wait_over_seconds",
                )
            } else {
                (
                    "/result/steps/0/generator_runqueue_wait_ms",
                    "/result/steps/0/seconds",
                )
            };
            let mut row = format!("| {scenario} | {target} |");
            for run in runs {
                let (mut wait, mut secs) = (0.0, 0.0);
                for doc in run.docs(scenario, target) {
                    if let (Some(w), Some(s)) = (
                        doc.pointer(wait_ptr).and_then(Value::as_f64),
                        doc.pointer(secs_ptr).and_then(Value::as_f64),
                    ) {
                        wait += w;
                        secs += s;
                    }
                }
                if secs > 0.0 {
                    let flag = if wait / (secs * 1000.0) > NOISY_WAIT {
                        noisy.push(format!("run {} {scenario} {target}", run.n));
                        " **noisy**"
                    } else {
                        ""
                    };
                    row.push_str(&format!(" {wait:.0} ms / {secs:.1} s{flag} |"));
                } else {
                    row.push_str(" – |");
                }
            }
            md.push_str(&format!("{row}\n"));
        }
    }
    if !noisy.is_empty() {
        md.push_str(&format!("\nNoisy: {}.\n", noisy.join(", ")));
    }
    md
}

/// A second of the window whose slowest delivery took longer than this is
/// a stall: every delivery in it waited on one pause (GC, a descheduled
/// thread, a slow flush), not on steady load.
pub(crate) const STALL_MS: f64 = 50.0;

/// `compare`: per scenario, target and run, over all rounds, the seconds
/// of the measured windows that held a stall, the worst one, and the
/// median of the per-second p99s (the steady tail, which stalls do not
/// move).
pub(crate) fn stall_table(runs: &[RunRounds]) -> String {
    let mut md = format!(
        "\n## Stalls and steady tail\n\nPer second of the measured windows (by receive \
         time, all rounds): seconds whose slowest delivery took over {STALL_MS:.0} ms / \
         seconds in all / the worst such delivery (ms) / the steady p99 over all rounds \
         (ms: the median of the seconds' p99s). A p99 over one window moves with the number of stalls that happen to fall \
         in it; the median of the per-second p99s does not.\n\n"
    );
    md.push_str(&per_run_header(runs, "---"));
    for scenario in ["revision", "notes", "cluster"]
        .iter()
        .flat_map(|base| scenario_keys(runs, base))
    {
        let scenario = scenario.as_str();
        for target in LABELS {
            if !runs.iter().any(|run| run.has(scenario, target)) {
                continue;
            }
            let mut row = format!("| {scenario} | {target} |");
            for run in runs {
                // (samples, p99, max) per second.
                let seconds: Vec<(u64, f64, f64)> = run
                    .docs(scenario, target)
                    .filter_map(|d| d.pointer("/result/steps/0/timeline")?.as_array())
                    .flatten()
                    .filter_map(|s| {
                        Some((
                            s.get(0)?.as_u64()?,
                            s.get(1)?.as_f64()?,
                            s.get(2)?.as_f64()?,
                        ))
                    })
                    .collect();
                let p99s: Vec<(u64, f64)> = seconds.iter().map(|(n, p99, _)| (*n, *p99)).collect();
                let Some(steady) = steady_p99_ms(&p99s) else {
                    row.push_str(" – |");
                    continue;
                };
                let stalls: Vec<f64> = seconds
                    .iter()
                    .map(|(_, _, max)| *max)
                    .filter(|max| *max > STALL_MS)
                    .collect();
                let worst = if stalls.is_empty() {
                    "–".to_owned()
                } else {
                    format!("{:.0}", stalls.iter().copied().fold(0.0, f64::max))
                };
                row.push_str(&format!(
                    " {} / {} / {worst} / {steady:.1} |",
                    stalls.len(),
                    seconds.len()
                ));
            }
            md.push_str(&format!("{row}\n"));
        }
    }
    md
}

/// The header of a table with one column per run (`rule`: each run
/// column's alignment, `---` or `---:`).
pub(crate) fn per_run_header(runs: &[RunRounds], rule: &str) -> String {
    let mut header = String::from("| scenario | target |");
    let mut rules = String::from("|---|---|");
    for run in runs {
        header.push_str(&format!(" run {} |", run.n));
        rules.push_str(&format!("{rule}|"));
    }
    format!("{header}\n{rules}\n")
}

pub(crate) fn write_outputs(out: &Path, doc: &Value) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let stem = format!(
        "{}-{}",
        doc["scenario"].as_str().unwrap_or("run"),
        doc["label"].as_str().unwrap_or("run")
    );
    let json_path = out.join(format!("{stem}.json"));
    let md_path = out.join(format!("{stem}.md"));
    std::fs::write(&json_path, serde_json::to_string_pretty(doc)?)?;
    std::fs::write(&md_path, summary_md(doc))?;
    Ok((json_path, md_path))
}
