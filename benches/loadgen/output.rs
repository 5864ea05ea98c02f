//! The load generator's output.

use super::*;

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

/// A figure `compare` puts side by side: `(scenario, figure, JSON pointer
/// into a result, peers, in the verdict)`. A figure out of the verdict is
/// shown with its drift for information: the window p99s, which move with
/// the number of stalls that fall in a short window (see [`steady_p99_ms`]);
/// the steady p99s stand for latency in the verdict. All are "lower is
/// better".
pub(crate) type ComparedFigure = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    bool,
);

pub(crate) const COMPARED: &[ComparedFigure] = &[
    (
        "idle",
        "server RSS per idle connection (KiB)",
        "/result/server_rss_kib_per_connection",
        &["bare", "socketio"],
        true,
    ),
    (
        "revision",
        "server CPU per delivery (µs)",
        "/result/steps/0/server_cpu_us_per_delivery",
        &["bare", "socketio"],
        true,
    ),
    (
        "revision",
        "delivery latency, steady p99 (ms)",
        "/result/steps/0/latency/steady_p99_ms",
        &["bare", "socketio"],
        true,
    ),
    (
        "revision",
        "delivery latency p99 over each window (ms)",
        "/result/steps/0/latency/p99_ms",
        &["bare", "socketio"],
        false,
    ),
    (
        "revision",
        "server RSS under load (MiB)",
        "/result/steps/0/server_rss_mib",
        &["bare", "socketio"],
        true,
    ),
    // préau's data on tmpfs ÷ on the VM's disk, in the same round: what
    // durable writes cost on this disk, that minute (out of the verdict:
    // it measures the disk's other tenants as much as préau).
    (
        "revision",
        "durability: server CPU per delivery, préau on tmpfs vs on disk (µs)",
        "/result/steps/0/server_cpu_us_per_delivery",
        &["preau-disk"],
        false,
    ),
    (
        "revision",
        "durability: steady p99, préau on tmpfs vs on disk (ms)",
        "/result/steps/0/latency/steady_p99_ms",
        &["preau-disk"],
        false,
    ),
    (
        "notes",
        "server CPU per delivered message, updates + awareness (µs)",
        "/result/steps/0/server_cpu_us_per_delivery",
        &["hocuspocus"],
        true,
    ),
    (
        "notes",
        "propagation to all editors, steady p99 (ms)",
        "/result/steps/0/propagation_to_all_others/steady_p99_ms",
        &["hocuspocus"],
        true,
    ),
    (
        "notes",
        "propagation to all editors p99 over each window (ms)",
        "/result/steps/0/propagation_to_all_others/p99_ms",
        &["hocuspocus"],
        false,
    ),
    (
        "notes",
        "server RSS (MiB)",
        "/result/steps/0/server_rss_mib",
        &["hocuspocus"],
        true,
    ),
    (
        "cluster",
        "CPU per delivery, 2 nodes + Redis (µs)",
        "/result/steps/0/server_and_redis_cpu_us_per_delivery",
        &["socketio"],
        true,
    ),
    (
        "cluster",
        "cross-node latency, steady p99 (ms)",
        "/result/steps/0/latency_cross_node/steady_p99_ms",
        &["socketio"],
        true,
    ),
    (
        "cluster",
        "cross-node latency p99 over each window (ms)",
        "/result/steps/0/latency_cross_node/p99_ms",
        &["socketio"],
        false,
    ),
    (
        "cluster",
        "server RSS, both nodes (MiB)",
        "/result/steps/0/server_rss_mib",
        &["socketio"],
        true,
    ),
];

/// A ratio that moved more than this between runs is flagged (the issue's
/// ±15%).
pub(crate) const DRIFT_LIMIT: f64 = 0.15;

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

    /// The median over rounds of préau's figure ÷ the peer's figure in the
    /// same round (rounds where either is missing are skipped).
    pub(crate) fn ratio(&self, scenario: &str, peer: &str, pointer: &str) -> Option<f64> {
        let key = |target: &str| (scenario.to_owned(), target.to_owned());
        let ratios = self
            .rounds
            .iter()
            .filter_map(|round| {
                let a = round.get(&key("preau"))?.pointer(pointer)?.as_f64()?;
                let b = round.get(&key(peer))?.pointer(pointer)?.as_f64()?;
                (b > 0.0).then(|| a / b)
            })
            .collect();
        median(ratios)
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
pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
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

/// `compare`: reads `<out>/run<N>/raw/*.json` and `<out>/run<N>/round<K>/raw/*.json`
/// (one folder per repeat and per round, as `run.sh compare` writes them)
/// and writes one table of préau/peer ratios per run (each the median over
/// the run's rounds of the same-round ratio), the drift of each ratio
/// between runs, each run's generator run-queue wait and stalls.
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
        let mut rounds = Vec::new();
        if let Some(docs) = read_round(&path.join("raw"))? {
            rounds.push((0, docs));
        }
        for sub in std::fs::read_dir(&path)? {
            let sub = sub?.path();
            if let Some(k) = numbered(&sub, "round") {
                if let Some(docs) = read_round(&sub.join("raw"))? {
                    rounds.push((k, docs));
                }
            }
        }
        rounds.sort_by_key(|(k, _)| *k);
        runs.push(RunRounds {
            n,
            rounds: rounds.into_iter().map(|(_, docs)| docs).collect(),
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
    let mut header =
        String::from("| scenario | figure | préau (run 1) | peer (run 1) | peer | rounds |");
    let mut rule = String::from("|---|---|---:|---:|---|---:|");
    for run in &runs {
        header.push_str(&format!(" préau/peer run {} |", run.n));
        rule.push_str("---:|");
    }
    if runs.len() > 1 {
        header.push_str(" drift |");
        rule.push_str("---:|");
    }
    md.push_str(&format!("{header}\n{rule}\n"));
    let (mut compared, mut drifted, mut missing) = (0, Vec::new(), 0);
    let mut informational = Vec::new();
    for (scenario, figure, pointer, peers, in_verdict) in COMPARED {
        for peer in *peers {
            let ratios: Vec<Option<f64>> = runs
                .iter()
                .map(|run| run.ratio(scenario, peer, pointer))
                .collect();
            let cell = |v: Option<f64>| v.map_or("–".to_owned(), |x| fmt(&json!(x)));
            let rounds: Vec<String> = runs
                .iter()
                .map(|run| run.paired_rounds(scenario, peer).to_string())
                .collect();
            let info = if *in_verdict { "" } else { " *(information)*" };
            let mut row = format!(
                "| {scenario} | {figure}{info} | {} | {} | {peer} | {} |",
                cell(runs[0].median(scenario, "preau", pointer)),
                cell(runs[0].median(scenario, peer, pointer)),
                rounds.join(", "),
            );
            for r in &ratios {
                row.push_str(&format!(
                    " {} |",
                    r.map_or("–".to_owned(), |x| format!("{x:.2}"))
                ));
            }
            if runs.len() > 1 {
                // Drift: the largest move of a later run's ratio from run 1's.
                let drift = match ratios.first().copied().flatten() {
                    Some(first) if ratios.iter().all(Option::is_some) => ratios
                        .iter()
                        .flatten()
                        .map(|r| (r / first - 1.0).abs())
                        .fold(0.0, f64::max)
                        .into(),
                    _ => None,
                };
                match drift {
                    Some(d) if !*in_verdict => {
                        informational
                            .push(format!("{scenario} {figure} vs {peer}: {:.0}%", d * 100.0));
                        row.push_str(&format!(" {:.0}% |", d * 100.0));
                    }
                    None if !*in_verdict => row.push_str(" – |"),
                    Some(d) => {
                        compared += 1;
                        let flag = if d > DRIFT_LIMIT {
                            drifted.push(format!("{scenario} {figure} vs {peer}"));
                            " **⚠ >15%**"
                        } else {
                            ""
                        };
                        row.push_str(&format!(" {:.0}%{flag} |", d * 100.0));
                    }
                    None => {
                        missing += 1;
                        row.push_str(" – |");
                    }
                }
            }
            md.push_str(&format!("{row}\n"));
        }
    }
    md.push_str(
        "\nRatios: préau's figure ÷ the peer's; every figure here is lower-is-better, so \
         above 1 means préau costs more. A run's ratio is the median, over its rounds, of \
         the ratio of préau's and the peer's figures in the same round; `rounds` says how \
         many rounds paired them in each run; the figures of run 1 are medians over its \
         rounds. Drift: the largest |ratio in run k ÷ ratio in run 1 − 1| over the runs.\n\n\
         Latency: a *steady p99* is the median, over the seconds of a window, of each \
         second's p99 (seconds with fewer than 20 samples left out); it is the tail a user \
         meets in an ordinary second, and the verdict holds it. The p99 over each whole \
         window is shown for information and left out of the verdict: in a 15 to 30 s \
         window it is set by whether one stall (a pause of tens of ms: Socket.IO's garbage \
         collector, préau's slow disk flushes) falls in it, so it can move by a fifth to \
         a half between runs (it did at 18,000 deliveries/s); the stalls are counted on \
         their own below.\n",
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
    let verdict = if runs.len() < 2 {
        "one run only: no drift measured (use --repeat 2)".to_owned()
    } else if drifted.is_empty() && missing == 0 {
        format!(
            "PASS: all {compared} ratios within ±15% across {} runs",
            runs.len()
        )
    } else {
        format!(
            "FAIL: {} of {} ratios moved more than 15% across {} runs{}{}",
            drifted.len(),
            compared + missing,
            runs.len(),
            if drifted.is_empty() {
                String::new()
            } else {
                format!(" ({})", drifted.join("; "))
            },
            if missing > 0 {
                format!(", {missing} missing in a run")
            } else {
                String::new()
            }
        )
    };
    md.push_str(&format!("\n**Verdict: {verdict}.**\n"));
    if !informational.is_empty() {
        md.push_str(&format!(
            "\nOut of the verdict, drift of the figures shown for information: {}.\n",
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
    println!("{verdict}");
    eprintln!("wrote {}", to.display());
    Ok(())
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
    for scenario in ["idle", "revision", "notes", "cluster"] {
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
    for scenario in ["revision", "notes", "cluster"] {
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
